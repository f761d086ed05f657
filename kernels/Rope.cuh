//===- Rope.cuh - rope (default and llama3) --------------------*- CUDA -*-===//
//
// LlamaRotaryEmbedding + apply_rotary_pos_emb on x[B,S,N,D], one block per
// position (b, s); thread t owns frequency i = t % (D/2) and computes its
// inverse frequency and cos/sin once for all the heads it visits:
//   inv_freq(i) = 1 / theta^(2i/D)             (fp32, as transformers)
//   llama3:      wavelen = 2pi / inv_freq; low frequencies / factor, the
//                band between smoothed (_compute_llama3_parameters)
//   y[i]     = x[i]*cos - x[i+D/2]*sin'        sin' = inverse ? -sin : sin
//   y[i+D/2] = x[i+D/2]*cos + x[i]*sin'        (inverse: the VJP)
// powf and sincosf are CUDA's (within 2 ulp of the CPU's libm). y may be x.
// Config: T, kBatch, kSeq, kHeads, kHeadDim, kTheta, kInverse, kLlama3 and,
// for llama3, kFactor, kLowFreqFactor, kOriginalMaxPosition,
// kLowFreqWavelen, kHighFreqWavelen, kFreqFactorSpread (all f32); kThreads.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_KERNELS_ROPE_CUH
#define QLORACC_KERNELS_ROPE_CUH

#include "kernels/Common.cuh"

namespace qlora::cuda {

template <class Config> struct RopeTraits {
  static_assert(Config::kHeadDim % 2 == 0, "head_dim must be even");
  static constexpr int kHalf = int(Config::kHeadDim / 2);
  static_assert(Config::kThreads % kHalf == 0, "a block covers whole heads");
  static constexpr int kHeadsPerStep = Config::kThreads / kHalf;
};

/// inv_freq(i) with the fp32 roundings of transformers.
template <class Config>
__device__ __forceinline__ float ropeInverseFrequency(int i) {
  float exponent = float(2 * i) / float(Config::kHeadDim);
  float inv = 1.0f / powf(Config::kTheta, exponent);
  if constexpr (!Config::kLlama3) {
    return inv;
  } else {
    const float twoPi = 6.28318530717958647692f;
    float wavelen = (1.0f / inv) * twoPi;
    float llama =
        wavelen > Config::kLowFreqWavelen ? inv / Config::kFactor : inv;
    float smooth = ((1.0f / wavelen) * Config::kOriginalMaxPosition -
                    Config::kLowFreqFactor) /
                   Config::kFreqFactorSpread;
    float smoothed = (1.0f - smooth) * llama / Config::kFactor + smooth * llama;
    bool medium = !(wavelen < Config::kHighFreqWavelen) &&
                  !(wavelen > Config::kLowFreqWavelen);
    return medium ? smoothed : llama;
  }
}

template <class Config>
__device__ void rope(const typename Config::T *x, typename Config::T *y) {
  using Traits = RopeTraits<Config>;
  constexpr int kHalf = Traits::kHalf;
  const int i = threadIdx.x % kHalf;
  const Index position = blockIdx.x; // b * S + s
  const float freq =
      float(position % Config::kSeq) * ropeInverseFrequency<Config>(i);
  float sine, cosine;
  sincosf(freq, &sine, &cosine);
  if constexpr (Config::kInverse)
    sine = -sine;
  const Index base = position * Config::kHeads * Config::kHeadDim;
  for (int head = threadIdx.x / kHalf; head < Config::kHeads;
       head += Traits::kHeadsPerStep) {
    const Index at = base + Index(head) * Config::kHeadDim + i;
    // Both halves are read before either is written: y may be x.
    float first = toFloat(x[at]), second = toFloat(x[at + kHalf]);
    y[at] = fromFloat<typename Config::T>(first * cosine - second * sine);
    y[at + kHalf] =
        fromFloat<typename Config::T>(second * cosine + first * sine);
  }
}

} // namespace qlora::cuda

#endif // QLORACC_KERNELS_ROPE_CUH
