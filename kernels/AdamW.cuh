//===- AdamW.cuh - adamw ---------------------------------------*- CUDA -*-===//
//
// torch.optim.AdamW's single-tensor step on fp32 p, g, m, v, with the CPU
// kernel's roundings (runtime/backends/cpu/OptimizerKernels.cpp): each
// product, sum and quotient is one `_rn` intrinsic, so ptxas contracts none
// of them into an FMA it does not also make on the CPU:
//   g     = grad * grad_scale
//   p     = p * float(1 - lr*wd)                    (wd != 0)
//   m     = fma(w, g - m, m), w = float(1 - beta1)  (m.lerp_(g, 1 - beta1))
//   v     = v * float(beta2) + (float(1 - beta2) * g) * g
//   p     = p + (float(-lr / bc1) * m) / (sqrt(v) / float(sqrt(bc2)) + eps)
// bc1 = 1 - beta1^step, bc2 = 1 - beta2^step in double, once per block, the
// power by repeated squaring (the CPU calls std::pow; the two differ by a
// few double ulp, so the float step sizes agree but for rare ties).
// Config: kN, kBeta1, kBeta2, kEpsilon (double), kVec (divides kN), kThreads.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_KERNELS_ADAMW_CUH
#define QLORACC_KERNELS_ADAMW_CUH

#include "kernels/Common.cuh"

namespace qlora::cuda {

template <class Config> struct AdamWTraits {
  static constexpr int kVec = Config::kVec;
  static_assert(Config::kN % kVec == 0, "kVec must divide kN");
  static constexpr Index kVectors = Config::kN / kVec;
  static constexpr float kLerpWeight = float(1.0 - Config::kBeta1);
  static constexpr bool kSmallWeight =
      (kLerpWeight < 0 ? -kLerpWeight : kLerpWeight) < 0.5f;
  static constexpr float kBeta2 = float(Config::kBeta2);
  static constexpr float kOneMinusBeta2 = float(1.0 - Config::kBeta2);
  static constexpr float kEpsilon = float(Config::kEpsilon);
};

/// The step's scalars, computed once per block from the device scalars.
struct AdamWStep {
  float gradScale, decay, negStepSize, biasCorrection2Sqrt;
  bool decays;
};

/// base^exponent by repeated squaring in double: CUDA's pow is a call, and
/// the caller's live registers would spill around it. Within a few ulp of a
/// correctly rounded pow, far below the float the result is rounded to.
__device__ __forceinline__ double powInteger(double base, long long exponent) {
  const bool negative = exponent < 0;
  unsigned long long e = negative ? 0ull - (unsigned long long)exponent
                                  : (unsigned long long)exponent;
  double result = 1.0;
  for (; e != 0; e >>= 1, base *= base)
    if (e & 1)
      result *= base;
  return negative ? 1.0 / result : result;
}

/// a / b correctly rounded to float for finite operands: a * (1/b) in
/// double is within 2^-52 of a/b, and a float quotient that is not exact is
/// at least ~2^-49 away from a rounding boundary (b's odd part is below
/// 2^24), so the final rounding is the correct one. Unlike __fdiv_rn this
/// has no out-of-line slow path, whose call makes ptxas spill.
__device__ __forceinline__ float divide(float a, float b) {
  return float(double(a) * __drcp_rn(double(b)));
}

template <class Config>
__device__ void adamw(float *p, const float *grad, float *m, float *v,
                      const float *gradScale, const float *lr,
                      const long long *step, const float *weightDecay) {
  using Traits = AdamWTraits<Config>;
  constexpr int kVec = Traits::kVec;
  __shared__ AdamWStep shared;
  if (threadIdx.x == 0) {
    double rate = *lr, decay = *weightDecay;
    double biasCorrection1 = 1.0 - powInteger(Config::kBeta1, *step);
    double biasCorrection2 = 1.0 - powInteger(Config::kBeta2, *step);
    shared = {*gradScale, float(1.0 - rate * decay),
              float(-(rate / biasCorrection1)), float(sqrt(biasCorrection2)),
              decay != 0.0};
  }
  __syncthreads();
  const AdamWStep s = shared;
  auto update = [&](float &param, float grad, float &mean, float &variance) {
    float g = __fmul_rn(grad, s.gradScale);
    float decayed = s.decays ? __fmul_rn(param, s.decay) : param;
    float diff = __fsub_rn(g, mean);
    mean = Traits::kSmallWeight ? fmaf(Traits::kLerpWeight, diff, mean)
                                : fmaf(Traits::kLerpWeight - 1.0f, diff, g);
    variance = __fadd_rn(__fmul_rn(variance, Traits::kBeta2),
                         __fmul_rn(__fmul_rn(Traits::kOneMinusBeta2, g), g));
    float denom = __fadd_rn(divide(__fsqrt_rn(variance), s.biasCorrection2Sqrt),
                            Traits::kEpsilon);
    param = __fadd_rn(decayed, divide(__fmul_rn(s.negStepSize, mean), denom));
  };
  if constexpr (kVec == 1) {
    // Two elements per step, loads clamped and stores predicated: one
    // element per step or guarded loads make ptxas spill around the slow
    // paths of the square root and the divisions.
    forEachVector<(Config::kN + 1) / 2>([&](Index pair) {
      float ps[2], gs[2], ms[2], vs[2];
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        const Index i = min(2 * pair + k, Config::kN - 1);
        ps[k] = p[i], gs[k] = grad[i], ms[k] = m[i], vs[k] = v[i];
        update(ps[k], gs[k], ms[k], vs[k]);
      }
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        const Index i = 2 * pair + k;
        if (i < Config::kN)
          p[i] = ps[k], m[i] = ms[k], v[i] = vs[k];
      }
    });
    return;
  }
  forEachVector<Traits::kVectors>([&](Index vector) {
    const Index i = vector * kVec;
    float ps[kVec], gs[kVec], ms[kVec], vs[kVec];
    loadFloats(p, i, ps);
    loadFloats(grad, i, gs);
    loadFloats(m, i, ms);
    loadFloats(v, i, vs);
#pragma unroll
    for (int k = 0; k < kVec; ++k)
      update(ps[k], gs[k], ms[k], vs[k]);
    storeFloats(p, i, ps);
    storeFloats(m, i, ms);
    storeFloats(v, i, vs);
  });
}

} // namespace qlora::cuda

#endif // QLORACC_KERNELS_ADAMW_CUH
