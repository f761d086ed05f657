//===- Elementwise.cuh - silu, add, mul, fill, cast ------------*- CUDA -*-===//
//
// One packed vector of Config::kVec elements per thread and step, fp32
// arithmetic, one rounding to the output type:
//   silu_fwd  y = x / (1 + exp(-x))
//   silu_bwd  dx (+)= dy * s * (1 + x * (1 - s)), s = 1 / (1 + exp(-x))
//   add, mul  y = a + b, y = a * b
//   fill      out = value (rounded to T once, at compile time)
//   cast      out = in, From -> To (round to nearest even)
// Config: T (From, To for cast), kN, kVec (divides kN), kAccumulate,
// kValueBits (the f32 bit pattern: NaN and infinities are allowed). y may alias
// an input.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_KERNELS_ELEMENTWISE_CUH
#define QLORACC_KERNELS_ELEMENTWISE_CUH

#include "kernels/Common.cuh"

namespace qlora::cuda {

template <class Config> struct ElementwiseTraits {
  static constexpr int kVec = Config::kVec;
  static_assert(Config::kN % kVec == 0, "kVec must divide kN");
  static constexpr Index kVectors = Config::kN / kVec;
};

/// y = fn(a, b) elementwise over Config::kN elements of T.
template <class Config, typename Fn>
__device__ __forceinline__ void binaryMap(const typename Config::T *a,
                                          const typename Config::T *b,
                                          typename Config::T *y, Fn fn) {
  using Traits = ElementwiseTraits<Config>;
  constexpr int kVec = Traits::kVec;
  forEachVector<Traits::kVectors>([&](Index v) {
    float x0[kVec], x1[kVec], out[kVec];
    loadFloats(a, v * kVec, x0);
    loadFloats(b, v * kVec, x1);
#pragma unroll
    for (int k = 0; k < kVec; ++k)
      out[k] = fn(x0[k], x1[k]);
    storeFloats(y, v * kVec, out);
  });
}

template <class Config>
__device__ void siluFwd(const typename Config::T *x, typename Config::T *y) {
  using Traits = ElementwiseTraits<Config>;
  constexpr int kVec = Traits::kVec;
  forEachVector<Traits::kVectors>([&](Index v) {
    float in[kVec], out[kVec];
    loadFloats(x, v * kVec, in);
#pragma unroll
    for (int k = 0; k < kVec; ++k)
      out[k] = in[k] / (1.0f + expf(-in[k]));
    storeFloats(y, v * kVec, out);
  });
}

template <class Config>
__device__ void siluBwd(const typename Config::T *dy,
                        const typename Config::T *x, typename Config::T *dx) {
  using Traits = ElementwiseTraits<Config>;
  constexpr int kVec = Traits::kVec;
  forEachVector<Traits::kVectors>([&](Index v) {
    float g[kVec], in[kVec], out[kVec];
    loadFloats(dy, v * kVec, g);
    loadFloats(x, v * kVec, in);
    if constexpr (Config::kAccumulate)
      loadFloats(dx, v * kVec, out);
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      float s = 1.0f / (1.0f + expf(-in[k]));
      float grad = g[k] * s * (1.0f + in[k] * (1.0f - s));
      out[k] = Config::kAccumulate ? out[k] + grad : grad;
    }
    storeFloats(dx, v * kVec, out);
  });
}

template <class Config>
__device__ void add(const typename Config::T *a, const typename Config::T *b,
                    typename Config::T *y) {
  binaryMap<Config>(a, b, y, [](float u, float w) { return u + w; });
}

template <class Config>
__device__ void mul(const typename Config::T *a, const typename Config::T *b,
                    typename Config::T *y) {
  binaryMap<Config>(a, b, y, [](float u, float w) { return u * w; });
}

template <class Config> __device__ void fill(typename Config::T *out) {
  using Traits = ElementwiseTraits<Config>;
  constexpr int kVec = Traits::kVec;
  forEachVector<Traits::kVectors>([&](Index v) {
    float values[kVec];
#pragma unroll
    for (int k = 0; k < kVec; ++k)
      values[k] = __uint_as_float(Config::kValueBits);
    storeFloats(out, v * kVec, values);
  });
}

template <class Config>
__device__ void cast(const typename Config::From *in,
                     typename Config::To *out) {
  using Traits = ElementwiseTraits<Config>;
  constexpr int kVec = Traits::kVec;
  forEachVector<Traits::kVectors>([&](Index v) {
    float values[kVec];
    loadFloats(in, v * kVec, values);
    storeFloats(out, v * kVec, values);
  });
}

} // namespace qlora::cuda

#endif // QLORACC_KERNELS_ELEMENTWISE_CUH
