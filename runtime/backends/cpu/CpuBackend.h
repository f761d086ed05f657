//===- CpuBackend.h - The reference backend ---------------------*- C++ -*-===//
//
// Runs every KernelAbi.h kernel with fp32 C++ on a thread pool, over an arena
// of host memory. It is the backend tests and parity checks run on, and the
// one a machine without a GPU trains with.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_BACKENDS_CPU_CPUBACKEND_H
#define QLORACC_RUNTIME_BACKENDS_CPU_CPUBACKEND_H

#include "runtime/backends/cpu/CpuKernels.h"
#include "runtime/backends/cpu/ThreadPool.h"
#include "runtime/exec/Backend.h"

#include <memory>
#include <vector>

namespace qlora::cpu {

class CpuBackend final : public exec::Backend {
public:
  /// `threads` = 0 uses every core.
  explicit CpuBackend(unsigned threads = 0);
  ~CpuBackend() override;

  std::string_view name() const override { return "cpu"; }
  std::string description() const override;

  bool allocateArena(uint64_t bytes, std::string &error) override;
  bool prepareLaunch(uint32_t kernel, std::string_view templateName,
                     const format::KernelParams &params,
                     std::span<const exec::ArenaRange> args,
                     std::string &error) override;
  void launch(uint32_t kernel, std::span<const exec::ArenaRange> args) override;
  void upload(uint64_t offset, std::span<const std::byte> bytes) override;
  void download(uint64_t offset, std::span<std::byte> bytes) override;
  void copy(uint64_t srcOffset, uint64_t dstOffset, uint64_t bytes) override;
  bool synchronize(std::string &error) override { return true; }

  uint64_t arenaBytes() const { return arenaBytes_; }

private:
  struct PreparedKernel {
    const CpuKernel *kernel = nullptr;
    format::KernelParams params;
  };

  ThreadPool pool_;
  std::byte *arena_ = nullptr;
  uint64_t arenaBytes_ = 0;
  std::vector<PreparedKernel> kernels_;
  // Scratch for launch(), reused so that a step allocates nothing.
  std::vector<void *> argPointers_;
  std::vector<size_t> argBytes_;
};

} // namespace qlora::cpu

#endif // QLORACC_RUNTIME_BACKENDS_CPU_CPUBACKEND_H
