//===- Nf4WeightData.h - Weight bytes for --nf4-quantize-frozen -*- C++ -*-===//
//
// Where a frozen weight's bytes come from when the compiler itself needs
// them (to quantize them, or to wrap a checkpoint's NF4 pieces in an
// nf4.constant): the mapped safetensors file its `source` names, or its
// inline `value`. Checkpoints are mapped once per pass and stay mapped for
// as long as any attribute borrows from them.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_PASSES_NF4WEIGHTDATA_H
#define QLORACC_PASSES_NF4WEIGHTDATA_H

#include "dialects/qlora/QloraDialect.h"
#include "runtime/format/DType.h"
#include "runtime/format/Safetensors.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "llvm/ADT/StringMap.h"

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

namespace mlir::qlora {

/// Safetensors files opened by one pass run, each mapped once.
class CheckpointCache {
public:
  /// The mapped file at `path`, which holds the bytes of `weight` (its
  /// name); emits an error on `op` naming both on failure.
  FailureOr<std::shared_ptr<const ::qlora::format::SafetensorsFile>>
  open(Operation *op, StringRef weight, StringRef path);

private:
  llvm::StringMap<std::shared_ptr<const ::qlora::format::SafetensorsFile>>
      files;
};

/// The stored bytes of a float weight: `count` elements of `dtype` (F32,
/// BF16 or F16), little-endian, row-major.
struct WeightBytes {
  std::span<const std::byte> bytes;
  ::qlora::format::DType dtype = ::qlora::format::DType::F32;
  int64_t count = 0;
  /// Keeps `bytes` alive: the mapped file, or a splat expanded in memory.
  std::shared_ptr<const void> owner;
};

/// The bytes of `weight` (a float tensor with a `source` or a `value`).
/// Emits an error on the weight when the checkpoint lacks the tensor or
/// stores it with another dtype or shape, or the value is not dense.
FailureOr<WeightBytes> getWeightBytes(WeightOp weight, CheckpointCache &cache);

/// The safetensors dtype of an f32, bf16 or f16 element type.
std::optional<::qlora::format::DType> getFloatDType(Type elementType);

/// A dense_resource attribute of `type` over `bytes`, which `owner` keeps
/// alive for as long as the attribute's blob lives (no copy is made).
DenseResourceElementsAttr borrowAsResource(ShapedType type, StringRef name,
                                           std::span<const std::byte> bytes,
                                           std::shared_ptr<const void> owner);

} // namespace mlir::qlora

#endif // QLORACC_PASSES_NF4WEIGHTDATA_H
