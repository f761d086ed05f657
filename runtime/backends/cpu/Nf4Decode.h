//===- Nf4Decode.h - NF4 weights as the CPU kernels read them ---*- C++ -*-===//
//
// Decoding of an NF4 tensor stored as format/Nf4Layout.h describes, with the
// values KernelAbi.h's [nf4] convention defines: element e is
//   round_to(dequantType, float(kNf4Code[code(e)] * absmax(e / blockSize)))
// widened back to fp32. The first-level absmax is recovered once per launch
// (Nf4Weight); the elements are decoded a contiguous run at a time, so the
// GEMM can dequantize B while it packs it and no fp32 copy of W exists.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_BACKENDS_CPU_NF4DECODE_H
#define QLORACC_RUNTIME_BACKENDS_CPU_NF4DECODE_H

#include "runtime/backends/cpu/ThreadPool.h"
#include "runtime/format/DType.h"
#include "runtime/format/Nf4Layout.h"

#include <cstdint>
#include <vector>

namespace qlora::cpu::detail {

/// The [nf4] parameters of a weight: `w_block_size`, `w_dq_block_size` and
/// `w_dequant_dtype`.
struct Nf4Params {
  int64_t blockSize = 64;
  int64_t dqBlockSize = 0; ///< 0: f32 absmax, no double quantization
  format::DType dequantType = format::DType::F32; ///< F32, BF16 or F16
};

/// An NF4 tensor ready to decode: its packed codes and its recovered fp32
/// absmax (one per block).
struct Nf4View {
  const uint8_t *codes;
  const float *absmax;
  int64_t blockSize;
  format::DType dequantType;
};

/// Writes elements [first, first + count) of `view` to `out`.
void decodeNf4Run(const Nf4View &view, int64_t first, int64_t count,
                  float *out);

/// One launch's view of an NF4 buffer of `count` elements (validated to hold
/// the layout's totalBytes): recovers the absmax into owned storage.
class Nf4Weight {
public:
  Nf4Weight(const void *buffer, int64_t count, const Nf4Params &params,
            ThreadPool &pool);
  Nf4Weight(const Nf4Weight &) = delete;
  Nf4Weight &operator=(const Nf4Weight &) = delete;

  const Nf4View &view() const { return view_; }

private:
  std::vector<float> absmax_;
  Nf4View view_;
};

} // namespace qlora::cpu::detail

#endif // QLORACC_RUNTIME_BACKENDS_CPU_NF4DECODE_H
