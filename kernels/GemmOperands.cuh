//===- GemmOperands.cuh - What Gemm.cuh's tiles are read from --*- CUDA -*-===//
//
// The policies gemm<> (Gemm.cuh) is built from, chosen at compile time:
//   - a Source reads kWidth consecutive stored elements as float: a dense
//     buffer of float, bf16 or f16, or an NF4 weight decoded exactly as
//     KernelAbi.h's [nf4] defines it (nf4Decode);
//   - a Mask scales elements by LoRA dropout's keep / (1 - p), indexed by
//     the element's offset in x[T,in] (the mask index is step·T·in + offset);
//   - an Operand places a Source in the GEMM: element (row, k) of A (row =
//     m) or B (row = n), stored k-contiguous ([rows, K]) or row-contiguous
//     ([K, rows]), zero outside the problem;
//   - a TileStage holds one thread's part of a [Rows, 32] operand tile in
//     registers (as bf16) between its global load and its shared store;
//   - an Epilogue writes C[M,N] row-major: alpha·acc, optionally times the
//     dropout mask, stored or added (accumulate) as T or float.
// Widths are chosen so that a vector never straddles the problem's edge:
// the contiguous extent is a multiple of the width.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_KERNELS_GEMMOPERANDS_CUH
#define QLORACC_KERNELS_GEMMOPERANDS_CUH

#include "kernels/Common.cuh"
#include "kernels/Nf4.cuh"

namespace qlora::cuda {

/// The largest power of two <= maxWidth dividing n.
__host__ __device__ constexpr int widthDividing(Index n, int maxWidth) {
  for (int width = maxWidth; width > 1; width /= 2)
    if (n % width == 0)
      return width;
  return 1;
}

/// Elements [i, i + Width) of `p` widened to float, in 16-byte accesses at
/// most (`i` is a multiple of Width; buffers are 16-byte aligned).
template <int Width, typename E>
__device__ __forceinline__ void loadVector(const E *p, Index i,
                                           float (&out)[Width]) {
  constexpr int kChunk =
      int(16 / sizeof(E)) < Width ? int(16 / sizeof(E)) : Width;
#pragma unroll
  for (int c = 0; c < Width; c += kChunk) {
    Pack<E, kChunk> pack =
        *reinterpret_cast<const Pack<E, kChunk> *>(p + i + c);
#pragma unroll
    for (int k = 0; k < kChunk; ++k)
      out[c + k] = toFloat(pack.v[k]);
  }
}

template <int Width, typename E>
__device__ __forceinline__ void storeVector(E *p, Index i,
                                            const float (&in)[Width]) {
  constexpr int kChunk =
      int(16 / sizeof(E)) < Width ? int(16 / sizeof(E)) : Width;
#pragma unroll
  for (int c = 0; c < Width; c += kChunk) {
    Pack<E, kChunk> pack;
#pragma unroll
    for (int k = 0; k < kChunk; ++k)
      pack.v[k] = fromFloat<E>(in[c + k]);
    *reinterpret_cast<Pack<E, kChunk> *>(p + i + c) = pack;
  }
}

//===- sources ------------------------------------------------------------===//

template <typename E> struct DenseSource {
  static constexpr bool kBf16 = IsBf16<E>::value; ///< stored as the tiles
  /// The elements per read along a contiguous extent: 16 bytes at most.
  __host__ __device__ static constexpr int width(Index extent) {
    return widthDividing(extent, int(16 / sizeof(E)));
  }
  const E *data;
  template <int Width>
  __device__ __forceinline__ void read(Index offset,
                                       float (&out)[Width]) const {
    loadVector<Width>(data, offset, out);
  }
};

/// An NF4 weight; `tables` in shared memory (loadNf4Tables).
template <class Config> struct Nf4Source {
  static constexpr bool kBf16 = false;
  /// nf4Decode reads 8, 2 or 1 codes, within one absmax block.
  __host__ __device__ static constexpr int width(Index extent) {
    return extent % 8 == 0 && Config::kBlockSize % 8 == 0   ? 8
           : extent % 2 == 0 && Config::kBlockSize % 2 == 0 ? 2
                                                            : 1;
  }
  const unsigned char *data;
  const Nf4Tables *tables;
  template <int Width>
  __device__ __forceinline__ void read(Index offset,
                                       float (&out)[Width]) const {
    static_assert(Width == 8 || Width == 2 || Width == 1, "nf4Decode widths");
    nf4Decode<Config, Width>(data, *tables, offset, out);
  }
};

//===- dropout ------------------------------------------------------------===//

/// splitmix64's finalizer (format/CounterRng.h's mix).
__device__ __forceinline__ unsigned long long splitMix64(unsigned long long z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

struct NoMask {
  static constexpr bool kActive = false;
  __device__ __forceinline__ float factor(Index) const { return 1.0f; }
};

/// LoRA dropout of one launch: element `offset` of x[T,in] is kept when
/// CounterRng(seed, stream).uniform(base + offset) >= p, i.e. when its 24
/// bits are >= kDropoutThreshold = ceil(p·2^24) (exact: uniform is bits ·
/// 2^-24). Config: kDropoutKey = mix(seed) ^ fnv1a(stream),
/// kDropoutThreshold, kDropoutScale = float(1 / (1 - p)).
template <class Config> struct DropoutMask {
  static constexpr bool kActive = true;
  unsigned long long base; ///< step · T · in

  __device__ __forceinline__ float factor(Index offset) const {
    const unsigned long long index = base + (unsigned long long)offset;
    const unsigned long long bits =
        splitMix64(Config::kDropoutKey + (index + 1) * 0x9E3779B97F4A7C15ull);
    return unsigned(bits >> 40) >= Config::kDropoutThreshold
               ? Config::kDropoutScale
               : 0.0f;
  }
};

/// The mask of this launch (`step` is the 1-based optimizer step).
template <class Config>
__device__ __forceinline__ DropoutMask<Config>
dropoutMask(const long long *step) {
  return {(unsigned long long)(*step) *
          (unsigned long long)(Config::kRows * Config::kIn)};
}

//===- operands -----------------------------------------------------------===//

/// Which index of an operand is contiguous in memory.
enum class Major { kK, kRow };

/// Element (row, k) of a GEMM operand with kRows rows and kK columns,
/// stored [kRows, kK] (Major::kK) or [kK, kRows] (Major::kRow), read
/// kWidth elements at a time along the contiguous index.
template <class Source, class Mask, Major kMajor_, Index kRows_, Index kK_>
struct Operand {
  static constexpr Major kMajor = kMajor_;
  static constexpr Index kRows = kRows_, kK = kK_;
  static constexpr int kWidth = Source::width(kMajor == Major::kK ? kK : kRows);
  /// Tiles of it can be copied to shared memory as stored.
  static constexpr bool kCopyable = Source::kBf16 && !Mask::kActive;
  Source source;
  Mask mask;

  static __device__ __forceinline__ Index offset(Index row, Index k) {
    return kMajor == Major::kK ? row * kK + k : k * kRows + row;
  }

  /// Where elements (row, k), ... are stored (kCopyable), or null outside
  /// the problem.
  __device__ __forceinline__ const void *address(Index row, Index k) const {
    return row >= kRows || k >= kK ? nullptr : source.data + offset(row, k);
  }

  /// Elements (row, k), ... (row, k + kWidth - 1) (Major::kK) or (row, k),
  /// ... (row + kWidth - 1, k) (Major::kRow); zeros outside the problem.
  /// The contiguous index is a multiple of kWidth.
  __device__ __forceinline__ void read(Index row, Index k,
                                       float (&out)[kWidth]) const {
    if (row >= kRows || k >= kK) {
#pragma unroll
      for (int j = 0; j < kWidth; ++j)
        out[j] = 0.0f;
      return;
    }
    const Index first = offset(row, k);
    source.template read<kWidth>(first, out);
    if constexpr (Mask::kActive) {
#pragma unroll
      for (int j = 0; j < kWidth; ++j)
        out[j] *= mask.factor(first + j);
    }
  }
};

/// One thread's part of a [Rows, TileK] tile of operand Op: loaded from
/// global memory into registers (as bf16), then stored into a shared tile,
/// or, for an operand stored as bf16 and unmasked, copied there directly
/// (copyAsync: no registers held, landed by waitCopies); the tile is kept
/// in the operand's memory order, [Rows][kLd] (k contiguous) or
/// [TileK][kLd] (rows contiguous), so that each vector is one store (a
/// transposing store of 8 rows at one k hit one bank from 16 lanes).
template <class Op, int Rows, int TileK, int Threads> struct TileStage {
  static constexpr int kWidth = Op::kWidth;
  static constexpr bool kAlongK = Op::kMajor == Major::kK;
  /// The shared tile's stride in elements: 16-byte aligned rows whose
  /// 16-byte pieces fall in distinct banks over 8 rows (an odd count of
  /// them a row), and 16-row fragments 32-byte aligned, as WMMA needs.
  static constexpr int kLd = (kAlongK ? TileK : Rows) + 8;
  static constexpr int kElements = (kAlongK ? Rows : TileK) * kLd;
  static_assert(kLd % 16 == 8 && (kElements * 2) % 32 == 0,
                "odd 16-byte pieces a row; 32-byte aligned tiles");

  /// Where element (row, k) of the tile is.
  static __device__ __forceinline__ int offset(int row, int k) {
    return kAlongK ? row * kLd + k : k * kLd + row;
  }
  static_assert((kAlongK ? TileK : Rows) % kWidth == 0,
                "a vector must not straddle the tile");
  static constexpr int kVectors = Rows * TileK / kWidth;
  static constexpr int kSteps = (kVectors + Threads - 1) / Threads;
  static constexpr bool kAsync = Op::kCopyable && kWidth >= 2;

  /// Pairs packed in one register each.
  static constexpr int kWords = kWidth == 1 ? 1 : kWidth / 2;
  using Word = __nv_bfloat162;
  Pack<Word, kWords> values[kSteps];

  /// Tile coordinates (row, k) of vector v.
  static __device__ __forceinline__ void position(int v, int &row, int &k) {
    if constexpr (kAlongK) {
      row = v / (TileK / kWidth);
      k = (v % (TileK / kWidth)) * kWidth;
    } else {
      k = v / (Rows / kWidth);
      row = (v % (Rows / kWidth)) * kWidth;
    }
  }

  /// fn(s, row, k) for this thread's vectors.
  template <class Fn> static __device__ __forceinline__ void forEach(Fn fn) {
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      const int v = s * Threads + int(threadIdx.x);
      if (kVectors % Threads != 0 && v >= kVectors)
        break;
      int row, k;
      position(v, row, k);
      fn(s, row, k);
    }
  }

  /// Starts bringing in the tile at (row0, k0), bound for `tile`.
  __device__ __forceinline__ void load(const Op &op, Index row0, Index k0,
                                       __nv_bfloat16 *tile) {
    if constexpr (kAsync) {
      forEach([&](int, int row, int k) {
        const void *src = op.address(row0 + row, k0 + k);
        copyAsync<kWidth * 2>(tile + offset(row, k), src ? src : op.source.data,
                              src != nullptr);
      });
      return;
    }
    forEach([&](int s, int row, int k) {
      float out[kWidth];
      op.read(row0 + row, k0 + k, out);
      if constexpr (kWidth == 1) {
        values[s].v[0] = __floats2bfloat162_rn(out[0], 0.0f);
      } else {
#pragma unroll
        for (int j = 0; j < kWords; ++j)
          values[s].v[j] = __floats2bfloat162_rn(out[2 * j], out[2 * j + 1]);
      }
    });
  }

  /// Stores what load left in registers (copies land by waitCopies).
  __device__ __forceinline__ void store(__nv_bfloat16 *tile) const {
    if constexpr (kAsync)
      return;
    forEach([&](int s, int row, int k) {
      if constexpr (kWidth == 1)
        tile[offset(row, k)] = values[s].v[0].x;
      else // kWidth elements along the contiguous index
        *reinterpret_cast<Pack<Word, kWords> *>(tile + offset(row, k)) =
            values[s];
    });
  }
};

//===- epilogue -----------------------------------------------------------===//

/// C[kM, kN] row-major of type E: C = alpha·acc·mask, or C += that.
template <typename E, class Mask, bool kAccumulate, Index kM_, Index kN_>
struct Epilogue {
  static constexpr Index kM = kM_, kN = kN_;
  /// Elements per store; a lane owns 8 consecutive columns of a fragment.
  static constexpr int kWidth = widthDividing(kN, 8);
  E *c;
  float alpha;
  Mask mask;

  /// Writes C[m, n .. n + kWidth) from `acc` (shared memory); (m, n) is
  /// inside C.
  __device__ __forceinline__ void store(Index m, Index n,
                                        const float *acc) const {
    const Index offset = m * kN + n;
    float out[kWidth];
#pragma unroll
    for (int j = 0; j < kWidth; ++j) {
      out[j] = alpha * acc[j];
      if constexpr (Mask::kActive)
        out[j] *= mask.factor(offset + j);
    }
    if constexpr (kAccumulate) {
      float old[kWidth];
      loadVector<kWidth>(c, offset, old);
#pragma unroll
      for (int j = 0; j < kWidth; ++j)
        out[j] = old[j] + out[j];
    }
    storeVector<kWidth>(c, offset, out);
  }
};

} // namespace qlora::cuda

#endif // QLORACC_KERNELS_GEMMOPERANDS_CUH
