//===- Float16.h - bf16 and IEEE half conversions ---------------*- C++ -*-===//
//
// Widening is exact. Narrowing rounds to nearest even, as torch's `.to()`
// does: bf16 NaN becomes 0x7fc0 (c10::BFloat16), half NaN becomes 0x7e00 and
// overflow becomes infinity (c10::Half, after the FP16 library). All of it
// assumes the default floating-point environment (round to nearest, no
// flush-to-zero).
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_BACKENDS_CPU_FLOAT16_H
#define QLORACC_RUNTIME_BACKENDS_CPU_FLOAT16_H

#include "runtime/format/DType.h"

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace qlora::cpu {

inline float bf16ToFloat(uint16_t bits) {
  return std::bit_cast<float>(uint32_t(bits) << 16);
}

inline uint16_t floatToBf16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return 0x7fc0;
  uint32_t roundingBias = 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t((bits + roundingBias) >> 16);
}

/// Branch-free so that loops over it vectorize: the exponent/mantissa bits
/// shifted into float position and scaled by 2^112 give every finite half,
/// subnormals included, exactly.
inline float halfToFloat(uint16_t bits) {
  uint32_t sign = uint32_t(bits & 0x8000u) << 16;
  uint32_t magnitude = uint32_t(bits & 0x7fffu) << 13;
  float finite = std::bit_cast<float>(magnitude) * 0x1.0p112f;
  uint32_t special = magnitude | 0x7f800000u; // infinity or NaN
  uint32_t result =
      magnitude >= (0x7c00u << 13) ? special : std::bit_cast<uint32_t>(finite);
  return std::bit_cast<float>(result | sign);
}

inline uint16_t floatToHalf(float value) {
  // Scaling by 2^112 then 2^-110 rounds to half precision in one float
  // rounding, including the subnormal range, and saturates to infinity.
  float base =
      (std::bit_cast<float>(std::bit_cast<uint32_t>(value) & 0x7fffffffu) *
       0x1.0p112f) *
      0x1.0p-110f;
  uint32_t w = std::bit_cast<uint32_t>(value);
  uint32_t shl1 = w + w;
  uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1 & 0xff000000u;
  if (bias < 0x71000000u)
    bias = 0x71000000u;
  base = std::bit_cast<float>((bias >> 1) + 0x07800000u) + base;
  uint32_t bits = std::bit_cast<uint32_t>(base);
  uint32_t expBits = (bits >> 13) & 0x00007c00u;
  uint32_t mantissaBits = bits & 0x00000fffu;
  uint32_t nonsign = expBits + mantissaBits;
  return uint16_t((sign >> 16) | (shl1 > 0xff000000u ? 0x7e00u : nonsign));
}

/// Widens `count` elements of `dtype` (F32, BF16 or F16) starting at element
/// `first` of `base` into `out`.
inline void widenToFloat(const void *base, format::DType dtype, size_t first,
                         size_t count, float *out) {
  switch (dtype) {
  case format::DType::BF16: {
    const auto *in = static_cast<const uint16_t *>(base) + first;
    for (size_t i = 0; i < count; ++i)
      out[i] = bf16ToFloat(in[i]);
    return;
  }
  case format::DType::F16: {
    const auto *in = static_cast<const uint16_t *>(base) + first;
    for (size_t i = 0; i < count; ++i)
      out[i] = halfToFloat(in[i]);
    return;
  }
  default:
    std::memcpy(out, static_cast<const float *>(base) + first,
                count * sizeof(float));
    return;
  }
}

/// One element of a F32, BF16 or F16 buffer as float.
inline float loadAsFloat(const void *base, format::DType dtype, size_t index) {
  switch (dtype) {
  case format::DType::BF16:
    return bf16ToFloat(static_cast<const uint16_t *>(base)[index]);
  case format::DType::F16:
    return halfToFloat(static_cast<const uint16_t *>(base)[index]);
  default:
    return static_cast<const float *>(base)[index];
  }
}

/// Stores `value` as element `index` of a F32, BF16 or F16 buffer (rounded
/// to nearest even): loadAsFloat's inverse.
inline void storeFromFloat(void *base, format::DType dtype, size_t index,
                           float value) {
  switch (dtype) {
  case format::DType::BF16:
    static_cast<uint16_t *>(base)[index] = floatToBf16(value);
    return;
  case format::DType::F16:
    static_cast<uint16_t *>(base)[index] = floatToHalf(value);
    return;
  default:
    static_cast<float *>(base)[index] = value;
    return;
  }
}

} // namespace qlora::cpu

#endif // QLORACC_RUNTIME_BACKENDS_CPU_FLOAT16_H
