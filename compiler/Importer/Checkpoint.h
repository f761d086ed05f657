//===- Checkpoint.h - The tensors of a Hugging Face checkpoint --*- C++ -*-===//
//
// Finds every tensor of a model directory (one model.safetensors, or shards
// listed by model.safetensors.index.json) and checks the set against what the
// architecture needs: nothing missing, nothing unexpected, every shape and
// dtype right. A linear weight that bitsandbytes stored in 4 bits is checked
// through its quant state (QuantizedCheckpoint.h), and the tensors beside it
// (`<key>.absmax`, ...) belong to it.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_COMPILER_IMPORTER_CHECKPOINT_H
#define QLORACC_COMPILER_IMPORTER_CHECKPOINT_H

#include "compiler/Importer/ModelConfig.h"
#include "runtime/format/BnbNf4.h"
#include "runtime/format/Safetensors.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <memory>
#include <optional>
#include <vector>

namespace qloracc::importer {

/// Where one tensor lives.
struct TensorLocation {
  const qlora::format::SafetensorsFile *file;
  const qlora::format::TensorView *tensor;
  /// Set when the tensor is stored as bitsandbytes 4-bit NF4; `tensor` is
  /// then its packed codes.
  std::optional<qlora::format::BnbNf4Tensor> nf4;
};

class Checkpoint {
public:
  /// Opens `directory`'s safetensors files and checks them against
  /// `expected`. Tensors in `ignorable` may be present or absent (e.g. a tied
  /// lm_head.weight); keys ending in ".rotary_emb.inv_freq" (old LLaMA
  /// checkpoints) are ignored as transformers does. Linear weights may be
  /// stored in bitsandbytes 4-bit only when `acceptBnb4Bit` (config.json
  /// says so).
  static llvm::Expected<std::unique_ptr<Checkpoint>>
  open(llvm::StringRef directory, llvm::ArrayRef<FrozenTensor> expected,
       llvm::ArrayRef<std::string> ignorable, bool acceptBnb4Bit);

  /// The location of a tensor that `open` checked; nullptr otherwise.
  const TensorLocation *find(llvm::StringRef name) const;

private:
  /// Finds any tensor of the checkpoint, in whichever file.
  qlora::format::TensorLookup lookup() const;

  std::vector<std::unique_ptr<qlora::format::SafetensorsFile>> files;
  llvm::StringMap<TensorLocation> tensors;
};

} // namespace qloracc::importer

#endif // QLORACC_COMPILER_IMPORTER_CHECKPOINT_H
