//===- Gemm.h - Blocked fp32 GEMM for the CPU kernels -----------*- C++ -*-===//
//
// C = (accumulate ? C : 0) + alpha * (A · B) on strided operands, B possibly
// stored as bf16, f16 or NF4 (frozen weights) and widened or dequantized
// while it is packed, a panel at a time (no fp32 copy of B is made).
// BLIS-style: B panels of KC x NC and A blocks of MC x KC are packed into
// thread-local buffers and a 6 x 16 register-blocked micro-kernel runs over
// them (AVX2+FMA when the CPU has it, portable vector code otherwise).
//
// Every element of C sums its k products in increasing k order, continuing
// one accumulator across K blocks, so the result does not depend on how rows
// and columns are split among threads: 1 thread or N give the same bits. (It
// does depend on the micro-kernel: with FMA or without, i.e. on the CPU.)
// The fp32 sum is rounded before alpha scales it (torch's `(x@A.T@B.T) *
// scaling`) and before it is added to C.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_BACKENDS_CPU_GEMM_H
#define QLORACC_RUNTIME_BACKENDS_CPU_GEMM_H

#include "runtime/backends/cpu/ThreadPool.h"
#include "runtime/format/DType.h"

#include <cstdint>

namespace qlora::cpu::detail {

struct Nf4View;

/// Element (i, j) lives at element index i*rowStride + j*colStride of `data`,
/// or of the NF4 tensor `nf4` when that is set (B only; `data` and `dtype`
/// are then unused).
struct MatrixRef {
  const void *data;
  int64_t rowStride;
  int64_t colStride;
  format::DType dtype = format::DType::F32; // F32, BF16 or F16 (B only)
  const Nf4View *nf4 = nullptr;
};

struct GemmSpec {
  int64_t m, n, k;
  MatrixRef a; // m x k, F32
  MatrixRef b; // k x n
  float *c;    // m x n, row stride ldc
  int64_t ldc;
  float alpha = 1.0f;
  bool accumulate = false;
  bool portable = false; // tests only: skip the AVX2 micro-kernel
};

/// Splits C into tiles over the pool's threads.
void gemm(const GemmSpec &spec, ThreadPool &pool);
/// Runs in the calling thread (for kernels that parallelise above it).
void gemmSerial(const GemmSpec &spec);

} // namespace qlora::cpu::detail

#endif // QLORACC_RUNTIME_BACKENDS_CPU_GEMM_H
