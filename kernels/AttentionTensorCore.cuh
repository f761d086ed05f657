//===- AttentionTensorCore.cuh - attention on tensor cores --*- CUDA -*-===//
//
// The bf16-activation path of Attention.cuh.
//
// Tensor-core path (T = bf16; WMMA bf16 m16n16k16, fp32 accumulators):
// every product (q·kᵀ, p·v; backward: s, dp = dO·vᵀ, dq += dS·k, dk +=
// dSᵀ·q, dv += Pᵀ·dO) on tensor cores, P and dS rounded to bf16 as
// FlashAttention does; the softmax statistics (m, l, lse, D) stay fp32.
// head_dim is padded to whole 16-wide fragments with zeros in shared memory
// (40 -> 48); rows past kSeq are zeros, scores past it -inf. A warp owns 16
// rows (queries, or keys in backward phase 2) of a 64-row block (4 warps);
// q stays in registers as fragments, the o accumulators too (64 floats a
// lane at head_dim 128). Speed: the inner tiles are bf16 in shared memory
// with rows padded by 8 elements (a WMMA load's eight 16-byte rows hit
// distinct banks); the next k/v tile is loaded into registers while the
// tensor cores work on the current one and stored after a barrier (two
// barriers a tile, as Gemm.cuh's TileStage); the warp's scores go through
// a small fp32 scratch for the row-wise softmax (a lane pair a row) and P
// through a bf16 one, the only shared traffic besides the fragment loads.
// Per 16x64 warp tile of keys at head_dim 128, the k and v fragment loads
// (32 KiB) outweigh the scratch (6 KiB), so the fragment loads bound the
// speed: 16-row warps read each k/v fragment once per 16 queries (FA2 with
// 32-row warps reads it once per 32, at twice the registers).
// The backward phases give each 16 rows a warp pair (8 warps a block), so
// that no warp holds two head_dim-wide operand or accumulator sets (128
// registers a lane at head_dim 128). Phase 1, in one pass over the keys:
// one warp holds q's fragments, computes S = q·kᵀ and the online softmax
// (unnormalized P' = exp(S - m), as the forward pass), the other holds
// dO's and computes dP = dO·vᵀ; both write dS' = P' (dP - D) and add dS'·k
// to their half of dq's columns (rescaled when m grows; dq = scale / l dq
// at the end), three barriers a key tile; no second pass for lse. Phase 2:
// one warp holds k's fragments and accumulates dv from P (Sᵀ = k·qᵀ), the
// other v's and dk from dS (dPᵀ = v·dOᵀ), three barriers a query tile.
// Exponentials are exp2f of scores prescaled by log2(e); lse is base 2.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_KERNELS_ATTENTIONTENSORCORE_CUH
#define QLORACC_KERNELS_ATTENTIONTENSORCORE_CUH

#include "kernels/AttentionShared.cuh"

#include <mma.h>

namespace qlora::cuda {

/// Shapes of the tensor-core path: bf16 tiles with head_dim padded to whole
/// 16-wide fragments (zeros in shared memory) and rows kLd elements apart
/// (16 bytes past a multiple of 32: the eight 16-byte rows a WMMA load
/// reads at once hit distinct banks); fp32 scratch rows of an inner tile
/// kLdS floats apart.
template <class Config> struct TensorTiles {
  static constexpr int kD = Config::kHeadDim;
  static constexpr int kDk = (kD + 15) / 16 * 16;
  static constexpr int kLd = kDk + 8;
  static constexpr int kDFragments = kDk / 16;
  static constexpr int kThreads = Config::kWarps * kWarpSize;
  static_assert(kD % 8 == 0, "head_dim must be whole 16-byte vectors");
};

namespace wmma = nvcuda::wmma;
/// Scores are scaled by log2(e) once so that each exponential is one exp2f.
constexpr float kLog2e = 1.4426950408889634f;
using AttentionFragA =
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
/// B(k, n) at n * ld + k: a [n][k] tile (K for q·kᵀ).
using AttentionFragBt =
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major>;
/// B(k, n) at k * ld + n: a [k][n] tile (V for p·v).
using AttentionFragB =
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
using AttentionAcc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

/// One thread's part of a [Rows, kDk] bf16 tile of positions [first, first +
/// Rows) of an attention tensor (positions kStride elements apart), 16-byte
/// vectors held in registers between the global load and the shared store
/// (the next tile loads while the tensor cores work); zeros past kSeq and
/// past head_dim.
template <class Config, int Rows, Index kStride,
          int Threads = TensorTiles<Config>::kThreads>
struct RowStage {
  using Tiles = TensorTiles<Config>;
  static constexpr int kRowVectors = Tiles::kDk / 8;
  static constexpr int kVectors = Rows * kRowVectors;
  static constexpr int kThreads = Threads;
  static constexpr int kSteps = (kVectors + kThreads - 1) / kThreads;
  uint4 values[kSteps];

  template <class Fn> static __device__ __forceinline__ void forEach(Fn fn) {
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      const int v = s * kThreads + int(threadIdx.x);
      if (kVectors % kThreads != 0 && v >= kVectors)
        break;
      fn(s, v / kRowVectors, v % kRowVectors * 8);
    }
  }
  __device__ __forceinline__ void load(const __nv_bfloat16 *base, int first) {
    forEach([&](int s, int row, int column) {
      const bool inside = first + row < int(Config::kSeq) && column < Tiles::kD;
      values[s] = inside ? *reinterpret_cast<const uint4 *>(
                               base + Index(first + row) * kStride + column)
                         : make_uint4(0u, 0u, 0u, 0u);
    });
  }
  __device__ __forceinline__ void store(__nv_bfloat16 *tile) const {
    forEach([&](int s, int row, int column) {
      *reinterpret_cast<uint4 *>(tile + row * Tiles::kLd + column) = values[s];
    });
  }
};

/// The row of each element of an accumulator fragment, 4 bits each: WMMA
/// leaves the element order of a fragment unspecified, so row-wise factors
/// (the softmax rescale) are applied through it (one register on the GPU).
struct FragmentRows {
  static constexpr int kElements = AttentionAcc::num_elements;
  unsigned packed[(kElements + 7) / 8];

  /// Built from a fragment loaded from a matrix whose element (r, c) is r;
  /// `scratch` is the warp's, 16 rows of `ld` floats.
  __device__ __forceinline__ FragmentRows(float *scratch, int ld) {
    const int lane = threadIdx.x % kWarpSize;
    AttentionAcc rows;
    wmma::fill_fragment(rows, 0.0f); // every lane's elements defined
    for (int e = lane; e < 16 * 16; e += kWarpSize)
      scratch[e / 16 * ld + e % 16] = float(e / 16);
    __syncwarp();
    wmma::load_matrix_sync(rows, scratch, ld, wmma::mem_row_major);
    __syncwarp(); // read before the scratch is reused
#pragma unroll
    for (int w = 0; w < (kElements + 7) / 8; ++w)
      packed[w] = 0;
#pragma unroll
    for (int e = 0; e < kElements; ++e)
      packed[e / 8] |= (unsigned(rows.x[e]) & 15u) << (4 * (e % 8));
  }
  __device__ __forceinline__ int operator[](int e) const {
    return int(packed[e / 8] >> (4 * (e % 8))) & 15;
  }
};

/// acc[f] *= factor[row of the element] for the warp's 16 rows.
template <int Fragments>
__device__ __forceinline__ void scaleRows(AttentionAcc (&acc)[Fragments],
                                          const FragmentRows &rows,
                                          const float *factor) {
#pragma unroll
  for (int e = 0; e < AttentionAcc::num_elements; ++e) {
    const float f = factor[rows[e]];
#pragma unroll
    for (int i = 0; i < Fragments; ++i)
      acc[i].x[e] *= f;
  }
}

/// acc[n] = A · Bᵀ over K = 16 * KFragments: A the warp's 16 rows (fragments
/// `a`), B the rows of `tile` (ld `ld`), fragment n its rows 16 n.
template <int N, int KFragments>
__device__ __forceinline__ void
productTransposed(const AttentionFragA (&a)[KFragments],
                  const __nv_bfloat16 *tile, int ld, AttentionAcc (&acc)[N]) {
#pragma unroll
  for (int n = 0; n < N; ++n) {
    wmma::fill_fragment(acc[n], 0.0f);
#pragma unroll
    for (int k = 0; k < KFragments; ++k) {
      AttentionFragBt b;
      wmma::load_matrix_sync(b, tile + n * 16 * ld + k * 16, ld);
      wmma::mma_sync(acc[n], a[k], b, acc[n]);
    }
  }
}

/// acc[n] += A · B, n < N: A [16, 16 KSteps] at `a` (ld `lda`), B [16
/// KSteps, 16 N] at `b` (ld `ldb`).
template <int N, int KSteps, int Size>
__device__ __forceinline__ void
productAccumulate(const __nv_bfloat16 *a, int lda, const __nv_bfloat16 *b,
                  int ldb, AttentionAcc (&acc)[Size]) {
  static_assert(N <= Size, "N accumulators");
#pragma unroll
  for (int k = 0; k < KSteps; ++k) {
    AttentionFragA fa;
    wmma::load_matrix_sync(fa, a + k * 16, lda);
#pragma unroll
    for (int n = 0; n < N; ++n) {
      AttentionFragB fb;
      wmma::load_matrix_sync(fb, b + k * 16 * ldb + n * 16, ldb);
      wmma::mma_sync(acc[n], fa, fb, acc[n]);
    }
  }
}

/// Writes (or adds) scale[r] * acc to rows first + r < kSeq, columns <
/// head_dim of the [S, D] slice at `out` (positions kStride apart), through
/// the warp's fp32 scratch (16 rows of `ld` >= 16 floats). acc[f] holds
/// columns 16 (firstFragment + f), f < count.
template <class Config, bool Accumulate, Index kStride, int Fragments>
__device__ __forceinline__ void
storeFragmentRows(const AttentionAcc (&acc)[Fragments], float *scratch, int ld,
                  const float *scale, __nv_bfloat16 *out, int first,
                  int firstFragment = 0, int count = Fragments) {
  const int lane = threadIdx.x % kWarpSize;
  const int row = lane / 2, column = lane % 2 * 8; // 8 columns a lane
#pragma unroll
  for (int f = 0; f < Fragments; ++f) {
    if (f >= count)
      break;
    wmma::store_matrix_sync(scratch, acc[f], ld, wmma::mem_row_major);
    __syncwarp();
    const int i = first + row, d = (firstFragment + f) * 16 + column;
    if (i < int(Config::kSeq) && d < Config::kHeadDim) {
      float values[8];
#pragma unroll
      for (int e = 0; e < 8; ++e)
        values[e] = scratch[row * ld + column + e] * scale[row];
      const Index offset = Index(i) * kStride + d;
      if constexpr (Accumulate) {
        float old[8];
        loadFloats<8>(out, offset, old);
#pragma unroll
        for (int e = 0; e < 8; ++e)
          values[e] += old[e];
      }
      storeFloats<8>(out, offset, values);
    }
    __syncwarp(); // before the next fragment overwrites the scratch
  }
}

/// fn(k, column, x) for this lane's elements x of row lane / 2 of a warp's
/// fp32 scratch tile N columns wide (`row` points at the row): the lane pair
/// 2r, 2r + 1 shares row r, columns 8 t + 4 (lane % 2) + e, k = 4 t + e.
template <int N, class Fn>
__device__ __forceinline__ void forRowElements(const float *row, Fn fn) {
  const int half = threadIdx.x % 2;
#pragma unroll
  for (int t = 0; t < N / 8; ++t) {
    const float4 x = *reinterpret_cast<const float4 *>(row + 8 * t + 4 * half);
    fn(4 * t + 0, 8 * t + 4 * half + 0, x.x);
    fn(4 * t + 1, 8 * t + 4 * half + 1, x.y);
    fn(4 * t + 2, 8 * t + 4 * half + 2, x.z);
    fn(4 * t + 3, 8 * t + 4 * half + 3, x.w);
  }
}

/// Stores this lane's forRowElements values as bf16 into `row` (the same
/// columns of a bf16 tile row).
template <int N>
__device__ __forceinline__ void storeRowBf16(__nv_bfloat16 *row,
                                             const float (&values)[N / 2]) {
  const int half = threadIdx.x % 2;
#pragma unroll
  for (int t = 0; t < N / 8; ++t)
#pragma unroll
    for (int e = 0; e < 4; e += 2)
      *reinterpret_cast<__nv_bfloat162 *>(row + 8 * t + 4 * half + e) =
          __floats2bfloat162_rn(values[4 * t + e], values[4 * t + e + 1]);
}

/// The warp's scores against the [N, kDk] tile `tile` (q·kᵀ, or dO·vᵀ with
/// dO's fragments) into its fp32 scratch (rows ld apart).
template <int N, int KFragments>
__device__ __forceinline__ void
productToScratch(const AttentionFragA (&a)[KFragments],
                 const __nv_bfloat16 *tile, int tileLd, float *scratch,
                 int ld) {
  AttentionAcc acc[N / 16];
  productTransposed<N / 16>(a, tile, tileLd, acc);
#pragma unroll
  for (int n = 0; n < N / 16; ++n)
    wmma::store_matrix_sync(scratch + n * 16, acc[n], ld, wmma::mem_row_major);
  __syncwarp();
}

/// The forward pass on tensor cores. A block: 16 query rows a warp, q held
/// as WMMA fragments; per key tile of kKeyTile keys: S = q·kᵀ (fp32
/// accumulators) to the warp's fp32 scratch; the warp's lane pairs take a
/// row each for the online softmax (fp32 max and sum), writing P as bf16
/// over S and the row's rescale factor; o's accumulators are rescaled
/// (scaleRows) and o += P·v. K and V of the next tile load into registers
/// while the current one is used; two barriers a tile.
template <class Config>
__device__ void
attentionFwdTensorCore(const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                       const __nv_bfloat16 *v, __nv_bfloat16 *o) {
  using Traits = AttentionTraits<Config>;
  using Tiles = TensorTiles<Config>;
  constexpr int kLd = Tiles::kLd, kDFragments = Tiles::kDFragments;
  constexpr int kN = Config::kKeyTile, kLdS = kN + 4, kLdP = kN + 8;
  constexpr int kWarps = Config::kWarps, kBlockRows = kWarps * 16;
  static_assert(Config::kRowsPerWarp == 16, "a warp owns 16 query rows");
  static_assert(kN % 16 == 0, "whole key fragments");
  constexpr int kQBytes = kBlockRows * kLd * 2;
  constexpr int kScratchBytes = kWarps * 16 * kLdS * 4;
  constexpr int kRegionBytes =
      kQBytes > kScratchBytes ? kQBytes : kScratchBytes;
  constexpr int kKvElements = kN * kLd;
  __shared__ __align__(
      128) unsigned char shared[kRegionBytes + 4 * kKvElements];
  __shared__ __align__(32) __nv_bfloat16 pTiles[kWarps][16 * kLdP];
  __shared__ float rowScale[kWarps][16];
  static_assert(sizeof(shared) + sizeof(pTiles) + sizeof(rowScale) <= 48 * 1024,
                "static shared memory");
  auto *region = reinterpret_cast<__nv_bfloat16 *>(shared);
  auto *ks = reinterpret_cast<__nv_bfloat16 *>(shared + kRegionBytes);
  __nv_bfloat16 *vs = ks + kKvElements;

  const QueryBlock<Config> block;
  const int warp = block.warp, lane = block.lane;
  const Index kvBase = block.kvBase;
  const int keyEnd = block.keyEnd;
  using KvStage = RowStage<Config, kN, Traits::kKvStride>;
  {
    RowStage<Config, kBlockRows, Traits::kQStride> qStage;
    qStage.load(q + block.qBase, block.i0);
    qStage.store(region);
  }
  KvStage kStage, vStage;
  kStage.load(k + kvBase, 0);
  kStage.store(ks);
  vStage.load(v + kvBase, 0);
  __syncthreads();
  AttentionFragA qFrag[kDFragments];
#pragma unroll
  for (int f = 0; f < kDFragments; ++f)
    wmma::load_matrix_sync(qFrag[f], region + warp * 16 * kLd + f * 16, kLd);
  __syncthreads(); // q read: the region is the warps' scratch from here
  float *scratch = reinterpret_cast<float *>(shared) + warp * 16 * kLdS;
  __nv_bfloat16 *p = pTiles[warp];
  const FragmentRows rowOf(scratch, kLdS);

  AttentionAcc oAcc[kDFragments];
#pragma unroll
  for (int f = 0; f < kDFragments; ++f)
    wmma::fill_fragment(oAcc[f], 0.0f);
  // Lanes 2r and 2r + 1 own row r (forRowElements).
  const int row = lane / 2, half = lane % 2;
  const int i = block.firstRow + row;
  const float negInf = attentionNegInf();
  constexpr float kScaleLog2 = Config::kScale * kLog2e;
  float m = negInf, l = 0.0f; // base 2; l: this lane's part of the row sum
#pragma unroll 1
  for (int j0 = 0; j0 < keyEnd; j0 += kN) {
    const bool more = j0 + kN < keyEnd; // the same in every thread
    const __nv_bfloat16 *kTile = unhoisted(ks), *vTile = unhoisted(vs);
    const __nv_bfloat16 *pTile = unhoisted(p);
    // Causal: a warp whose rows all precede the tile skips it (P = 0).
    const bool seen = !Config::kCausal || j0 <= block.firstRow + 15;
    if (seen) {
      productToScratch<kN>(qFrag, kTile, kLd, scratch, kLdS);
      // Scores scaled to base 2, -inf where masked.
      const float *sRow = scratch + row * kLdS;
      float tileMax = negInf;
      forRowElements<kN>(sRow, [&](int, int c, float x) {
        tileMax = fmaxf(tileMax,
                        Traits::visible(i, j0 + c) ? x * kScaleLog2 : negInf);
      });
      tileMax = fmaxf(tileMax, __shfl_xor_sync(0xffffffffu, tileMax, 1));
      // mNew is finite once any key was visible: key 0 is visible to every
      // row in the first tile. The guard keeps a fully masked row at 0.
      const float mNew = fmaxf(m, tileMax);
      const float alpha = mNew == negInf ? 1.0f : exp2f(m - mNew);
      m = mNew;
      float sum = 0.0f, pv[kN / 2];
      forRowElements<kN>(sRow, [&](int e, int c, float x) {
        pv[e] =
            Traits::visible(i, j0 + c) ? exp2f(x * kScaleLog2 - mNew) : 0.0f;
        sum += pv[e];
      });
      storeRowBf16<kN>(p + row * kLdP, pv);
      l = l * alpha + sum;
      if (half == 0)
        rowScale[warp][row] = alpha;
      __syncwarp();
      scaleRows(oAcc, rowOf, rowScale[warp]);
    }
    vStage.store(vs);
    __syncthreads(); // v stored; every warp is done with k
    if (more)
      kStage.load(k + kvBase, j0 + kN);
    if (seen)
      productAccumulate<kDFragments, kN / 16>(pTile, kLdP, vTile, kLd, oAcc);
    if (more) {
      kStage.store(ks);
      vStage.load(v + kvBase, j0 + kN);
    }
    __syncthreads(); // k stored; every warp is done with v
  }
  const float rowSum = l + __shfl_xor_sync(0xffffffffu, l, 1);
  if (half == 0)
    rowScale[warp][row] = 1.0f / rowSum;
  __syncwarp();
  storeFragmentRows<Config, false, Traits::kQStride>(
      oAcc, scratch, kLdS, rowScale[warp], o + block.qBase, block.firstRow);
}

/// Backward phase 1 on tensor cores, one pass over the k and v tiles: a
/// block of 16 query rows a warp pair (2 x kWarps warps), the pair's first
/// warp holding q's fragments, the second dO's. Per tile: the first warp
/// computes S = q·kᵀ into its fp32 scratch and, a lane pair a row, the
/// running maximum m and sum l as the forward pass does, leaving P' =
/// exp(scale S - m) there and the rescale factor of the row; the second
/// computes dP = dO·vᵀ; after a barrier each warp writes dS' = P' (dP - D)
/// as bf16 (D = rowsum(dO ⊙ o), computed first) and adds dS'·k to its half
/// of dq's columns, rescaled when m grew. At the end dq = scale / l · dq,
/// since dS = dS' / l; lse (base 2) and D go to `lse`, `delta`.
template <class Config>
__device__ void
attentionBwdQueryTensorCore(const __nv_bfloat16 *dout, const __nv_bfloat16 *q,
                            const __nv_bfloat16 *k, const __nv_bfloat16 *v,
                            const __nv_bfloat16 *o, __nv_bfloat16 *dq,
                            float *lse, float *delta) {
  using Traits = AttentionTraits<Config>;
  using Tiles = TensorTiles<Config>;
  constexpr int kLd = Tiles::kLd, kDFragments = Tiles::kDFragments;
  // dq's column fragments: the first warp of a pair takes kHalf0.
  constexpr int kHalf0 = (kDFragments + 1) / 2, kHalf1 = kDFragments / 2;
  constexpr int kN = Config::kKeyTile, kLdS = kN + 4, kLdP = kN + 8;
  constexpr int kPairs = Config::kWarps, kThreads = 2 * kPairs * kWarpSize;
  constexpr int kBlockRows = kPairs * 16;
  static_assert(Config::kRowsPerWarp == 16, "a warp pair owns 16 query rows");
  static_assert(kN % 16 == 0, "whole key fragments");
  constexpr int kQBytes = kBlockRows * kLd * 2;
  constexpr int kScratchFloats = 16 * kLdS;
  constexpr int kScratchBytes = 2 * kPairs * kScratchFloats * 4;
  constexpr int kRegionBytes =
      kQBytes > kScratchBytes ? kQBytes : kScratchBytes;
  constexpr int kKvElements = kN * kLd;
  constexpr int kSharedBytes = kRegionBytes + 4 * kKvElements;
  __shared__ __align__(128) unsigned char shared[kSharedBytes];
  __shared__ __align__(32) __nv_bfloat16 dsTiles[2][kPairs][16 * kLdP];
  __shared__ float rowScale[kPairs][16];
  static_assert(sizeof(shared) + sizeof(dsTiles) + sizeof(rowScale) <=
                    48 * 1024,
                "static shared memory");
  auto *region = reinterpret_cast<__nv_bfloat16 *>(shared);
  auto *ks = reinterpret_cast<__nv_bfloat16 *>(shared + kRegionBytes);
  __nv_bfloat16 *vs = ks + kKvElements;

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int role = warp / kPairs, pair = warp % kPairs; // 0: q, 1: dO
  const int h = blockIdx.y, b = blockIdx.z;
  const int i0 = blockIdx.x * kBlockRows, firstRow = i0 + pair * 16;
  const int keyEnd =
      Config::kCausal ? min(i0 + kBlockRows, Traits::kSeq) : Traits::kSeq;
  const Index qBase = Traits::base(b, h, Config::kHeads);
  const Index kvBase = Traits::base(b, h / Traits::kGroup, Config::kKvHeads);
  const int row = lane / 2, half = lane % 2;
  const int i = firstRow + row;
  // D: a lane takes every other 8-element vector of its row.
  float dot = 0.0f;
  if (i < Traits::kSeq)
    for (int d = 8 * half; d < Traits::kD; d += 16) {
      float x[8], y[8];
      loadFloats<8>(dout, qBase + i * Traits::kQStride + d, x);
      loadFloats<8>(o, qBase + i * Traits::kQStride + d, y);
#pragma unroll
      for (int e = 0; e < 8; ++e)
        dot = fmaf(x[e], y[e], dot);
    }
  const float rowDelta = dot + __shfl_xor_sync(0xffffffffu, dot, 1);

  using KvStage = RowStage<Config, kN, Traits::kKvStride, kThreads>;
  AttentionFragA own[kDFragments]; // q (role 0) or dO (role 1)
  {
    // q, then dO, through the region.
    RowStage<Config, kBlockRows, Traits::kQStride, kThreads> stage;
    stage.load(q + qBase, i0);
    stage.store(region);
    __syncthreads();
    if (role == 0)
#pragma unroll
      for (int f = 0; f < kDFragments; ++f)
        wmma::load_matrix_sync(own[f], region + pair * 16 * kLd + f * 16, kLd);
    stage.load(dout + qBase, i0);
    __syncthreads();
    stage.store(region);
    __syncthreads();
    if (role == 1)
#pragma unroll
      for (int f = 0; f < kDFragments; ++f)
        wmma::load_matrix_sync(own[f], region + pair * 16 * kLd + f * 16, kLd);
  }
  KvStage kStage, vStage;
  kStage.load(k + kvBase, 0);
  vStage.load(v + kvBase, 0);
  kStage.store(ks);
  vStage.store(vs);
  __syncthreads(); // dO read: the region is the pairs' scratch from here
  float *sScratch = reinterpret_cast<float *>(shared) + pair * kScratchFloats;
  float *dpScratch = sScratch + kPairs * kScratchFloats;
  float *scratch = role == 0 ? sScratch : dpScratch;
  __nv_bfloat16 *ds = dsTiles[role][pair];
  const FragmentRows rowOf(scratch, kLdS);
  const float negInf = attentionNegInf();
  constexpr float kScaleLog2 = Config::kScale * kLog2e;

  AttentionAcc dqAcc[kHalf0]; // columns 16 (role kHalf0 + f)
#pragma unroll
  for (int f = 0; f < kHalf0; ++f)
    wmma::fill_fragment(dqAcc[f], 0.0f);
  float m = negInf, l = 0.0f; // base 2; l: this lane's part of the row sum
#pragma unroll 1
  for (int j0 = 0; j0 < keyEnd; j0 += kN) {
    const bool more = j0 + kN < keyEnd; // the same in every thread
    if (more) {
      kStage.load(k + kvBase, j0 + kN);
      vStage.load(v + kvBase, j0 + kN);
    }
    const __nv_bfloat16 *kTile = unhoisted(ks), *vTile = unhoisted(vs);
    const __nv_bfloat16 *dsTile = unhoisted(ds);
    // Causal: a pair whose rows all precede the tile skips it (dS = 0).
    const bool seen = !Config::kCausal || j0 <= firstRow + 15;
    if (seen)
      productToScratch<kN>(own, role == 0 ? kTile : vTile, kLd, scratch, kLdS);
    if (seen && role == 0) {
      float p[kN / 2];
      float tileMax = negInf;
      forRowElements<kN>(scratch + row * kLdS, [&](int e, int c, float x) {
        p[e] = Traits::visible(i, j0 + c) ? x * kScaleLog2 : negInf;
        tileMax = fmaxf(tileMax, p[e]);
      });
      tileMax = fmaxf(tileMax, __shfl_xor_sync(0xffffffffu, tileMax, 1));
      // Finite from the first tile on: key 0 is visible to every row.
      const float mNew = fmaxf(m, tileMax);
      const float alpha = mNew == negInf ? 1.0f : exp2f(m - mNew);
      m = mNew;
      float sum = 0.0f;
#pragma unroll
      for (int e = 0; e < kN / 2; ++e) {
        p[e] = p[e] == negInf ? 0.0f : exp2f(p[e] - mNew);
        sum += p[e];
      }
      l = l * alpha + sum;
#pragma unroll
      for (int u = 0; u < kN / 8; ++u) // P', in place
        *reinterpret_cast<float4 *>(scratch + row * kLdS + 8 * u + 4 * half) =
            float4{p[4 * u], p[4 * u + 1], p[4 * u + 2], p[4 * u + 3]};
      if (half == 0)
        rowScale[pair][row] = alpha;
    }
    __syncthreads(); // P' and dP stored
    if (seen) {
      float dsRow[kN / 2];
      forRowElements<kN>(sScratch + row * kLdS,
                         [&](int e, int, float x) { dsRow[e] = x; });
      forRowElements<kN>(dpScratch + row * kLdS, [&](int e, int, float x) {
        dsRow[e] *= x - rowDelta;
      });
      storeRowBf16<kN>(ds + row * kLdP, dsRow);
      __syncwarp();
      scaleRows(dqAcc, rowOf, rowScale[pair]);
      if (role == 0)
        productAccumulate<kHalf0, kN / 16>(dsTile, kLdP, kTile, kLd, dqAcc);
      else
        productAccumulate<kHalf1, kN / 16>(dsTile, kLdP, kTile + kHalf0 * 16,
                                           kLd, dqAcc);
    }
    __syncthreads(); // every warp is done with k, v and the scratch
    if (more) {
      kStage.store(ks);
      vStage.store(vs);
    }
    __syncthreads();
  }
  if (role == 0) {
    const float rowSum = l + __shfl_xor_sync(0xffffffffu, l, 1);
    if (half == 0) {
      rowScale[pair][row] = Config::kScale / rowSum;
      if (i < Traits::kSeq) {
        lse[Traits::rowIndex(b, h, i)] = m + log2f(rowSum);
        delta[Traits::rowIndex(b, h, i)] = rowDelta;
      }
    }
  }
  __syncthreads();
  storeFragmentRows<Config, Config::kAccumulate, Traits::kQStride>(
      dqAcc, scratch, kLdS, rowScale[pair], dq + qBase, firstRow, role * kHalf0,
      role == 0 ? kHalf0 : kHalf1);
}

/// Backward phase 2 on tensor cores: a block of 16 keys a warp pair (2 x
/// kWarps warps). Of a pair, the first warp holds k's fragments and
/// accumulates dv, the second holds v's and accumulates dk, so that each
/// keeps one set of accumulators. Per tile of kQueryTile queries (every q
/// head of the group, from the diagonal on when causal): Sᵀ = k·qᵀ gives
/// P (fp32 for dS, bf16 for dv += P·dO), dPᵀ = v·dOᵀ gives dS = P (dP - D)
/// (bf16, dk += dS·q); dk = scale dk.
template <class Config>
__device__ void attentionBwdKeyValueTensorCore(
    const __nv_bfloat16 *dout, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
    const __nv_bfloat16 *v, __nv_bfloat16 *dk, __nv_bfloat16 *dv,
    const float *lse, const float *delta) {
  using Traits = AttentionTraits<Config>;
  using Tiles = TensorTiles<Config>;
  constexpr int kLd = Tiles::kLd, kDFragments = Tiles::kDFragments;
  constexpr int kPairs = Config::kWarps, kThreads = 2 * kPairs * kWarpSize;
  constexpr int kBlockKeys = 16 * kPairs;
  constexpr int kM = Config::kQueryTile, kLdS = kM + 4, kLdP = kM + 8;
  static_assert(kM % 16 == 0, "whole query fragments");
  constexpr int kTileElements = kM * kLd;
  constexpr int kTilesBytes = 2 * kTileElements * 2;
  constexpr int kScratchFloats = 16 * kLdS;
  constexpr int kLoopBytes = kTilesBytes + 2 * kPairs * kScratchFloats * 4;
  constexpr int kKvBytes = 2 * kBlockKeys * kLd * 2;
  __shared__ __align__(
      128) unsigned char shared[kLoopBytes > kKvBytes ? kLoopBytes : kKvBytes];
  __shared__ __align__(32) __nv_bfloat16 opTiles[2][kPairs][16 * kLdP];
  __shared__ float tileLse[kM], tileDelta[kM], rowScale[2][16];
  static_assert(sizeof(shared) + sizeof(opTiles) + sizeof(tileLse) +
                        sizeof(tileDelta) + sizeof(rowScale) <=
                    48 * 1024,
                "static shared memory");
  auto *qs = reinterpret_cast<__nv_bfloat16 *>(shared);
  __nv_bfloat16 *dos = qs + kTileElements;
  auto *scratchBase = reinterpret_cast<float *>(shared + kTilesBytes);

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int role = warp / kPairs, pair = warp % kPairs; // role 0: dv, 1: dk
  const int j0 = blockIdx.x * kBlockKeys, g = blockIdx.y, b = blockIdx.z;
  const Index kvBase = Traits::base(b, g, Config::kKvHeads);
  AttentionFragA own[kDFragments]; // the pair's k (role 0) or v (role 1)
  {
    RowStage<Config, kBlockKeys, Traits::kKvStride, kThreads> kStage, vStage;
    kStage.load(k + kvBase, j0);
    vStage.load(v + kvBase, j0);
    kStage.store(qs);
    vStage.store(qs + kBlockKeys * kLd);
  }
  if (threadIdx.x < 32)
    rowScale[threadIdx.x / 16][threadIdx.x % 16] =
        threadIdx.x < 16 ? 1.0f : Config::kScale;
  __syncthreads();
  const __nv_bfloat16 *ownRows = qs + (role * kBlockKeys + pair * 16) * kLd;
#pragma unroll
  for (int f = 0; f < kDFragments; ++f)
    wmma::load_matrix_sync(own[f], ownRows + f * 16, kLd);
  __syncthreads(); // k and v read: the arena holds q and dO tiles from here

  // Causal: queries before j0 see none of the block's keys.
  const int queryStart = Config::kCausal ? j0 / kM * kM : 0;
  const int tilesPerHead = (Traits::kSeq - queryStart + kM - 1) / kM;
  const int tiles = Traits::kGroup * tilesPerHead;
  auto headOf = [&](int t) { return g * Traits::kGroup + t / tilesPerHead; };
  auto startOf = [&](int t) { return queryStart + t % tilesPerHead * kM; };
  using QueryStage = RowStage<Config, kM, Traits::kQStride, kThreads>;
  QueryStage qStage, doStage;
  auto loadTile = [&](int t) {
    const Index qBase = Traits::base(b, headOf(t), Config::kHeads);
    qStage.load(q + qBase, startOf(t));
    doStage.load(dout + qBase, startOf(t));
  };
  auto storeTile = [&](int t) {
    qStage.store(qs);
    doStage.store(dos);
    if (threadIdx.x < kM) {
      const int i = startOf(t) + threadIdx.x;
      const bool valid = i < Traits::kSeq;
      const Index at = Traits::rowIndex(b, headOf(t), valid ? i : 0);
      tileLse[threadIdx.x] = valid ? lse[at] : 0.0f;
      tileDelta[threadIdx.x] = valid ? delta[at] : 0.0f;
    }
  };
  loadTile(0);
  storeTile(0);
  __syncthreads();

  AttentionAcc acc[kDFragments];
#pragma unroll
  for (int f = 0; f < kDFragments; ++f)
    wmma::fill_fragment(acc[f], 0.0f);
  float *scratch = scratchBase + (role * kPairs + pair) * kScratchFloats;
  const float *pScratch = scratchBase + pair * kScratchFloats;
  __nv_bfloat16 *opTile = opTiles[role][pair];
  const int row = lane / 2;
  const int key = j0 + pair * 16 + row;                 // the lane pair's key
  constexpr float kScaleLog2 = Config::kScale * kLog2e; // lse is base 2
#pragma unroll 1
  for (int t = 0; t < tiles; ++t) {
    const bool more = t + 1 < tiles; // the same in every thread
    const int i0 = startOf(t);
    if (more)
      loadTile(t + 1);
    const __nv_bfloat16 *qTile = unhoisted(qs), *doTile = unhoisted(dos);
    const __nv_bfloat16 *opTileHere = unhoisted(opTile);
    // Causal: a pair whose keys all follow the tile's queries skips it.
    const bool seen = !Config::kCausal || i0 + kM - 1 >= j0 + pair * 16;
    if (seen)
      productToScratch<kM>(own, role == 0 ? qTile : doTile, kLd, scratch, kLdS);
    if (seen && role == 0) {
      // P, in place as fp32 (for dS) and as bf16 (for dv).
      float p[kM / 2];
      forRowElements<kM>(scratch + row * kLdS, [&](int e, int c, float x) {
        const int i = i0 + c;
        p[e] = i < Traits::kSeq && Traits::visible(i, key)
                   ? exp2f(x * kScaleLog2 - tileLse[c])
                   : 0.0f;
      });
      const int half = lane % 2;
#pragma unroll
      for (int u = 0; u < kM / 8; ++u)
        *reinterpret_cast<float4 *>(scratch + row * kLdS + 8 * u + 4 * half) =
            float4{p[4 * u], p[4 * u + 1], p[4 * u + 2], p[4 * u + 3]};
      storeRowBf16<kM>(opTile + row * kLdP, p);
    }
    __syncthreads(); // P stored
    if (seen && role == 1) {
      float ds[kM / 2];
      forRowElements<kM>(pScratch + row * kLdS,
                         [&](int e, int, float x) { ds[e] = x; });
      forRowElements<kM>(scratch + row * kLdS, [&](int e, int c, float x) {
        ds[e] *= x - tileDelta[c];
      });
      storeRowBf16<kM>(opTile + row * kLdP, ds);
    }
    __syncwarp();
    if (seen)
      productAccumulate<kDFragments, kM / 16>(
          opTileHere, kLdP, role == 0 ? doTile : qTile, kLd, acc);
    __syncthreads(); // every warp is done with the q and dO tiles
    if (more)
      storeTile(t + 1);
    __syncthreads();
  }
  storeFragmentRows<Config, Config::kAccumulate, Traits::kKvStride>(
      acc, scratch, kLdS, rowScale[role], (role == 0 ? dv : dk) + kvBase,
      j0 + pair * 16);
}

} // namespace qlora::cuda

#endif // QLORACC_KERNELS_ATTENTIONTENSORCORE_CUH
