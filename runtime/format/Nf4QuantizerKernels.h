//===- Nf4QuantizerKernels.h - Block kernels of the NF4 quantizer -*- C++
//-*-===//
//
// The inner loops of quantizeNf4Tensor: absmax, scale, bucketize and pack of
// whole blocks, read straight from the stored dtype. A portable kernel that
// any target compiles, and AVX2 and AVX-512 ones chosen at run time where the
// CPU has them; all give the bits of Nf4.h's quantizeNf4.
//
// Why no clamp: the 15 midpoints lie strictly inside (-1, 1) and the scaled
// value of a finite block is finite, so clamping to [-1, 1] never changes
// how many midpoints lie below a value.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_FORMAT_NF4QUANTIZERKERNELS_H
#define QLORACC_RUNTIME_FORMAT_NF4QUANTIZERKERNELS_H

#include "runtime/format/DType.h"
#include "runtime/format/Nf4Quantizer.h"

#include <array>
#include <cstdint>

namespace qlora::format::detail {

/// clamp(min=1e-38) of bitsandbytes: the double 1e-38 cast to fp32.
inline constexpr float kNf4TinyAbsmax = static_cast<float>(1e-38);

/// Bits of |x| at or above this are infinity or NaN.
inline constexpr uint32_t kNf4NonFiniteBits = 0x7f800000u;

/// The fp32 midpoints (code[i] + code[i+1]) / 2 of adjacent NF4 codes, as
/// Nf4.cpp's quantizeNf4 bucketizes against them.
const std::array<float, 15> &nf4Midpoints();

/// Quantizes elements [first, first + length) of `data` as one block:
/// absmax = max|x| (stored as is for a full block, clamped to 1e-38 for the
/// partial last block, which divides by it instead of multiplying by the
/// reciprocal) and the 4-bit codes into `packed` (element e in the high
/// nibble of byte e/2 when e is even; the other nibble of a shared byte is
/// kept). Returns false, writing nothing, when an element is not finite.
bool quantizeNf4BlockPortable(const void *data, DType dtype, int64_t first,
                              int64_t length, bool partial, uint8_t *packed,
                              float &absmax);

/// Quantizes the full blocks [firstBlock, endBlock) of `blocksize` elements
/// of one dtype (the one it was selected for). Returns endBlock, or the
/// first block that holds a non-finite element (blocks from there on are
/// left unwritten).
using Nf4BlocksKernel = int64_t (*)(const void *data, int64_t blocksize,
                                    int64_t firstBlock, int64_t endBlock,
                                    uint8_t *packed, float *absmax);

/// The widest kernel for `dtype` (F32, F16 or BF16) that the CPU, `maxIsa`
/// and `blocksize` allow: AVX-512 (F+BW) or AVX2 (+F16C) for a blocksize
/// that is a multiple of 32, else the portable one.
Nf4BlocksKernel selectNf4BlocksKernel(DType dtype, int64_t blocksize,
                                      Nf4Isa maxIsa);

} // namespace qlora::format::detail

#endif // QLORACC_RUNTIME_FORMAT_NF4QUANTIZERKERNELS_H
