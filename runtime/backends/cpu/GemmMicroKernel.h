//===- GemmMicroKernel.h - Register-blocked GEMM inner loops ----*- C++ -*-===//
//
// The only code of the backend compiled with -ffp-contract=fast: its
// multiply-adds become FMAs where the target has them, as in BLAS. Everything
// around it (packing, scaling, accumulating into C) rounds op by op.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_BACKENDS_CPU_GEMMMICROKERNEL_H
#define QLORACC_RUNTIME_BACKENDS_CPU_GEMMMICROKERNEL_H

#include <cstdint>

namespace qlora::cpu::detail {

constexpr int64_t kMicroRows = 6;     // MR
constexpr int64_t kMicroColumns = 16; // NR

/// tile[MR x NR] (row stride ld) = (first ? 0 : tile) + Ap · Bp, where Ap
/// holds kc columns of MR floats and Bp kc rows of NR floats. Each element
/// accumulates its kc products in order, continuing from the tile's value.
using MicroKernel = void (*)(int64_t kc, const float *ap, const float *bp,
                             float *tile, int64_t ld, bool first);

/// AVX2+FMA when the CPU has both (and !portable), else 4-wide vector code
/// that any target compiles (SSE2, NEON); that one fuses only where the
/// baseline instruction set has FMA (not on x86-64).
MicroKernel selectMicroKernel(bool portable);

} // namespace qlora::cpu::detail

#endif // QLORACC_RUNTIME_BACKENDS_CPU_GEMMMICROKERNEL_H
