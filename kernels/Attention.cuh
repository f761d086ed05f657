//===- Attention.cuh - attention_fwd, attention_bwd ------------*- CUDA -*-===//
//
// FlashAttention-2 on q[B,S,Hq,D], k and v [B,S,Hkv,D]: tiles of keys (or
// queries) staged in shared memory, scores recomputed tile by tile,
// nothing of size S x S anywhere. Query head h reads kv head h / (Hq / Hkv);
// causal rows i see keys j <= i. The entries below pick the path by
// activation type:
//
//   AttentionShared.cuh      traits and indexing both paths use
//   AttentionFma.cuh         f32 activations: fp32 FMA math
//   AttentionTensorCore.cuh  bf16 activations: WMMA bf16, fp32 accumulators
//
// Config: T, kBatch, kSeq, kHeads, kKvHeads, kHeadDim, kScale, kCausal, kVec
// (divides kHeadDim), kWarps, kRowsPerWarp (fwd, bwd phase 1; 16 on tensor
// cores), kKeysPerWarp (bwd phase 2), kAccumulate (bwd); tensor cores:
// kKeyTile (keys of an inner tile of the forward pass and backward phase 1:
// 64, 32 at head_dim 128 to fit 48 KiB), kQueryTile (queries of an inner
// tile of backward phase 2).
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_KERNELS_ATTENTION_CUH
#define QLORACC_KERNELS_ATTENTION_CUH

#include "kernels/AttentionFma.cuh"
#include "kernels/AttentionTensorCore.cuh"

namespace qlora::cuda {

/// Tensor cores for bf16 activations, fp32 FMA for f32 ones.
template <class Config>
__device__ void
attentionFwd(const typename Config::T *q, const typename Config::T *k,
             const typename Config::T *v, typename Config::T *o) {
  if constexpr (IsBf16<typename Config::T>::value)
    attentionFwdTensorCore<Config>(q, k, v, o);
  else
    attentionFwdFma<Config>(q, k, v, o);
}

template <class Config>
__device__ void
attentionBwdQuery(const typename Config::T *dout, const typename Config::T *q,
                  const typename Config::T *k, const typename Config::T *v,
                  const typename Config::T *o, typename Config::T *dq,
                  float *lse, float *delta) {
  if constexpr (IsBf16<typename Config::T>::value)
    attentionBwdQueryTensorCore<Config>(dout, q, k, v, o, dq, lse, delta);
  else
    attentionBwdQueryFma<Config>(dout, q, k, v, o, dq, lse, delta);
}

template <class Config>
__device__ void
attentionBwdKeyValue(const typename Config::T *dout,
                     const typename Config::T *q, const typename Config::T *k,
                     const typename Config::T *v, typename Config::T *dk,
                     typename Config::T *dv, const float *lse,
                     const float *delta) {
  if constexpr (IsBf16<typename Config::T>::value)
    attentionBwdKeyValueTensorCore<Config>(dout, q, k, v, dk, dv, lse, delta);
  else
    attentionBwdKeyValueFma<Config>(dout, q, k, v, dk, dv, lse, delta);
}

} // namespace qlora::cuda

#endif // QLORACC_KERNELS_ATTENTION_CUH
