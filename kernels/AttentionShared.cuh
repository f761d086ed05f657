//===- AttentionShared.cuh - what both attention paths share ---*- CUDA -*-===//
//
// The shapes and indexing both attention paths use (Attention.cuh): the
// Config's traits, the query rows a block owns, -inf.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_KERNELS_ATTENTIONSHARED_CUH
#define QLORACC_KERNELS_ATTENTIONSHARED_CUH

#include "kernels/Common.cuh"

namespace qlora::cuda {

template <class Config> struct AttentionTraits {
  static constexpr int kD = Config::kHeadDim;
  static constexpr int kSeq = int(Config::kSeq);
  /// Partner rows of an inner tile: one per lane.
  static constexpr int kTile = kWarpSize;
  /// Row stride of tiles read one row per lane: rows stay 16-byte aligned
  /// and a quarter warp's float4 reads hit distinct banks.
  static constexpr int kPadded = kD + 4;
  /// head_dim elements per lane: lane + 32 t, t < kPerLane.
  static constexpr int kPerLane = (kD + kWarpSize - 1) / kWarpSize;
  static constexpr int kThreads = Config::kWarps * kWarpSize;
  static constexpr int kGroup = int(Config::kHeads / Config::kKvHeads);
  /// Elements between consecutive positions of q (o, do) and of k (v).
  static constexpr Index kQStride = Index(Config::kHeads) * kD;
  static constexpr Index kKvStride = Index(Config::kKvHeads) * kD;
  static_assert(kD % 4 == 0 && kD % Config::kVec == 0,
                "head_dim must be whole float4s and whole vectors");
  static_assert(Config::kHeads % Config::kKvHeads == 0,
                "heads must be a multiple of kv_heads");

  /// Whether query i sees key j (padding keys past kSeq never).
  static __device__ __forceinline__ bool visible(int i, int j) {
    return j < kSeq && (!Config::kCausal || j <= i);
  }
  /// [b, 0, h, 0] of a tensor with `heads` heads.
  static __device__ __forceinline__ Index base(int b, int h, Index heads) {
    return (Index(b) * kSeq * heads + h) * kD;
  }
  /// Position i of (b, h) in the [B, Hq, S] scratch.
  static __device__ __forceinline__ Index rowIndex(int b, int h, int i) {
    return (Index(b) * Config::kHeads + h) * kSeq + i;
  }
};

/// The query rows a block of the forward pass or of backward phase 1 owns
/// (blockIdx: query tile, q head, batch) and where its tensors start.
template <class Config> struct QueryBlock {
  using Traits = AttentionTraits<Config>;
  static constexpr int kBlockRows = Config::kWarps * Config::kRowsPerWarp;
  int warp, lane, h, b;
  int i0;       ///< the block's first row
  int firstRow; ///< the warp's first row
  int keyEnd;   ///< keys past it are visible to none of the block's rows
  Index qBase, kvBase;

  __device__ __forceinline__ QueryBlock()
      : warp(threadIdx.x / kWarpSize), lane(threadIdx.x % kWarpSize),
        h(blockIdx.y), b(blockIdx.z), i0(blockIdx.x * kBlockRows),
        firstRow(i0 + warp * Config::kRowsPerWarp),
        keyEnd(Config::kCausal ? min(i0 + kBlockRows, Traits::kSeq)
                               : Traits::kSeq),
        qBase(Traits::base(b, h, Config::kHeads)),
        kvBase(Traits::base(b, h / Traits::kGroup, Config::kKvHeads)) {}
};

__device__ __forceinline__ float attentionNegInf() {
  return -__int_as_float(0x7f800000);
}

} // namespace qlora::cuda

#endif // QLORACC_KERNELS_ATTENTIONSHARED_CUH
