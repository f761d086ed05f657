//===- Checkpoint.h - The tensors of a Hugging Face checkpoint --*- C++ -*-===//
//
// Finds every tensor of a model directory (one model.safetensors, or shards
// listed by model.safetensors.index.json) and checks the set against what the
// architecture needs: nothing missing, nothing unexpected, every shape and
// dtype right.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_COMPILER_IMPORTER_CHECKPOINT_H
#define QLORACC_COMPILER_IMPORTER_CHECKPOINT_H

#include "compiler/Importer/ModelConfig.h"
#include "runtime/format/Safetensors.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <memory>
#include <vector>

namespace qloracc::importer {

/// Where one tensor lives.
struct TensorLocation {
  const qlora::format::SafetensorsFile *file;
  const qlora::format::TensorView *tensor;
};

class Checkpoint {
public:
  /// Opens `directory`'s safetensors files and checks them against
  /// `expected`. Tensors in `ignorable` may be present or absent (e.g. a tied
  /// lm_head.weight); keys ending in ".rotary_emb.inv_freq" (old LLaMA
  /// checkpoints) are ignored as transformers does.
  static llvm::Expected<std::unique_ptr<Checkpoint>>
  open(llvm::StringRef directory, llvm::ArrayRef<FrozenTensor> expected,
       llvm::ArrayRef<std::string> ignorable);

  /// The location of a tensor that `open` checked; nullptr otherwise.
  const TensorLocation *find(llvm::StringRef name) const;

private:
  std::vector<std::unique_ptr<qlora::format::SafetensorsFile>> files;
  llvm::StringMap<TensorLocation> tensors;
};

} // namespace qloracc::importer

#endif // QLORACC_COMPILER_IMPORTER_CHECKPOINT_H
