//===- Scalar.cuh - scalar_binary, clip_coefficient ------------*- CUDA -*-===//
//
// One-thread kernels on f32 device scalars, as the CPU computes them:
//   scalar_binary     out = a op b, op one of add sub mul div (Config::kOp)
//   clip_coefficient  out = max_norm > 0 ? min(1, (1 / (norm + 1e-6)) *
//                     max_norm) : 1, NaN kept (torch.clamp)
// Each operation is one `_rn` intrinsic: no contraction into an FMA.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_KERNELS_SCALAR_CUH
#define QLORACC_KERNELS_SCALAR_CUH

#include "kernels/Common.cuh"

namespace qlora::cuda {

enum class ScalarOp { Add, Sub, Mul, Div };

template <class Config>
__device__ void scalarBinary(const float *a, const float *b, float *out) {
  if (threadIdx.x != 0 || blockIdx.x != 0)
    return;
  const float x = *a, y = *b;
  if constexpr (Config::kOp == ScalarOp::Add)
    *out = __fadd_rn(x, y);
  else if constexpr (Config::kOp == ScalarOp::Sub)
    *out = __fsub_rn(x, y);
  else if constexpr (Config::kOp == ScalarOp::Mul)
    *out = __fmul_rn(x, y);
  else
    *out = __fdiv_rn(x, y);
}

template <class Config>
__device__ void clipCoefficient(const float *norm, const float *maxNorm,
                                float *out) {
  if (threadIdx.x != 0 || blockIdx.x != 0)
    return;
  const float limit = *maxNorm;
  if (!(limit > 0.0f)) {
    *out = 1.0f;
    return;
  }
  float coefficient =
      __fmul_rn(__fdiv_rn(1.0f, __fadd_rn(*norm, 1e-6f)), limit);
  *out = isnan(coefficient) ? coefficient : fminf(coefficient, 1.0f);
}

} // namespace qlora::cuda

#endif // QLORACC_KERNELS_SCALAR_CUH
