//===- RmsNorm.cuh - rms_norm_fwd, rms_norm_bwd ----------------*- CUDA -*-===//
//
// LlamaRMSNorm on one row per block, the row held in registers:
//   r  = 1 / sqrt(sum(x*x) / hidden + eps)
//   y  = w * (x * r)
//   dx (+)= r*w*dy - x * r^3/hidden * sum(w*dy*x)
// Sums are fp32 block reductions in a fixed tree order (the CPU kernel sums
// in double, sequentially). Config: T, W, kRows, kHidden, kEps, kThreads,
// kVec (divides kHidden), kAccumulate (bwd).
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_KERNELS_RMSNORM_CUH
#define QLORACC_KERNELS_RMSNORM_CUH

#include "kernels/Common.cuh"

namespace qlora::cuda {

template <class Config> struct RmsNormTraits {
  static constexpr int kVec = Config::kVec;
  static constexpr int kThreads = Config::kThreads;
  static_assert(Config::kHidden % kVec == 0, "kVec must divide kHidden");
  static constexpr Index kVectors = Config::kHidden / kVec;
  /// Vectors per thread, held in registers.
  static constexpr int kSteps = int((kVectors + kThreads - 1) / kThreads);
  static_assert(kSteps <= 8, "a row must fit the block's registers");

  /// The element index of step s of this thread, or -1 past the row.
  static __device__ __forceinline__ Index elementAt(int s) {
    Index v = Index(s) * kThreads + threadIdx.x;
    return v < kVectors ? v * kVec : -1;
  }
};

/// Loads this thread's part of a row of `hidden` elements (zeros past it).
template <class Traits, typename T>
__device__ __forceinline__ void
loadRow(const T *row, float (&out)[Traits::kSteps][Traits::kVec]) {
#pragma unroll
  for (int s = 0; s < Traits::kSteps; ++s) {
    Index i = Traits::elementAt(s);
    if (i >= 0)
      loadFloats(row, i, out[s]);
    else
#pragma unroll
      for (int k = 0; k < Traits::kVec; ++k)
        out[s][k] = 0.0f;
  }
}

/// 1 / sqrt(mean(x^2) + eps) over the block's row.
template <class Config, class Traits>
__device__ __forceinline__ float
rmsInverse(const float (&x)[Traits::kSteps][Traits::kVec]) {
  float sum = 0.0f;
#pragma unroll
  for (int s = 0; s < Traits::kSteps; ++s)
#pragma unroll
    for (int k = 0; k < Traits::kVec; ++k)
      sum += x[s][k] * x[s][k];
  sum = blockReduce<Traits::kThreads>(sum, SumOp());
  float variance = sum / float(Config::kHidden);
  return 1.0f / sqrtf(variance + Config::kEps);
}

template <class Config>
__device__ void rmsNormFwd(const typename Config::T *x,
                           const typename Config::W *w, typename Config::T *y) {
  using Traits = RmsNormTraits<Config>;
  const Index offset = Index(blockIdx.x) * Config::kHidden;
  float xs[Traits::kSteps][Traits::kVec];
  loadRow<Traits>(x + offset, xs);
  const float inverse = rmsInverse<Config, Traits>(xs);
#pragma unroll
  for (int s = 0; s < Traits::kSteps; ++s) {
    Index i = Traits::elementAt(s);
    if (i < 0)
      continue;
    float ws[Traits::kVec], out[Traits::kVec];
    loadFloats(w, i, ws);
#pragma unroll
    for (int k = 0; k < Traits::kVec; ++k)
      out[k] = ws[k] * (xs[s][k] * inverse);
    storeFloats(y + offset, i, out);
  }
}

template <class Config>
__device__ void
rmsNormBwd(const typename Config::T *dy, const typename Config::T *x,
           const typename Config::W *w, typename Config::T *dx) {
  using Traits = RmsNormTraits<Config>;
  constexpr int kSteps = Traits::kSteps, kVec = Traits::kVec;
  const Index offset = Index(blockIdx.x) * Config::kHidden;
  float xs[kSteps][kVec], gs[kSteps][kVec];
  loadRow<Traits>(x + offset, xs);
  loadRow<Traits>(dy + offset, gs);
  const float inverse = rmsInverse<Config, Traits>(xs);
  float dot = 0.0f;
#pragma unroll
  for (int s = 0; s < kSteps; ++s) {
    Index i = Traits::elementAt(s);
    if (i < 0)
      continue;
    float ws[kVec];
    loadFloats(w, i, ws);
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      gs[s][k] *= ws[k]; // w*dy from here on
      dot += gs[s][k] * xs[s][k];
    }
  }
  dot = blockReduce<Traits::kThreads>(dot, SumOp());
  const float coefficient =
      dot * inverse * inverse * inverse / float(Config::kHidden);
#pragma unroll
  for (int s = 0; s < kSteps; ++s) {
    Index i = Traits::elementAt(s);
    if (i < 0)
      continue;
    float out[kVec];
    if constexpr (Config::kAccumulate)
      loadFloats(dx + offset, i, out);
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      float grad = inverse * gs[s][k] - xs[s][k] * coefficient;
      out[k] = Config::kAccumulate ? out[k] + grad : grad;
    }
    storeFloats(dx + offset, i, out);
  }
}

} // namespace qlora::cuda

#endif // QLORACC_KERNELS_RMSNORM_CUH
