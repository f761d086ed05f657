//===- Nf4Quantizer.h - Fast NF4 + double-quantization codec ----*- C++ -*-===//
//
// The production codec for whole tensors: multi-threaded over blocks and,
// where the CPU has AVX-512 or AVX2, vectorized, yet bit-identical with the
// scalar reference of Nf4.h (quantizeNf4 + doubleQuantize + recoverAbsmax +
// dequantizeNf4) for every input and every thread count. Each block is
// independent, so threads own disjoint ranges of blocks and write disjoint
// bytes; nothing depends on how the work was split.
//
// The input is read in its stored dtype (F32, F16, BF16) and widened to fp32
// exactly, block by block, so no fp32 copy of the tensor is ever made.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_FORMAT_NF4QUANTIZER_H
#define QLORACC_RUNTIME_FORMAT_NF4QUANTIZER_H

#include "runtime/format/DType.h"
#include "runtime/format/Nf4Layout.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace qlora::format {

/// The widest instruction set the quantizer's kernel may use. Every kernel
/// gives the same bits; tests and benchmarks pick one to compare them.
enum class Nf4Isa : uint8_t {
  Best,     ///< the widest the CPU has (AVX-512, AVX2, else portable)
  Avx2,     ///< at most AVX2
  Portable, ///< plain C++, any target
};

struct Nf4QuantizeOptions {
  /// Elements per first-level absmax, 32..4096.
  int64_t blocksize = 64;
  /// First-level absmax per nested absmax; 0 = no double quantization (the
  /// absmax stays fp32).
  int64_t nestedBlocksize = 256;
  /// Worker threads; 0 = std::thread::hardware_concurrency().
  unsigned threads = 0;
  /// The widest instruction set the kernel may use.
  Nf4Isa isa = Nf4Isa::Best;
};

/// bitsandbytes' pieces of one quantized tensor.
struct Nf4Pieces {
  /// ceil(n/2) bytes; element 2i in the high nibble of byte i, element 2i+1
  /// in the low nibble; an odd count is padded with code 7 (a zero element).
  std::vector<uint8_t> packed;
  /// The first-level fp32 absmax, one per block, as quantizeNf4 stores it
  /// (before double quantization).
  std::vector<float> absmax;
  /// Double quantization only: one 8-bit dynamic-map code per block.
  std::vector<uint8_t> absmaxCodes;
  /// Double quantization only: one fp32 absmax per nested block.
  std::vector<float> nestedAbsmax;
  /// Double quantization only: torch's fp32 mean of `absmax`.
  float offset = 0;
};

/// Quantizes `count` row-major elements of `dtype` (F32, F16 or BF16) at
/// `data`. On failure returns std::nullopt and sets `error`: a bad dtype,
/// count or block size, "element <i> is not finite (<value>)" for the
/// first non-finite element (callers prefix the tensor name), or, with
/// double quantization, an absmax mean that overflows fp32 (where
/// bitsandbytes would store garbage).
std::optional<Nf4Pieces> quantizeNf4Tensor(const void *data, DType dtype,
                                           int64_t count,
                                           const Nf4QuantizeOptions &options,
                                           std::string &error);

/// The Nf4Layout of `count` elements quantized with `options`.
std::optional<Nf4Layout> nf4LayoutFor(int64_t count,
                                      const Nf4QuantizeOptions &options);

/// Writes the single-buffer form of Nf4Layout.h (codes, absmax or absmax
/// codes, nested absmax, offset) into `out`, zeroing the padding. `layout`
/// must be the layout of `pieces` and `out` exactly layout.totalBytes long.
void writeNf4Storage(const Nf4Pieces &pieces, const Nf4Layout &layout,
                     std::span<std::byte> out);

/// The dequantized fp32 tensor: kNf4Code[code] * absmax, where with double
/// quantization absmax is recovered exactly as recoverAbsmax does it.
std::vector<float> dequantizeNf4Tensor(const Nf4Pieces &pieces,
                                       const Nf4Layout &layout,
                                       unsigned threads = 0);

/// Quantization error of `pieces` against the original data, in one pass
/// and without materialising the dequantized tensor. Per element the error
/// is double(x) - double(dequantized); rmse accumulates its square in double
/// over fixed chunks (so the result does not depend on `threads`).
struct Nf4Error {
  double rmse = 0;
  double maxAbsError = 0;
};
Nf4Error measureNf4Error(const void *data, DType dtype, int64_t count,
                         const Nf4Pieces &pieces, const Nf4Layout &layout,
                         unsigned threads = 0);

} // namespace qlora::format

#endif // QLORACC_RUNTIME_FORMAT_NF4QUANTIZER_H
