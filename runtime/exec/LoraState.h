//===- LoraState.h - LoRA buffers <-> PEFT adapter files --------*- C++ -*-===//
//
// The LoRA matrices and their gradients live in the arena; adapters live in
// PEFT's files. This moves them between the two through host copies, using
// the module table train.bin carries (LoraInfo.modules).
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_EXEC_LORASTATE_H
#define QLORACC_RUNTIME_EXEC_LORASTATE_H

#include "runtime/adapter/Adapter.h"
#include "runtime/exec/Executor.h"

#include <string>
#include <vector>

namespace qlora::exec {

class LoraState {
public:
  explicit LoraState(Executor &executor);

  /// The adapter_config.json values train.bin was compiled with.
  const adapter::AdapterConfig &config() const { return config_; }
  size_t numModules() const { return modules_.size(); }

  /// Replaces the arena's LoRA matrices with those of a PEFT adapter.
  bool loadAdapter(const std::string &dir, std::string &error);
  /// Writes the arena's LoRA matrices as a PEFT adapter.
  bool saveAdapter(const std::string &dir, std::string &error);
  /// Writes the gradients currently in the arena as safetensors with the
  /// adapter's key names. Valid between the backward pass and the first
  /// optimizer update of a step.
  bool saveGradients(const std::string &path, std::string &error);

private:
  struct Module {
    std::string name;
    int64_t rank = 0, in = 0, out = 0;
    uint32_t loraA = 0, loraB = 0, gradA = 0, gradB = 0;
    std::vector<float> a, b;
  };

  std::vector<adapter::LoraTensorRef> tensorRefs();
  /// Copies buffers `which(module)` (A then B) between arena and host.
  bool download(bool gradients, std::string &error);

  Executor &executor_;
  adapter::AdapterConfig config_;
  std::vector<Module> modules_;
};

} // namespace qlora::exec

#endif // QLORACC_RUNTIME_EXEC_LORASTATE_H
