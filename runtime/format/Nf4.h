//===- Nf4.h - Reference NF4 + double-quantization codec --------*- C++ -*-===//
//
// A scalar reference for bitsandbytes' quantize_4bit(quant_type="nf4",
// compress_statistics=True) as it runs on the CPU (bitsandbytes 0.50.x,
// backends/default/ops.py for the 4-bit step, functional.py for the double
// quantization), bit-exact with its output on test/golden/nf4/. Every
// intermediate is rounded to fp32 exactly where torch rounds it:
//
//  - absmax of a block = max|x|; a full block is scaled by the reciprocal,
//    x * (1 / max(absmax, 1e-38f)), the last partial block by a division,
//    x / max(absmax, 1e-38f); then clamped to [-1, 1]. The stored absmax of a
//    full block is the unclamped max (0 for an all-zero block); the stored
//    absmax of a partial last block is the clamped one (1e-38f when all zero).
//  - the code index is torch.bucketize against the fp32 midpoints of adjacent
//    codes: the number of midpoints strictly below the scaled value (a value
//    on a midpoint goes to the lower code).
//  - offset = torch's fp32 mean of the absmax: its cascaded, vectorised fp32
//    sum (8 lanes) divided by the count.
//
// The nested 8-bit step is bnb's native CPU kernel, which quantize_blockwise
// really runs on the CPU: a lookup table over [-1, 1] instead of the search
// above, so a value near a midpoint can take the farther code (see
// doubleQuantize).
//
// All functions are pure; a non-finite input is an error, not a result.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_FORMAT_NF4_H
#define QLORACC_RUNTIME_FORMAT_NF4_H

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace qlora::format {

/// The 16 NF4 codes, index 0..15 (bitsandbytes get_4bit_type("nf4")).
extern const std::array<float, 16> kNf4Code;

/// QLoRA's first-level and nested block sizes.
inline constexpr int64_t kNf4DefaultBlocksize = 64;
inline constexpr int64_t kNf4NestedBlocksize = 256;

/// bitsandbytes create_dynamic_map(signed, max_exponent_bits=7,
/// total_bits=8): 256 sorted fp32 values, built with torch's fp32 linspace
/// (one fused multiply-add per value) and fp32 products.
std::vector<float> createDynamicMap(bool isSigned = true);

/// bitsandbytes' CPU lookup table for the nested 8-bit step
/// (build_quantize_lut over the signed dynamic map): entry i covers
/// -1 + 2i/65535 and holds the number of code midpoints strictly below it.
/// Built once, on first use.
inline constexpr int kNestedLutSize = 65536;
const std::array<uint8_t, kNestedLutSize> &nestedQuantizeLut();

/// The result of quantizeNf4.
struct Nf4Quantized {
  /// ceil(n/2) bytes; element 2i in the high nibble of byte i, element 2i+1
  /// in the low nibble; an odd count is padded with a zero element (code 7).
  std::vector<uint8_t> packed;
  /// One fp32 absmax per block of `blocksize` (the last one may be partial).
  std::vector<float> absmax;
};

/// Quantizes `values` (row-major, already widened to fp32) to NF4 in blocks
/// of `blocksize`. Returns std::nullopt and sets `error` when blocksize is
/// not positive or a value is NaN or infinite.
std::optional<Nf4Quantized> quantizeNf4(std::span<const float> values,
                                        int64_t blocksize, std::string &error);

/// `count` fp32 values: kNf4Code[idx] * absmax[block], one fp32 product.
/// Returns std::nullopt and sets `error` when the sizes do not match.
std::optional<std::vector<float>>
dequantizeNf4(std::span<const uint8_t> packed, std::span<const float> absmax,
              int64_t blocksize, int64_t count, std::string &error);

/// The result of doubleQuantize.
struct DoubleQuantized {
  /// One 8-bit dynamic-map code per first-level absmax.
  std::vector<uint8_t> codes;
  /// One fp32 absmax per nested block.
  std::vector<float> nestedAbsmax;
  /// mean(absmax), fp32, as torch computes it.
  float offset = 0.0f;
};

/// torch.mean of a contiguous fp32 vector on the CPU: the cascaded fp32 sum
/// of at::native's SumKernel with 8 fp32 lanes (torch's AVX2 kernel),
/// single-threaded (torch splits reductions over more than 32768 elements
/// between threads, so larger inputs need not match), divided by float(n).
float torchMeanF32(std::span<const float> values);

/// Double quantization of a first-level absmax vector: offset = mean, then
/// blockwise 8-bit quantization of (absmax - offset) with the signed dynamic
/// map in blocks of `nestedBlocksize`, exactly as bitsandbytes' CPU kernel
/// does it: a 65536-entry lookup table rather than a nearest-code search,
/// and a nested block of zeros gets absmax 0 and code 0.
/// Returns std::nullopt and sets `error` on a non-finite value or a
/// non-positive block size.
std::optional<DoubleQuantized> doubleQuantize(std::span<const float> absmax,
                                              int64_t nestedBlocksize,
                                              std::string &error);

/// Recovers the first-level absmax: dyn[codes[i]] * nestedAbsmax[i / nb] +
/// offset, each step rounded to fp32 (bitsandbytes dequantize_blockwise, then
/// += offset).
std::optional<std::vector<float>> recoverAbsmax(const DoubleQuantized &dq,
                                                int64_t nestedBlocksize,
                                                std::string &error);

/// Storage of an NF4 tensor of `count` elements with double quantization:
/// 4 bits per element, 8 bits per block of `blocksize`, 32 bits per nested
/// block of `blocksize * nestedBlocksize` elements (the offset and the two
/// code tables are left out), divided by `count`.
double nf4BitsPerParam(int64_t count, int64_t blocksize = 64,
                       int64_t nestedBlocksize = 256);

} // namespace qlora::format

#endif // QLORACC_RUNTIME_FORMAT_NF4_H
