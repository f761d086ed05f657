//===- Gemm.cuh - linear_fwd, linear_grad_input, lora_grad -----*- CUDA -*-===//
//
// One tiled tensor-core GEMM, C[M,N] (+)= alpha · sum_k A(m,k) · B(k,n),
// and the phases of the three LoRA linear kernels built from it. A block
// computes a [kTileM, kTileN] tile of C with kWarpsM x kWarpsN warps; each warp
// owns a [kWarpM, kWarpN] sub-tile of 16x16 WMMA fragments (bf16 inputs, fp32
// accumulators). The K loop steps kTileK (32) at a time: while the tensor
// cores work on the current operand tiles in shared memory, the next step's
// come into the other of two shared stages, bf16 ones by cp.async and the
// rest through registers (GemmOperands.cuh: converted to bf16, NF4 decoded,
// dropout applied, zero outside the problem), landed before the step's one
// barrier. The epilogue goes through a per-warp 16x16 fp32 scratch
// (aliasing the operand tiles) and writes only elements inside C.
//
// A launch runs one or more independent GEMMs side by side (gemmGroup): the
// first GEMM's tiles and, in extra columns of the grid, the others'. The
// rank-sized LoRA GEMMs have too few tiles to fill a GPU alone (N = r:
// 16-64 blocks at 7B); beside the frozen-weight GEMM they run among its
// blocks instead of in a launch of their own. Operand tiles sit in shared
// memory in their memory order (GemmOperands.cuh's TileStage), read with
// the matching WMMA layout.
//
// Launches (KernelAbi.h; the builder launches them in order on one stream,
// the GEMMs of one launch separated by a comma):
//   linear_fwd         y = x·Wᵀ, t_ws = xd·Aᵀ ; y += s·(t_ws·Bᵀ)
//   linear_grad_input  dx (+)= dy·W, dt_ws = dy·B ; dx += m ⊙ (s·(dt_ws·A))
//   lora_grad          da (+)= s·(dt_wsᵀ·xd), db (+)= s·(dyᵀ·t_ws)
// As on the CPU, each GEMM result is rounded to fp32 before it is scaled
// or added; a T output is rounded to T after each phase.
// Config: T, W (unsigned char for NF4), kNf4 (+ nf4WeightConfig's lines),
// kRows, kIn, kOut, kRank, kScaling, kAccumulate, kDropoutKey,
// kDropoutThreshold, kDropoutScale.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_KERNELS_GEMM_CUH
#define QLORACC_KERNELS_GEMM_CUH

#include "kernels/Common.cuh"
#include "kernels/GemmOperands.cuh"

#include <mma.h>

namespace qlora::cuda {

/// The block's tile of C and its warps.
template <int TileM, int TileN, int WarpsM, int WarpsN, int TileK = 32>
struct GemmTiles {
  static constexpr int kTileM = TileM, kTileN = TileN, kTileK = TileK;
  static constexpr int kWarpsM = WarpsM, kWarpsN = WarpsN;
  static constexpr int kWarps = WarpsM * WarpsN;
  static constexpr int kThreads = kWarps * kWarpSize;
  static constexpr int kWarpM = TileM / WarpsM, kWarpN = TileN / WarpsN;
  static constexpr int kFragmentsM = kWarpM / 16, kFragmentsN = kWarpN / 16;
  static_assert(TileM % (16 * WarpsM) == 0 && TileN % (16 * WarpsN) == 0,
                "a warp owns whole 16x16 fragments");
};

/// Shared memory of gemm<Tiles>: two stages of the A and B tiles (the next
/// step's are stored while the current ones may still be read), reused by
/// the epilogue's per-warp scratch. A k-contiguous tile is the larger
/// layout (TileStage::kElements) for tiles of 32 rows or more.
template <class Tiles> __host__ __device__ constexpr int gemmSharedBytes() {
  constexpr int kTileBytes =
      2 * (Tiles::kTileM + Tiles::kTileN) * (Tiles::kTileK + 8) * 2;
  constexpr int kScratchBytes = Tiles::kWarps * 16 * 16 * 4;
  return kTileBytes > kScratchBytes ? kTileBytes : kScratchBytes;
}

/// The block's tile of C (its first row and column) and its shared memory
/// (gemmSharedBytes<Tiles>() bytes, 128-byte aligned): given by the caller,
/// so that the GEMMs of one launch share one buffer.
struct GemmBlock {
  Index m0, n0;
  unsigned char *shared;
};

/// C (+)= alpha · A·B over the block's tile of C; every thread of the
/// Tiles::kThreads-thread block calls it.
template <class Tiles, class OpA, class OpB, class Epi>
__device__ void gemm(const GemmBlock &block, const OpA &a, const OpB &b,
                     const Epi &epi) {
  namespace wmma = nvcuda::wmma;
  constexpr Index kM = Epi::kM, kN = Epi::kN, kK = OpA::kK;
  static_assert(OpA::kRows == kM && OpB::kRows == kN && OpB::kK == kK,
                "operand shapes must match C");
  constexpr int kTileM = Tiles::kTileM, kTileN = Tiles::kTileN;
  constexpr int kTileK = Tiles::kTileK;
  using StageA = TileStage<OpA, kTileM, kTileK, Tiles::kThreads>;
  using StageB = TileStage<OpB, kTileN, kTileK, Tiles::kThreads>;
  constexpr int kStageElements = StageA::kElements + StageB::kElements;
  static_assert(2 * kStageElements * 2 <= gemmSharedBytes<Tiles>(),
                "the stages fit the shared memory");
  // A tile holds its operand in memory order: A(m, k) is row-major for a
  // k-contiguous A, column-major for an m-contiguous one; B(k, n) likewise.
  using LayoutA =
      typename Select<StageA::kAlongK, wmma::row_major, wmma::col_major>::Type;
  using LayoutB =
      typename Select<StageB::kAlongK, wmma::col_major, wmma::row_major>::Type;
  unsigned char *const shared = block.shared;
  __nv_bfloat16 *const tiles = reinterpret_cast<__nv_bfloat16 *>(shared);

  const Index m0 = block.m0, n0 = block.n0;
  const int warp = int(threadIdx.x) / kWarpSize;
  const int lane = int(threadIdx.x) % kWarpSize;
  const int warpRow = (warp / Tiles::kWarpsN) * Tiles::kWarpM;
  const int warpCol = (warp % Tiles::kWarpsN) * Tiles::kWarpN;

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[Tiles::kFragmentsM]
                                                          [Tiles::kFragmentsN];
#pragma unroll
  for (int i = 0; i < Tiles::kFragmentsM; ++i)
#pragma unroll
    for (int j = 0; j < Tiles::kFragmentsN; ++j)
      wmma::fill_fragment(acc[i][j], 0.0f);

  StageA stageA;
  StageB stageB;
  constexpr Index kSteps = (kK + kTileK - 1) / kTileK;
  stageA.load(a, m0, 0, tiles);
  stageB.load(b, n0, 0, tiles + StageA::kElements);
  stageA.store(tiles);
  stageB.store(tiles + StageA::kElements);
  waitCopies();
  __syncthreads();
#pragma unroll 1
  for (Index step = 0; step < kSteps; ++step) {
    const bool more = step + 1 < kSteps; // the same in every thread
    // The other stage was last read in the previous step, before its
    // barrier: copies may land there while this one is read.
    __nv_bfloat16 *next = tiles + ((step + 1) % 2) * kStageElements;
    if (more) {
      stageA.load(a, m0, (step + 1) * kTileK, next);
      stageB.load(b, n0, (step + 1) * kTileK, next + StageA::kElements);
    }
    const __nv_bfloat16 *tileA = unhoisted(tiles + (step % 2) * kStageElements);
    const __nv_bfloat16 *tileB = tileA + StageA::kElements;
#pragma unroll
    for (int kk = 0; kk < kTileK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, LayoutA>
          fa[Tiles::kFragmentsM];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, LayoutB>
          fb[Tiles::kFragmentsN];
#pragma unroll
      for (int i = 0; i < Tiles::kFragmentsM; ++i)
        wmma::load_matrix_sync(
            fa[i], tileA + StageA::offset(warpRow + i * 16, kk), StageA::kLd);
#pragma unroll
      for (int j = 0; j < Tiles::kFragmentsN; ++j)
        wmma::load_matrix_sync(
            fb[j], tileB + StageB::offset(warpCol + j * 16, kk), StageB::kLd);
#pragma unroll
      for (int i = 0; i < Tiles::kFragmentsM; ++i)
#pragma unroll
        for (int j = 0; j < Tiles::kFragmentsN; ++j)
          wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    if (more) {
      stageA.store(next);
      stageB.store(next + StageA::kElements);
    }
    waitCopies();
    __syncthreads(); // the next stage is stored, this one is free
  }

  // The tiles are free (the loop ended on a barrier): each warp's scratch.
  float *scratch = reinterpret_cast<float *>(shared) + warp * 16 * 16;
  const int row = lane / 2, column = (lane % 2) * 8; // 8 columns a lane
#pragma unroll
  for (int i = 0; i < Tiles::kFragmentsM; ++i)
#pragma unroll
    for (int j = 0; j < Tiles::kFragmentsN; ++j) {
      wmma::store_matrix_sync(scratch, acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();
      const Index m = m0 + warpRow + i * 16 + row;
#pragma unroll
      for (int c = 0; c < 8; c += Epi::kWidth) {
        const Index n = n0 + warpCol + j * 16 + column + c;
        if (m < kM && n < kN) // kWidth divides kN: the vector is inside
          epi.store(m, n, scratch + row * 16 + column + c);
      }
      __syncwarp(); // before the next fragment overwrites the scratch
    }
}

//===- launches of several GEMMs ------------------------------------------===//

/// One GEMM of a launch: C[M, N] in Tiles' tiles, one block each; `run`
/// computes the tile of a GemmBlock.
template <class Tiles, Index M, Index N, class Run> struct GemmPart {
  using TilesType = Tiles;
  static constexpr Index kTilesM = (M + Tiles::kTileM - 1) / Tiles::kTileM;
  static constexpr Index kTilesN = (N + Tiles::kTileN - 1) / Tiles::kTileN;
  static constexpr Index kBlocks = kTilesM * kTilesN;
  Run run;

  /// Runs tile (blockIdx.y, blockIdx.x): the tile's origin stays a special
  /// register that the compiler re-reads where needed instead of holding it
  /// (a quotient held through the K loop cost 128 -> 166 registers).
  __device__ __forceinline__ void runGridBlock(unsigned char *shared) const {
    run(GemmBlock{Index(blockIdx.y) * Tiles::kTileM,
                  Index(blockIdx.x) * Tiles::kTileN, shared});
  }

  /// Runs block `b` of this GEMM if b < kBlocks; else takes kBlocks off b.
  __device__ __forceinline__ bool runBlock(Index &b,
                                           unsigned char *shared) const {
    if (b >= kBlocks) {
      b -= kBlocks;
      return false;
    }
    run(GemmBlock{(b / kTilesN) * Tiles::kTileM, (b % kTilesN) * Tiles::kTileN,
                  shared});
    return true;
  }
};

template <class Tiles, Index M, Index N, class Run>
__device__ __forceinline__ GemmPart<Tiles, M, N, Run> gemmPart(Run run) {
  return {run};
}

template <class Part, class... Parts>
__host__ __device__ constexpr int groupSharedBytes() {
  constexpr int kBytes = gemmSharedBytes<typename Part::TilesType>();
  if constexpr (sizeof...(Parts) == 0)
    return kBytes;
  else
    return kBytes > groupSharedBytes<Parts...>() ? kBytes
                                                 : groupSharedBytes<Parts...>();
}

template <class Part, class... Parts>
__host__ __device__ constexpr bool sameThreads() {
  return ((Parts::TilesType::kThreads == Part::TilesType::kThreads) && ...);
}

/// Independent GEMMs in one launch. The grid is the first GEMM's tiles
/// (x: N tiles, y: M tiles) and, past them in x, as many columns of
/// gridDim.y blocks as the others need: their blocks are numbered down
/// each column and dealt in order (Rest[0] the first Rest[0]::kBlocks, and
/// so on; blocks past the last do nothing). The branch is the same in every
/// thread of a block, so a GEMM's barriers stay uniform.
template <class First, class... Rest>
__device__ void gemmGroup(const First &first, const Rest &...rest) {
  static_assert(sameThreads<First, Rest...>(), "one block size a launch");
  __shared__ __align__(
      128) unsigned char shared[groupSharedBytes<First, Rest...>()];
  if (blockIdx.x < First::kTilesN)
    return first.runGridBlock(shared);
  if constexpr (sizeof...(Rest) > 0) {
    Index b = Index(blockIdx.x - First::kTilesN) * First::kTilesM + blockIdx.y;
    (rest.runBlock(b, shared) || ...);
  }
}

//===- the frozen weight --------------------------------------------------===//

/// W[out, in] as an operand with kRows rows and kK columns: [N = out,
/// K = in] for x·Wᵀ (Major::kK) and [K = out, N = in] for dy·W
/// (Major::kRow).
template <class Config, Major kMajor, Index kRows, Index kK,
          bool kNf4 = Config::kNf4>
struct WeightOperand {
  using Type =
      Operand<DenseSource<typename Config::W>, NoMask, kMajor, kRows, kK>;
  static __device__ __forceinline__ Type make(const typename Config::W *w,
                                              int) {
    return {{w}, {}};
  }
};

/// An NF4 W has its tables in shared memory first (every thread of the
/// block calls make).
template <class Config, Major kMajor, Index kRows, Index kK>
struct WeightOperand<Config, kMajor, kRows, kK, true> {
  using Type = Operand<Nf4Source<Config>, NoMask, kMajor, kRows, kK>;
  template <int Threads>
  static __device__ __forceinline__ Type make(const unsigned char *w) {
    __shared__ Nf4Tables tables;
    loadNf4Tables<Threads>(tables, Config::kDqBlockSize != 0);
    return {{w, &tables}, {}};
  }
};

/// The weight operand of a Tiles::kThreads-thread block.
template <class Config, class Tiles, Major kMajor, Index kRows, Index kK>
__device__ __forceinline__
    typename WeightOperand<Config, kMajor, kRows, kK>::Type
    weightOperand(const typename Config::W *w) {
  using Weight = WeightOperand<Config, kMajor, kRows, kK>;
  if constexpr (Config::kNf4)
    return Weight::template make<Tiles::kThreads>(w);
  else
    return Weight::make(w, 0);
}

template <class Config, Major kMajor, Index kRows, Index kK>
using ActivationOperand =
    Operand<DenseSource<typename Config::T>, NoMask, kMajor, kRows, kK>;
template <class Config, Major kMajor, Index kRows, Index kK>
using LoraOperand = Operand<DenseSource<float>, NoMask, kMajor, kRows, kK>;

//===- linear_fwd ---------------------------------------------------------===//

/// y = x·Wᵀ: M = T, N = out, K = in.
template <class Config, class Tiles>
__device__ void
linearFwdBase(const GemmBlock &block, const typename Config::T *x,
              const typename Config::W *w, typename Config::T *y) {
  constexpr Index kRows = Config::kRows, kIn = Config::kIn, kOut = Config::kOut;
  gemm<Tiles>(
      block, ActivationOperand<Config, Major::kK, kRows, kIn>{{x}, {}},
      weightOperand<Config, Tiles, Major::kK, kOut, kIn>(w),
      Epilogue<typename Config::T, NoMask, false, kRows, kOut>{y, 1.0f, {}});
}

/// t_ws = xd·Aᵀ: M = T, N = r, K = in; A(m = t, k = i) = xd[t, i],
/// B(k = i, n = j) = a[j, i].
template <class Config, class Tiles>
__device__ void linearFwdLoraDown(const GemmBlock &block,
                                  const typename Config::T *x, const float *a,
                                  typename Config::T *t,
                                  const long long *step) {
  constexpr Index kRows = Config::kRows, kIn = Config::kIn,
                  kRank = Config::kRank;
  using Out = Epilogue<typename Config::T, NoMask, false, kRows, kRank>;
  using LoraA = LoraOperand<Config, Major::kK, kRank, kIn>;
  if constexpr (Config::kDropout) {
    using X = Operand<DenseSource<typename Config::T>, DropoutMask<Config>,
                      Major::kK, kRows, kIn>;
    gemm<Tiles>(block, X{{x}, dropoutMask<Config>(step)}, LoraA{{a}, {}},
                Out{t, 1.0f, {}});
  } else {
    gemm<Tiles>(block,
                ActivationOperand<Config, Major::kK, kRows, kIn>{{x}, {}},
                LoraA{{a}, {}}, Out{t, 1.0f, {}});
  }
}

/// y += s·(t_ws·Bᵀ): M = T, N = out, K = r; B(k = j, n = o) = b[o, j].
template <class Config, class Tiles>
__device__ void linearFwdLoraUp(const GemmBlock &block,
                                const typename Config::T *t, const float *b,
                                typename Config::T *y) {
  constexpr Index kRows = Config::kRows, kOut = Config::kOut,
                  kRank = Config::kRank;
  gemm<Tiles>(block,
              ActivationOperand<Config, Major::kK, kRows, kRank>{{t}, {}},
              LoraOperand<Config, Major::kK, kOut, kRank>{{b}, {}},
              Epilogue<typename Config::T, NoMask, true, kRows, kOut>{
                  y, Config::kScaling, {}});
}

//===- linear_grad_input --------------------------------------------------===//

/// dx (+)= dy·W: M = T, N = in, K = out; B(k = o, n = i) = W[o, i].
template <class Config, class Tiles>
__device__ void
linearGradInputBase(const GemmBlock &block, const typename Config::T *dy,
                    const typename Config::W *w, typename Config::T *dx) {
  constexpr Index kRows = Config::kRows, kIn = Config::kIn, kOut = Config::kOut;
  gemm<Tiles>(
      block, ActivationOperand<Config, Major::kK, kRows, kOut>{{dy}, {}},
      weightOperand<Config, Tiles, Major::kRow, kIn, kOut>(w),
      Epilogue<typename Config::T, NoMask, Config::kAccumulate, kRows, kIn>{
          dx, 1.0f, {}});
}

/// dt_ws = dy·B: M = T, N = r, K = out; B(k = o, n = j) = b[o, j].
template <class Config, class Tiles>
__device__ void
linearGradInputLoraDown(const GemmBlock &block, const typename Config::T *dy,
                        const float *b, typename Config::T *dt) {
  constexpr Index kRows = Config::kRows, kOut = Config::kOut,
                  kRank = Config::kRank;
  gemm<Tiles>(
      block, ActivationOperand<Config, Major::kK, kRows, kOut>{{dy}, {}},
      LoraOperand<Config, Major::kRow, kRank, kOut>{{b}, {}},
      Epilogue<typename Config::T, NoMask, false, kRows, kRank>{dt, 1.0f, {}});
}

/// dx += m ⊙ (s·(dt_ws·A)): M = T, N = in, K = r; B(k = j, n = i) = a[j, i].
/// dx already holds this launch's dy·W.
template <class Config, class Tiles>
__device__ void linearGradInputLoraUp(const GemmBlock &block,
                                      const typename Config::T *dt,
                                      const float *a, typename Config::T *dx,
                                      const long long *step) {
  constexpr Index kRows = Config::kRows, kIn = Config::kIn,
                  kRank = Config::kRank;
  using Dt = ActivationOperand<Config, Major::kK, kRows, kRank>;
  using LoraA = LoraOperand<Config, Major::kRow, kIn, kRank>;
  if constexpr (Config::kDropout) {
    gemm<Tiles>(
        block, Dt{{dt}, {}}, LoraA{{a}, {}},
        Epilogue<typename Config::T, DropoutMask<Config>, true, kRows, kIn>{
            dx, Config::kScaling, dropoutMask<Config>(step)});
  } else {
    gemm<Tiles>(block, Dt{{dt}, {}}, LoraA{{a}, {}},
                Epilogue<typename Config::T, NoMask, true, kRows, kIn>{
                    dx, Config::kScaling, {}});
  }
}

//===- lora_grad ----------------------------------------------------------===//

/// da (+)= s·(dt_wsᵀ·xd): M = r, N = in, K = T; A(m = j, k = t) =
/// dt[t, j], B(k = t, n = i) = xd[t, i].
template <class Config, class Tiles>
__device__ void loraGradA(const GemmBlock &block, const typename Config::T *dt,
                          const typename Config::T *x, float *da,
                          const long long *step) {
  constexpr Index kRows = Config::kRows, kIn = Config::kIn,
                  kRank = Config::kRank;
  using Dt = ActivationOperand<Config, Major::kRow, kRank, kRows>;
  using Out = Epilogue<float, NoMask, Config::kAccumulate, kRank, kIn>;
  if constexpr (Config::kDropout) {
    using X = Operand<DenseSource<typename Config::T>, DropoutMask<Config>,
                      Major::kRow, kIn, kRows>;
    gemm<Tiles>(block, Dt{{dt}, {}}, X{{x}, dropoutMask<Config>(step)},
                Out{da, Config::kScaling, {}});
  } else {
    gemm<Tiles>(block, Dt{{dt}, {}},
                ActivationOperand<Config, Major::kRow, kIn, kRows>{{x}, {}},
                Out{da, Config::kScaling, {}});
  }
}

/// db (+)= s·(dyᵀ·t_ws): M = out, N = r, K = T; A(m = o, k = t) =
/// dy[t, o], B(k = t, n = j) = t_ws[t, j].
template <class Config, class Tiles>
__device__ void loraGradB(const GemmBlock &block, const typename Config::T *dy,
                          const typename Config::T *t, float *db) {
  constexpr Index kRows = Config::kRows, kOut = Config::kOut,
                  kRank = Config::kRank;
  gemm<Tiles>(block,
              ActivationOperand<Config, Major::kRow, kOut, kRows>{{dy}, {}},
              ActivationOperand<Config, Major::kRow, kRank, kRows>{{t}, {}},
              Epilogue<float, NoMask, Config::kAccumulate, kOut, kRank>{
                  db, Config::kScaling, {}});
}

} // namespace qlora::cuda

#endif // QLORACC_KERNELS_GEMM_CUH
