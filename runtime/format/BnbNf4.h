//===- BnbNf4.h - bitsandbytes 4-bit tensors in a checkpoint ----*- C++ -*-===//
//
// Reads one weight that transformers saved from a model loaded with
// bitsandbytes in 4 bits (QuantState.as_dict(packed=True)): for a weight
// `<key>` the tensors
//
//   <key>                                  U8  [ceil(n/2), 1]  packed codes
//   <key>.absmax                           U8  [blocks] (double quantized)
//                                          F32 [blocks] (otherwise)
//   <key>.quant_map                        F32 [16]            the NF4 code
//   <key>.nested_absmax                    F32 [nested blocks] (dq only)
//   <key>.nested_quant_map                 F32 [256]           (dq only)
//   <key>.quant_state.bitsandbytes__nf4    U8  [bytes]         JSON object
//
// where the JSON holds quant_type, blocksize, dtype and shape, plus
// nested_blocksize, nested_dtype and nested_offset when double quantized.
// Everything is checked against everything else before a byte is handed
// out; the result views the mapped file(s) without copying.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_FORMAT_BNBNF4_H
#define QLORACC_RUNTIME_FORMAT_BNBNF4_H

#include "runtime/format/DType.h"
#include "runtime/format/Safetensors.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qlora::format {

/// The quant-state key suffixes bitsandbytes writes for 4-bit weights.
inline constexpr std::string_view kBnbNf4QuantStateSuffix =
    ".quant_state.bitsandbytes__nf4";
inline constexpr std::string_view kBnbFp4QuantStateSuffix =
    ".quant_state.bitsandbytes__fp4";

/// The suffixes of the tensors stored beside a 4-bit weight `<key>` (all of
/// them with double quantization; without it, no nested_* ones).
inline constexpr std::array<std::string_view, 5> kBnbNf4CompanionSuffixes = {
    ".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map",
    kBnbNf4QuantStateSuffix};

/// One bnb 4-bit tensor, viewed in mapped safetensors file(s).
struct BnbNf4Tensor {
  std::vector<int64_t> shape; // quant_state "shape"
  DType dtype; // quant_state "dtype": float32/bfloat16/float16 -> F32/BF16/F16
  int64_t blocksize;               // quant_state "blocksize"
  int64_t nestedBlocksize;         // quant_state "nested_blocksize", 0 when not
                                   // double quantized
  std::span<const uint8_t> packed; // <key>
  std::span<const std::byte> absmax;       // <key>.absmax: u8 codes (DQ) or f32
  std::span<const std::byte> nestedAbsmax; // <key>.nested_absmax (DQ)
  float offset = 0.0f;                     // quant_state "nested_offset" (DQ)

  bool isDoubleQuantized() const { return nestedBlocksize != 0; }
  int64_t numElements() const;
};

/// A tensor found by name and the path of the file holding it.
struct LocatedTensor {
  const TensorView *view = nullptr;
  const std::string *path = nullptr;
};

/// Finds a tensor by name across the files of a (possibly sharded)
/// checkpoint: transformers may put a weight's quant-state tensors in another
/// shard than the weight. Returns {nullptr, nullptr} when there is none.
using TensorLookup = std::function<LocatedTensor(const std::string &name)>;

/// True when `<key>` has a bitsandbytes 4-bit quant state: the NF4 one, or
/// the FP4 one (which readBnbNf4Tensor then rejects by name rather than
/// leaving `<key>` to look like a U8 tensor of the wrong shape).
bool hasBnbNf4QuantState(const TensorLookup &lookup, std::string_view key);
bool hasBnbNf4QuantState(const SafetensorsFile &file, std::string_view key);

/// Reads and validates the 4-bit tensor `key`. On failure returns
/// std::nullopt and sets `error` to one line naming the file and the key at
/// fault, what was expected and what was found.
std::optional<BnbNf4Tensor> readBnbNf4Tensor(const TensorLookup &lookup,
                                             std::string_view key,
                                             std::string &error);
std::optional<BnbNf4Tensor> readBnbNf4Tensor(const SafetensorsFile &file,
                                             std::string_view key,
                                             std::string &error);

} // namespace qlora::format

#endif // QLORACC_RUNTIME_FORMAT_BNBNF4_H
