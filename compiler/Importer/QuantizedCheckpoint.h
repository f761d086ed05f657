//===- QuantizedCheckpoint.h - bitsandbytes 4-bit checkpoints ---*- C++ -*-===//
//
// A model that transformers loaded with bitsandbytes in 4 bits and saved
// again: config.json carries a `quantization_config` and each quantized
// linear weight is stored as NF4 codes plus its quant state (see
// runtime/format/BnbNf4.h). The importer keeps those bytes as they are: the
// weight becomes a `qlora.weight` of type `!nf4.tensor`, never re-quantized.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_COMPILER_IMPORTER_QUANTIZEDCHECKPOINT_H
#define QLORACC_COMPILER_IMPORTER_QUANTIZEDCHECKPOINT_H

#include "compiler/Importer/ModelConfig.h"
#include "dialects/nf4/Nf4Dialect.h"
#include "runtime/format/BnbNf4.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <optional>
#include <string>
#include <vector>

namespace qloracc::importer {

/// The `quantization_config` of a checkpoint we can import: bitsandbytes,
/// load_in_4bit, quant type "nf4", uint8 storage.
struct BnbQuantizationConfig {
  /// bnb_4bit_use_double_quant.
  bool doubleQuant = false;
  /// llm_int8_skip_modules: modules transformers left in float.
  std::vector<std::string> skipModules;
};

/// Reads the `quantization_config` of the config.json at `configPath`:
/// std::nullopt when there is none, an error naming the file and the key
/// for any other quantization (8-bit, FP4, another method or storage).
llvm::Expected<std::optional<BnbQuantizationConfig>>
readBnbQuantizationConfig(llvm::StringRef configPath);

/// Whether transformers quantizes `tensor` under `config`: a linear weight,
/// not lm_head (transformers always keeps the output layer in float) and
/// in no skipped module. Used for shape-only graphs, which read no
/// checkpoint; with a checkpoint, what is stored quantized decides.
bool isQuantizedOnLoad(const BnbQuantizationConfig &config,
                       const FrozenTensor &tensor);

/// `!nf4.tensor<shape, block = blocksize[, dq = nestedBlocksize]>`.
mlir::nf4::Nf4TensorType getNf4Type(mlir::MLIRContext &context,
                                    llvm::ArrayRef<int64_t> shape,
                                    int64_t blocksize, int64_t nestedBlocksize);

/// Reads the bitsandbytes 4-bit tensor `want.name` (which has a quant
/// state, hasBnbNf4QuantState) and checks it against the model: config.json
/// must declare 4-bit quantization (`configIsQuantized`), the tensor must be
/// a linear weight, and its quant state's shape must be `want.shape`.
llvm::Expected<qlora::format::BnbNf4Tensor>
readQuantizedTensor(const qlora::format::TensorLookup &lookup,
                    const FrozenTensor &want, bool configIsQuantized);

} // namespace qloracc::importer

#endif // QLORACC_COMPILER_IMPORTER_QUANTIZEDCHECKPOINT_H
