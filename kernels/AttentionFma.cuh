//===- AttentionFma.cuh - attention on fp32 FMA units (f32) ----*- CUDA -*-===//
//
// The f32-activation path of Attention.cuh, fp32 FMA math throughout.
//
// Layout: a warp owns a few rows of the block (queries in the forward pass
// and backward phase 1, keys in backward phase 2); an inner tile has one
// partner row per lane (kTile = 32), so a lane computes the dot products of
// its partner with the warp's rows (the warp's rows are read as broadcasts,
// the partners' rows with a padded stride, conflict-free), and the
// head_dim-long accumulators are split over the lanes (element lane + 32 t).
//
//   fwd:      a block per (query tile, q head, batch); online softmax (running
//             max m and lane-partial sum l per row, the accumulator rescaled
//             when m grows); o = acc / l.
//   bwd p. 1: a block per (query tile, q head, batch); pass A over the keys
//             gives lse_i, D_i = rowsum(dO_i * O_i); pass B gives
//             dq_i = scale * sum_j P_ij (dP_ij - D_i) k_j, dP_ij = dO_i . v_j.
//             lse and D go to the module's global scratch [B, Hq, S].
//   bwd p. 2: a block per (key tile, kv head, batch) walks every q head of
//             its group and every query tile (from the diagonal on when
//             causal): dv_j += P_ij dO_i, dk_j += scale * dS_ij q_i with
//             dS_ij = P_ij (dP_ij - D_i); written once, no atomics.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_KERNELS_ATTENTIONFMA_CUH
#define QLORACC_KERNELS_ATTENTIONFMA_CUH

#include "kernels/AttentionShared.cuh"

namespace qlora::cuda {

/// Positions [first, first + Rows) of the [S, D] slice at `base` (positions
/// kStride elements apart) into `tile` (rows TileStride floats apart) as
/// fp32, zeros past kSeq. The whole block takes part.
template <class Config, int Rows, int TileStride, Index kStride, typename T>
__device__ __forceinline__ void loadAttentionRows(const T *base, int first,
                                                  float *tile) {
  using Traits = AttentionTraits<Config>;
  constexpr int kVec = Config::kVec;
  constexpr int kRowVectors = Traits::kD / kVec;
  static_assert(kVec % 4 == 0 && TileStride % 4 == 0, "whole float4s");
  for (int index = threadIdx.x; index < Rows * kRowVectors;
       index += Traits::kThreads) {
    const int row = index / kRowVectors, column = index % kRowVectors * kVec;
    float values[kVec];
    if (first + row < Traits::kSeq) {
      loadFloats(base, Index(first + row) * kStride + column, values);
    } else {
#pragma unroll
      for (int e = 0; e < kVec; ++e)
        values[e] = 0.0f;
    }
    // float4 stores: a quarter warp writes 128 contiguous bytes.
#pragma unroll
    for (int e = 0; e < kVec; e += 4)
      *reinterpret_cast<float4 *>(tile + row * TileStride + column + e) =
          float4{values[e], values[e + 1], values[e + 2], values[e + 3]};
  }
}

/// out[r] = rows[r] . mine over D floats, r < Rows, for rows RowStride
/// floats apart (the same for every lane: broadcasts) and this lane's
/// `mine`; all 16-byte aligned shared memory.
template <int Rows, int D>
__device__ __forceinline__ void dotRows(const float *rows, int rowStride,
                                        const float *mine, float (&out)[Rows]) {
#pragma unroll
  for (int r = 0; r < Rows; ++r)
    out[r] = 0.0f;
#pragma unroll 8
  for (int d = 0; d < D; d += 4) {
    const float4 y = *reinterpret_cast<const float4 *>(mine + d);
#pragma unroll
    for (int r = 0; r < Rows; ++r) {
      const float4 x =
          *reinterpret_cast<const float4 *>(rows + r * rowStride + d);
      out[r] = fmaf(x.x, y.x, out[r]);
      out[r] = fmaf(x.y, y.y, out[r]);
      out[r] = fmaf(x.z, y.z, out[r]);
      out[r] = fmaf(x.w, y.w, out[r]);
    }
  }
}

/// acc[r][t] += sum over the tile's lanes l of coefficient[r] (held by lane
/// l) * tile[l * TileStride + lane + 32 t]: the lane-split head_dim
/// accumulators of the warp's Rows rows.
template <int Rows, int D, int TileStride, int PerLane>
__device__ __forceinline__ void accumulateTile(const float (&coefficient)[Rows],
                                               const float *tile,
                                               float (&acc)[Rows][PerLane]) {
  const int lane = threadIdx.x % kWarpSize;
#pragma unroll 2
  for (int l = 0; l < kWarpSize; ++l) {
    float x[PerLane];
#pragma unroll
    for (int t = 0; t < PerLane; ++t) {
      const int d = lane + kWarpSize * t;
      x[t] = d < D ? tile[l * TileStride + d] : 0.0f;
    }
#pragma unroll
    for (int r = 0; r < Rows; ++r) {
      const float c = __shfl_sync(0xffffffffu, coefficient[r], l);
#pragma unroll
      for (int t = 0; t < PerLane; ++t)
        acc[r][t] = fmaf(c, x[t], acc[r][t]);
    }
  }
}

/// Writes (or, with Accumulate, adds) scale * acc to the row at `out` (this
/// lane's elements lane + 32 t).
template <bool Accumulate, int D, int PerLane, typename T>
__device__ __forceinline__ void storeRow(T *out, const float (&acc)[PerLane],
                                         float scale) {
  const int lane = threadIdx.x % kWarpSize;
#pragma unroll
  for (int t = 0; t < PerLane; ++t) {
    const int d = lane + kWarpSize * t;
    if (d >= D)
      continue;
    float value = acc[t] * scale;
    if constexpr (Accumulate)
      value += toFloat(out[d]);
    out[d] = fromFloat<T>(value);
  }
}

/// The online-softmax update of one row with this lane's score `score`
/// (-inf where masked): returns exp(score - m_new) and rescales by
/// exp(m_old - m_new) what the caller says (l and acc) through `alpha`.
__device__ __forceinline__ float onlineSoftmaxStep(float score, float &m,
                                                   float &alpha) {
  const float negInf = attentionNegInf();
  const float mNew = fmaxf(m, warpReduce(score, MaxOp()));
  // mNew is finite once any key was visible: key 0 is visible to every
  // row in the first tile. The guards keep a fully masked row at 0, not NaN.
  alpha = mNew == negInf ? 1.0f : expf(m - mNew);
  m = mNew;
  return score == negInf ? 0.0f : expf(score - mNew);
}

/// The scaled scores of the warp's Rows rows (from `firstRow`, staged at
/// `warpQ`) against this lane's key j0 + lane of the staged tile `ks`;
/// -inf where the key is masked.
template <class Config, int Rows>
__device__ __forceinline__ void tileScores(const float *warpQ, const float *ks,
                                           int firstRow, int j0,
                                           float (&score)[Rows]) {
  using Traits = AttentionTraits<Config>;
  const int lane = threadIdx.x % kWarpSize;
  dotRows<Rows, Traits::kD>(warpQ, Traits::kD, ks + lane * Traits::kPadded,
                            score);
#pragma unroll
  for (int r = 0; r < Rows; ++r)
    score[r] = Traits::visible(firstRow + r, j0 + lane)
                   ? score[r] * Config::kScale
                   : attentionNegInf();
}

template <class Config>
__device__ void
attentionFwdFma(const typename Config::T *q, const typename Config::T *k,
                const typename Config::T *v, typename Config::T *o) {
  using Traits = AttentionTraits<Config>;
  constexpr int kD = Traits::kD, kTile = Traits::kTile;
  constexpr int kPadded = Traits::kPadded, kPerLane = Traits::kPerLane;
  constexpr int kRows = Config::kRowsPerWarp;
  constexpr int kBlockRows = Config::kWarps * kRows;
  __shared__ __align__(16) float qs[kBlockRows * kD];
  __shared__ __align__(16) float ks[kTile * kPadded];
  __shared__ __align__(16) float vs[kTile * kD];

  const QueryBlock<Config> block;
  const int firstRow = block.firstRow;
  const Index qBase = block.qBase, kvBase = block.kvBase;
  loadAttentionRows<Config, kBlockRows, kD, Traits::kQStride>(q + qBase,
                                                              block.i0, qs);
  const float *warpQ = qs + block.warp * kRows * kD;
  const int keyEnd = block.keyEnd;

  float acc[kRows][kPerLane], m[kRows], l[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    m[r] = attentionNegInf();
    l[r] = 0.0f; // this lane's part of the row sum
#pragma unroll
    for (int t = 0; t < kPerLane; ++t)
      acc[r][t] = 0.0f;
  }
  for (int j0 = 0; j0 < keyEnd; j0 += kTile) {
    __syncthreads(); // qs written; the previous tile read
    loadAttentionRows<Config, kTile, kPadded, Traits::kKvStride>(k + kvBase, j0,
                                                                 ks);
    loadAttentionRows<Config, kTile, kD, Traits::kKvStride>(v + kvBase, j0, vs);
    __syncthreads();
    float p[kRows];
    tileScores<Config>(warpQ, ks, firstRow, j0, p);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float alpha;
      p[r] = onlineSoftmaxStep(p[r], m[r], alpha);
      l[r] = l[r] * alpha + p[r];
#pragma unroll
      for (int t = 0; t < kPerLane; ++t)
        acc[r][t] *= alpha;
    }
    accumulateTile<kRows, kD, kD, kPerLane>(p, vs, acc);
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float sum = warpReduce(l[r], SumOp());
    const int i = firstRow + r;
    if (i < Traits::kSeq)
      storeRow<false, kD, kPerLane>(o + qBase + i * Traits::kQStride, acc[r],
                                    1.0f / sum);
  }
}

/// Backward phase 1: dq, and lse and D of every row into `lse`, `delta`
/// ([B, Hq, S] floats) for phase 2.
template <class Config>
__device__ void
attentionBwdQueryFma(const typename Config::T *dout,
                     const typename Config::T *q, const typename Config::T *k,
                     const typename Config::T *v, const typename Config::T *o,
                     typename Config::T *dq, float *lse, float *delta) {
  using Traits = AttentionTraits<Config>;
  constexpr int kD = Traits::kD, kTile = Traits::kTile;
  constexpr int kPadded = Traits::kPadded, kPerLane = Traits::kPerLane;
  constexpr int kRows = Config::kRowsPerWarp;
  constexpr int kBlockRows = Config::kWarps * kRows;
  __shared__ __align__(16) float qs[kBlockRows * kD];
  __shared__ __align__(16) float dos[kBlockRows * kD];
  __shared__ __align__(16) float ks[kTile * kPadded];
  __shared__ __align__(16) float vs[kTile * kPadded];

  const QueryBlock<Config> block;
  const int warp = block.warp, lane = block.lane, firstRow = block.firstRow;
  const int h = block.h, b = block.b;
  const Index qBase = block.qBase, kvBase = block.kvBase;
  loadAttentionRows<Config, kBlockRows, kD, Traits::kQStride>(q + qBase,
                                                              block.i0, qs);
  loadAttentionRows<Config, kBlockRows, kD, Traits::kQStride>(dout + qBase,
                                                              block.i0, dos);
  const float *warpQ = qs + warp * kRows * kD;
  const float *warpDo = dos + warp * kRows * kD;
  const int keyEnd = block.keyEnd;

  // Pass A: the row maxima and sums, as in the forward pass.
  float m[kRows], l[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    m[r] = attentionNegInf();
    l[r] = 0.0f;
  }
  for (int j0 = 0; j0 < keyEnd; j0 += kTile) {
    __syncthreads();
    loadAttentionRows<Config, kTile, kPadded, Traits::kKvStride>(k + kvBase, j0,
                                                                 ks);
    __syncthreads();
    float score[kRows];
    tileScores<Config>(warpQ, ks, firstRow, j0, score);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float alpha;
      const float p = onlineSoftmaxStep(score[r], m[r], alpha);
      l[r] = l[r] * alpha + p;
    }
  }
  // lse and D of the block's rows, read back as broadcasts in pass B.
  __shared__ float blockLse[kBlockRows], blockDelta[kBlockRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int i = firstRow + r;
    const float rowLse = m[r] + logf(warpReduce(l[r], SumOp()));
    float dot = 0.0f;
    if (i < Traits::kSeq) {
      const auto *oRow = o + qBase + i * Traits::kQStride;
#pragma unroll
      for (int t = 0; t < kPerLane; ++t) {
        const int d = lane + kWarpSize * t;
        if (d < kD)
          dot = fmaf(warpDo[r * kD + d], toFloat(oRow[d]), dot);
      }
    }
    const float rowDelta = warpReduce(dot, SumOp());
    if (lane == 0) {
      blockLse[warp * kRows + r] = rowLse;
      blockDelta[warp * kRows + r] = rowDelta;
      if (i < Traits::kSeq) {
        lse[Traits::rowIndex(b, h, i)] = rowLse;
        delta[Traits::rowIndex(b, h, i)] = rowDelta;
      }
    }
  }

  // Pass B: dq_i = scale * sum_j dS_ij k_j.
  float acc[kRows][kPerLane];
#pragma unroll
  for (int r = 0; r < kRows; ++r)
#pragma unroll
    for (int t = 0; t < kPerLane; ++t)
      acc[r][t] = 0.0f;
  for (int j0 = 0; j0 < keyEnd; j0 += kTile) {
    __syncthreads();
    loadAttentionRows<Config, kTile, kPadded, Traits::kKvStride>(k + kvBase, j0,
                                                                 ks);
    loadAttentionRows<Config, kTile, kPadded, Traits::kKvStride>(v + kvBase, j0,
                                                                 vs);
    __syncthreads();
    float score[kRows], ds[kRows];
    tileScores<Config>(warpQ, ks, firstRow, j0, score);
    dotRows<kRows, kD>(warpDo, kD, vs + lane * kPadded, ds); // dP
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int row = warp * kRows + r;
      // exp(-inf) = 0 where masked.
      const float p = expf(score[r] - blockLse[row]);
      ds[r] = p * (ds[r] - blockDelta[row]);
    }
    accumulateTile<kRows, kD, kPadded, kPerLane>(ds, ks, acc);
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int i = firstRow + r;
    if (i < Traits::kSeq)
      storeRow<Config::kAccumulate, kD, kPerLane>(
          dq + qBase + i * Traits::kQStride, acc[r], Config::kScale);
  }
}

/// Backward phase 2: dk and dv from the lse and D phase 1 wrote.
template <class Config>
__device__ void attentionBwdKeyValueFma(const typename Config::T *dout,
                                        const typename Config::T *q,
                                        const typename Config::T *k,
                                        const typename Config::T *v,
                                        typename Config::T *dk,
                                        typename Config::T *dv,
                                        const float *lse, const float *delta) {
  using Traits = AttentionTraits<Config>;
  constexpr int kD = Traits::kD, kTile = Traits::kTile;
  constexpr int kPadded = Traits::kPadded, kPerLane = Traits::kPerLane;
  constexpr int kKeys = Config::kKeysPerWarp;
  constexpr int kBlockKeys = Config::kWarps * kKeys;
  __shared__ __align__(16) float ks[kBlockKeys * kD];
  __shared__ __align__(16) float vs[kBlockKeys * kD];
  __shared__ __align__(16) float qs[kTile * kPadded];
  __shared__ __align__(16) float dos[kTile * kPadded];
  __shared__ float tileLse[kTile], tileDelta[kTile];

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int j0 = blockIdx.x * kBlockKeys, g = blockIdx.y, b = blockIdx.z;
  const Index kvBase = Traits::base(b, g, Config::kKvHeads);
  loadAttentionRows<Config, kBlockKeys, kD, Traits::kKvStride>(k + kvBase, j0,
                                                               ks);
  loadAttentionRows<Config, kBlockKeys, kD, Traits::kKvStride>(v + kvBase, j0,
                                                               vs);
  const int firstKey = j0 + warp * kKeys; // the warp's keys
  const float *warpK = ks + warp * kKeys * kD;
  const float *warpV = vs + warp * kKeys * kD;
  // Causal: queries before j0 see none of the block's keys.
  const int queryStart = Config::kCausal ? j0 / kTile * kTile : 0;

  float dkAcc[kKeys][kPerLane], dvAcc[kKeys][kPerLane];
#pragma unroll
  for (int c = 0; c < kKeys; ++c)
#pragma unroll
    for (int t = 0; t < kPerLane; ++t) {
      dkAcc[c][t] = 0.0f;
      dvAcc[c][t] = 0.0f;
    }
  for (int h = g * Traits::kGroup; h < (g + 1) * Traits::kGroup; ++h) {
    const Index qBase = Traits::base(b, h, Config::kHeads);
    for (int i0 = queryStart; i0 < Traits::kSeq; i0 += kTile) {
      __syncthreads(); // ks, vs written; the previous tile read
      loadAttentionRows<Config, kTile, kPadded, Traits::kQStride>(q + qBase, i0,
                                                                  qs);
      loadAttentionRows<Config, kTile, kPadded, Traits::kQStride>(dout + qBase,
                                                                  i0, dos);
      if (threadIdx.x < kTile) {
        const int i = i0 + threadIdx.x;
        const bool valid = i < Traits::kSeq;
        tileLse[threadIdx.x] = valid ? lse[Traits::rowIndex(b, h, i)] : 0.0f;
        tileDelta[threadIdx.x] =
            valid ? delta[Traits::rowIndex(b, h, i)] : 0.0f;
      }
      __syncthreads();
      // This lane's query i against each of the warp's keys.
      float p[kKeys], ds[kKeys];
      dotRows<kKeys, kD>(warpK, kD, qs + lane * kPadded, p);
      dotRows<kKeys, kD>(warpV, kD, dos + lane * kPadded, ds); // dP
      const int i = i0 + lane;
#pragma unroll
      for (int c = 0; c < kKeys; ++c) {
        p[c] = expf(i < Traits::kSeq && Traits::visible(i, firstKey + c)
                        ? p[c] * Config::kScale - tileLse[lane]
                        : attentionNegInf());
        ds[c] = p[c] * (ds[c] - tileDelta[lane]);
      }
      accumulateTile<kKeys, kD, kPadded, kPerLane>(p, dos, dvAcc);
      accumulateTile<kKeys, kD, kPadded, kPerLane>(ds, qs, dkAcc);
    }
  }
#pragma unroll
  for (int c = 0; c < kKeys; ++c) {
    const int j = firstKey + c;
    if (j >= Traits::kSeq)
      continue;
    const Index offset = kvBase + j * Traits::kKvStride;
    storeRow<Config::kAccumulate, kD, kPerLane>(dk + offset, dkAcc[c],
                                                Config::kScale);
    storeRow<Config::kAccumulate, kD, kPerLane>(dv + offset, dvAcc[c], 1.0f);
  }
}

} // namespace qlora::cuda

#endif // QLORACC_KERNELS_ATTENTIONFMA_CUH
