//===- DType.h - Element types of stored tensors ----------------*- C++ -*-===//
//
// The element types that checkpoints and train.bin sections store, with the
// safetensors spelling of each. Shared by the compiler and the runtime.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_FORMAT_DTYPE_H
#define QLORACC_RUNTIME_FORMAT_DTYPE_H

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace qlora::format {

enum class DType : uint8_t {
  F64,
  F32,
  F16,
  BF16,
  I64,
  I32,
  I16,
  I8,
  U8,
  Bool,
};

/// Size of one element in bytes.
size_t dtypeSize(DType dtype);

/// The safetensors header spelling ("F32", "BF16", ...).
std::string_view dtypeName(DType dtype);

/// Parses a safetensors dtype string; std::nullopt when unknown.
std::optional<DType> parseDType(std::string_view name);

/// True for F64, F32, F16 and BF16.
bool isFloatDType(DType dtype);

} // namespace qlora::format

#endif // QLORACC_RUNTIME_FORMAT_DTYPE_H
