//===- Nf4QuantizerKernels.cpp - Block kernels of the NF4 quantizer -------===//
//
// Compiled with -ffp-contract=off, like Nf4.cpp: the scaling is one fp32
// multiply (or divide) per element, never fused.
//
// The bucketize is a branch-free binary search over the 15 sorted midpoints
// (8, 4, 2, 1): it counts the midpoints strictly below the value, exactly
// what Nf4.cpp's lower_bound counts. The second level has two candidates,
// picked by a blend; the later ones come from a permute of a midpoint table
// (the AVX2 kernel keeps j = index / 2, so that 8 lanes hold each table).
// The shuffle unit is what limits these loops.
//
//===----------------------------------------------------------------------===//
#include "runtime/format/Nf4QuantizerKernels.h"
#include "runtime/backends/cpu/Float16.h"
#include "runtime/format/Nf4.h"

#include <algorithm>
#include <bit>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define QLORA_NF4_X86 1
#include <immintrin.h>
#endif

namespace qlora::format::detail {

const std::array<float, 15> &nf4Midpoints() {
  static const std::array<float, 15> midpoints = [] {
    std::array<float, 15> m{};
    for (size_t i = 0; i < m.size(); ++i)
      m[i] = (kNf4Code[i] + kNf4Code[i + 1]) / 2.0f;
    return m;
  }();
  return midpoints;
}

namespace {

/// Number of midpoints strictly below `s` (torch.bucketize, right=False).
inline uint8_t bucketizeScalar(float s, const std::array<float, 15> &mid) {
  unsigned idx = mid[7] < s ? 8u : 0u;
  idx += mid[idx + 3] < s ? 4u : 0u;
  idx += mid[idx + 1] < s ? 2u : 0u;
  idx += mid[idx] < s ? 1u : 0u;
  return static_cast<uint8_t>(idx);
}

/// The largest block (Nf4QuantizeOptions::blocksize <= 4096).
constexpr int64_t kMaxBlock = 4096;

template <DType D>
int64_t portableBlocks(const void *data, int64_t blocksize, int64_t firstBlock,
                       int64_t endBlock, uint8_t *packed, float *absmax) {
  for (int64_t b = firstBlock; b < endBlock; ++b)
    if (!quantizeNf4BlockPortable(data, D, b * blocksize, blocksize,
                                  /*partial=*/false, packed, absmax[b]))
      return b;
  return endBlock;
}

#ifdef QLORA_NF4_X86

#define QLORA_AVX2 __attribute__((target("avx2,f16c")))
#define QLORA_AVX2_INLINE                                                      \
  __attribute__((target("avx2,f16c"), always_inline)) inline

/// Eight elements from element `i` on, widened to fp32 exactly.
template <DType D> QLORA_AVX2_INLINE __m256 load8(const void *data, int64_t i) {
  if constexpr (D == DType::F32) {
    return _mm256_loadu_ps(static_cast<const float *>(data) + i);
  } else {
    __m128i half = _mm_loadu_si128(reinterpret_cast<const __m128i *>(
        static_cast<const uint16_t *>(data) + i));
    if constexpr (D == DType::BF16)
      return _mm256_castsi256_ps(
          _mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16));
    else
      return _mm256_cvtph_ps(half);
  }
}

/// The midpoints each level of the search compares with: one, two (picked
/// by the first comparison), then tables indexed by j.
struct SearchTables {
  __m256 level1, level2Low, level2High, level3, level4;
};

/// All ones in the lanes where mid < v.
QLORA_AVX2_INLINE __m256i below(__m256 mid, __m256 v) {
  return _mm256_castps_si256(_mm256_cmp_ps(mid, v, _CMP_LT_OQ));
}

/// 4-bit codes (one per 32-bit lane) of eight scaled values.
QLORA_AVX2_INLINE __m256i bucketize8(__m256 s, const SearchTables &t) {
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i k1 = below(t.level1, s);
  __m256i j = _mm256_and_si256(k1, _mm256_set1_epi32(4));
  // Two candidates at the second level: a blend, not a permute.
  __m256 m =
      _mm256_blendv_ps(t.level2Low, t.level2High, _mm256_castsi256_ps(k1));
  j = _mm256_add_epi32(j, _mm256_and_si256(below(m, s), _mm256_set1_epi32(2)));
  m = _mm256_permutevar8x32_ps(t.level3, j);
  j = _mm256_add_epi32(j, _mm256_and_si256(below(m, s), one));
  m = _mm256_permutevar8x32_ps(t.level4, j);
  // index = 2j, plus one where the last midpoint is below (mask = -1).
  return _mm256_sub_epi32(_mm256_add_epi32(j, j), below(m, s));
}

/// Packs 32 codes (four vectors of eight, in element order) into 16 bytes,
/// the even element in the high nibble.
QLORA_AVX2_INLINE void pack32(__m256i c0, __m256i c1, __m256i c2, __m256i c3,
                              uint8_t *out) {
  __m256i bytes = _mm256_packus_epi16(_mm256_packus_epi32(c0, c1),
                                      _mm256_packus_epi32(c2, c3));
  // packus works per 128-bit lane: dwords come out as c0lo c1lo c2lo c3lo
  // c0hi c1hi c2hi c3hi.
  bytes = _mm256_permutevar8x32_epi32(
      bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  __m256i pairs = _mm256_maddubs_epi16(bytes, _mm256_set1_epi16(0x0110));
  __m256i packed = _mm256_packus_epi16(pairs, pairs);
  packed = _mm256_permute4x64_epi64(packed, 0x08);
  _mm_storeu_si128(reinterpret_cast<__m128i *>(out),
                   _mm256_castsi256_si128(packed));
}

template <DType D>
QLORA_AVX2 int64_t avx2Blocks(const void *data, int64_t blocksize,
                              int64_t firstBlock, int64_t endBlock,
                              uint8_t *packed, float *absmax) {
  const std::array<float, 15> &mid = nf4Midpoints();
  SearchTables t;
  t.level1 = _mm256_set1_ps(mid[7]);
  t.level2Low = _mm256_set1_ps(mid[3]);
  t.level2High = _mm256_set1_ps(mid[11]);
  t.level3 = _mm256_setr_ps(mid[1], 0, mid[5], 0, mid[9], 0, mid[13], 0);
  t.level4 = _mm256_setr_ps(mid[0], mid[2], mid[4], mid[6], mid[8], mid[10],
                            mid[12], mid[14]);
  const __m256i absMask = _mm256_set1_epi32(0x7fffffff);
  for (int64_t b = firstBlock; b < endBlock; ++b) {
    const int64_t first = b * blocksize;
    const int64_t end = first + blocksize;
    // |x| as integers orders like floats and puts Inf and NaN on top.
    __m256i max0 = _mm256_setzero_si256(), max1 = _mm256_setzero_si256();
    for (int64_t i = first; i < end; i += 16) {
      max0 = _mm256_max_epu32(
          max0,
          _mm256_and_si256(_mm256_castps_si256(load8<D>(data, i)), absMask));
      max1 = _mm256_max_epu32(
          max1, _mm256_and_si256(_mm256_castps_si256(load8<D>(data, i + 8)),
                                 absMask));
    }
    __m128i m4 = _mm_max_epu32(
        _mm256_castsi256_si128(_mm256_max_epu32(max0, max1)),
        _mm256_extracti128_si256(_mm256_max_epu32(max0, max1), 1));
    m4 = _mm_max_epu32(m4, _mm_shuffle_epi32(m4, 0x4e));
    m4 = _mm_max_epu32(m4, _mm_shuffle_epi32(m4, 0xb1));
    const uint32_t maxBits = static_cast<uint32_t>(_mm_cvtsi128_si32(m4));
    if (maxBits >= kNf4NonFiniteBits)
      return b;
    const float am = std::bit_cast<float>(maxBits);
    absmax[b] = am;
    const __m256 recip = _mm256_set1_ps(1.0f / std::max(am, kNf4TinyAbsmax));
    uint8_t *out = packed + first / 2;
    for (int64_t i = first; i < end; i += 32, out += 16) {
      __m256i c0 = bucketize8(_mm256_mul_ps(load8<D>(data, i), recip), t);
      __m256i c1 = bucketize8(_mm256_mul_ps(load8<D>(data, i + 8), recip), t);
      __m256i c2 = bucketize8(_mm256_mul_ps(load8<D>(data, i + 16), recip), t);
      __m256i c3 = bucketize8(_mm256_mul_ps(load8<D>(data, i + 24), recip), t);
      pack32(c0, c1, c2, c3, out);
    }
  }
  return endBlock;
}

// GCC 12's AVX-512 intrinsics pass an "undefined" vector as the unused
// merge source, which -Wmaybe-uninitialized mistakes for a real read.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define QLORA_AVX512 __attribute__((target("avx512f,avx512bw")))
#define QLORA_AVX512_INLINE                                                    \
  __attribute__((target("avx512f,avx512bw"), always_inline)) inline

/// With 16 lanes one permute holds every midpoint: the search keeps the
/// code index itself, and the level of step k compares with
/// mid[index + k - 1] (the second level has two candidates: a blend).
struct SearchTables16 {
  __m512 level1, level2Low, level2High, level3, level4;
};

QLORA_AVX512_INLINE SearchTables16 searchTables16() {
  const std::array<float, 15> &mid = nf4Midpoints();
  float level3[16], level4[16];
  for (int i = 0; i < 16; ++i) {
    level3[i] = mid[std::min(i + 1, 14)];
    level4[i] = mid[std::min(i, 14)];
  }
  SearchTables16 t;
  t.level1 = _mm512_set1_ps(mid[7]);
  t.level2Low = _mm512_set1_ps(mid[3]);
  t.level2High = _mm512_set1_ps(mid[11]);
  t.level3 = _mm512_loadu_ps(level3);
  t.level4 = _mm512_loadu_ps(level4);
  return t;
}

/// 4-bit codes (one per 32-bit lane) of sixteen scaled values.
QLORA_AVX512_INLINE __m512i bucketize16(__m512 s, const SearchTables16 &t) {
  __mmask16 k = _mm512_cmp_ps_mask(t.level1, s, _CMP_LT_OQ);
  __m512i idx = _mm512_maskz_mov_epi32(k, _mm512_set1_epi32(8));
  // Two candidates: a blend, which keeps the shuffle unit free.
  k = _mm512_cmp_ps_mask(_mm512_mask_blend_ps(k, t.level2Low, t.level2High), s,
                         _CMP_LT_OQ);
  idx = _mm512_mask_add_epi32(idx, k, idx, _mm512_set1_epi32(4));
  k = _mm512_cmp_ps_mask(_mm512_permutexvar_ps(idx, t.level3), s, _CMP_LT_OQ);
  idx = _mm512_mask_add_epi32(idx, k, idx, _mm512_set1_epi32(2));
  k = _mm512_cmp_ps_mask(_mm512_permutexvar_ps(idx, t.level4), s, _CMP_LT_OQ);
  return _mm512_mask_add_epi32(idx, k, idx, _mm512_set1_epi32(1));
}

/// Sixteen codes of even elements and sixteen of the odd ones after them,
/// stored as 16 bytes (even element in the high nibble).
QLORA_AVX512_INLINE void packEvenOdd(__m512i even, __m512i odd, uint8_t *out) {
  _mm_storeu_si128(
      reinterpret_cast<__m128i *>(out),
      _mm512_cvtepi32_epi8(_mm512_or_si512(_mm512_slli_epi32(even, 4), odd)));
}

/// The block's absmax bits (|x| as an integer) in every lane, from a
/// vector of partial maxima.
QLORA_AVX512_INLINE __m512i broadcastMax(__m512i m) {
  m = _mm512_max_epu32(m, _mm512_shuffle_i64x2(m, m, 0x4e));
  m = _mm512_max_epu32(m, _mm512_shuffle_i64x2(m, m, 0xb1));
  m = _mm512_max_epu32(m, _mm512_shuffle_epi32(m, _MM_PERM_BADC));
  return _mm512_max_epu32(m, _mm512_shuffle_epi32(m, _MM_PERM_CDAB));
}

/// Stores the absmax of block `b` and returns the reciprocal that scales it
/// (every lane), or false when the block is not finite.
QLORA_AVX512_INLINE bool blockScale(__m512i maxBits, float *absmax, int64_t b,
                                    __m512 &recip) {
  if (static_cast<uint32_t>(_mm_cvtsi128_si32(
          _mm512_castsi512_si128(maxBits))) >= kNf4NonFiniteBits)
    return false;
  const __m512 am = _mm512_castsi512_ps(maxBits);
  _mm_store_ss(absmax + b, _mm512_castps512_ps128(am));
  // 1 / max(am, 1e-38): every lane the same correctly rounded quotient.
  recip = _mm512_div_ps(_mm512_set1_ps(1.0f),
                        _mm512_max_ps(am, _mm512_set1_ps(kNf4TinyAbsmax)));
  return true;
}

/// Sixteen F32 or F16 elements from element `i` on, widened exactly.
template <DType D>
QLORA_AVX512_INLINE __m512 load16(const void *data, int64_t i) {
  if constexpr (D == DType::F32)
    return _mm512_loadu_ps(static_cast<const float *>(data) + i);
  else
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(
        static_cast<const uint16_t *>(data) + i)));
}

/// The even and odd elements of [i, i + 32), widened to fp32 exactly.
template <DType D>
QLORA_AVX512_INLINE void loadEvenOdd32(const void *data, int64_t i,
                                       __m512 &even, __m512 &odd) {
  if constexpr (D == DType::BF16) {
    // A bf16 pair per 32-bit lane: the even one low, the odd one high.
    const __m512i raw =
        _mm512_loadu_si512(static_cast<const uint16_t *>(data) + i);
    even = _mm512_castsi512_ps(_mm512_slli_epi32(raw, 16));
    odd = _mm512_castsi512_ps(
        _mm512_and_si512(raw, _mm512_set1_epi32(int(0xffff0000u))));
  } else {
    const __m512 lo = load16<D>(data, i), hi = load16<D>(data, i + 16);
    const __m512i evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18,
                                            20, 22, 24, 26, 28, 30);
    even = _mm512_permutex2var_ps(lo, evens, hi);
    odd = _mm512_permutex2var_ps(
        lo, _mm512_add_epi32(evens, _mm512_set1_epi32(1)), hi);
  }
}

/// |x| bits of [i, i + 32) folded into `m` (max per lane).
template <DType D>
QLORA_AVX512_INLINE __m512i foldAbsMax32(const void *data, int64_t i,
                                         __m512i m) {
  if constexpr (D == DType::BF16) {
    // Max of the 16-bit magnitudes; broadcastMax's caller moves them up.
    const __m512i raw =
        _mm512_loadu_si512(static_cast<const uint16_t *>(data) + i);
    return _mm512_max_epu16(m,
                            _mm512_and_si512(raw, _mm512_set1_epi16(0x7fff)));
  } else {
    const __m512 lo = load16<D>(data, i), hi = load16<D>(data, i + 16);
    const __m512i absMask = _mm512_set1_epi32(0x7fffffff);
    m = _mm512_max_epu32(m, _mm512_and_si512(_mm512_castps_si512(lo), absMask));
    return _mm512_max_epu32(m,
                            _mm512_and_si512(_mm512_castps_si512(hi), absMask));
  }
}

/// Per-lane maxima of |x| over the block at `first`, as fp32 bits.
template <DType D>
QLORA_AVX512_INLINE __m512i blockMaxBits(const void *data, int64_t first,
                                         int64_t blocksize) {
  __m512i m = _mm512_setzero_si512();
  for (int64_t i = first; i < first + blocksize; i += 32)
    m = foldAbsMax32<D>(data, i, m);
  if constexpr (D == DType::BF16) {
    // The larger 16-bit half of each lane, in the high (fp32) position.
    m = _mm512_max_epu16(m, _mm512_slli_epi32(m, 16));
    m = _mm512_and_si512(m, _mm512_set1_epi32(int(0xffff0000u)));
  }
  return m;
}

/// Scales, bucketizes and packs the block at `first`.
template <DType D>
QLORA_AVX512_INLINE void encodeBlock(const void *data, int64_t first,
                                     int64_t blocksize, __m512 recip,
                                     const SearchTables16 &t, uint8_t *packed) {
  uint8_t *out = packed + first / 2;
  for (int64_t i = first; i < first + blocksize; i += 32, out += 16) {
    __m512 even, odd;
    loadEvenOdd32<D>(data, i, even, odd);
    packEvenOdd(bucketize16(_mm512_mul_ps(even, recip), t),
                bucketize16(_mm512_mul_ps(odd, recip), t), out);
  }
}

template <DType D>
QLORA_AVX512 int64_t avx512Blocks(const void *data, int64_t blocksize,
                                  int64_t firstBlock, int64_t endBlock,
                                  uint8_t *packed, float *absmax) {
  const SearchTables16 t = searchTables16();
  int64_t b = firstBlock;
  // Two blocks at a time share the horizontal max and the division: lanes
  // 0-7 end up with the first block's absmax, lanes 8-15 with the second's.
  for (; b + 1 < endBlock; b += 2) {
    const int64_t first = b * blocksize;
    const __m512i m0 = blockMaxBits<D>(data, first, blocksize);
    const __m512i m1 = blockMaxBits<D>(data, first + blocksize, blocksize);
    __m512i m = _mm512_max_epu32(_mm512_shuffle_i64x2(m0, m1, 0x44),
                                 _mm512_shuffle_i64x2(m0, m1, 0xee));
    m = _mm512_max_epu32(m, _mm512_shuffle_i64x2(m, m, 0xb1));
    m = _mm512_max_epu32(m, _mm512_shuffle_epi32(m, _MM_PERM_BADC));
    m = _mm512_max_epu32(m, _mm512_shuffle_epi32(m, _MM_PERM_CDAB));
    if (_mm512_cmpge_epu32_mask(m, _mm512_set1_epi32(int(kNf4NonFiniteBits))))
      break; // the one-block loop below finds which
    const __m512 am = _mm512_castsi512_ps(m);
    _mm_store_ss(absmax + b, _mm512_castps512_ps128(am));
    _mm_store_ss(absmax + b + 1, _mm512_extractf32x4_ps(am, 2));
    const __m512 recip =
        _mm512_div_ps(_mm512_set1_ps(1.0f),
                      _mm512_max_ps(am, _mm512_set1_ps(kNf4TinyAbsmax)));
    encodeBlock<D>(data, first, blocksize,
                   _mm512_shuffle_f32x4(recip, recip, 0x00), t, packed);
    encodeBlock<D>(data, first + blocksize, blocksize,
                   _mm512_shuffle_f32x4(recip, recip, 0xaa), t, packed);
  }
  for (; b < endBlock; ++b) {
    const int64_t first = b * blocksize;
    __m512 recip;
    if (!blockScale(broadcastMax(blockMaxBits<D>(data, first, blocksize)),
                    absmax, b, recip))
      return b;
    encodeBlock<D>(data, first, blocksize, recip, t, packed);
  }
  return endBlock;
}

#pragma GCC diagnostic pop

#endif // QLORA_NF4_X86

} // namespace

bool quantizeNf4BlockPortable(const void *data, DType dtype, int64_t first,
                              int64_t length, bool partial, uint8_t *packed,
                              float &absmax) {
  float x[kMaxBlock];
  cpu::widenToFloat(data, dtype, static_cast<size_t>(first),
                    static_cast<size_t>(length), x);
  uint32_t maxBits = 0;
  for (int64_t i = 0; i < length; ++i)
    maxBits = std::max(maxBits, std::bit_cast<uint32_t>(x[i]) & 0x7fffffffu);
  if (maxBits >= kNf4NonFiniteBits)
    return false;
  float am = std::bit_cast<float>(maxBits);
  uint8_t codes[kMaxBlock];
  const std::array<float, 15> &mid = nf4Midpoints();
  if (partial) {
    am = std::max(am, kNf4TinyAbsmax);
    for (int64_t i = 0; i < length; ++i)
      codes[i] = bucketizeScalar(x[i] / am, mid);
  } else {
    const float recip = 1.0f / std::max(am, kNf4TinyAbsmax);
    for (int64_t i = 0; i < length; ++i)
      codes[i] = bucketizeScalar(x[i] * recip, mid);
  }
  absmax = am;
  for (int64_t i = 0; i < length; ++i) {
    uint8_t &byte = packed[(first + i) / 2];
    byte = (first + i) % 2 == 0
               ? static_cast<uint8_t>((codes[i] << 4) | (byte & 0x0F))
               : static_cast<uint8_t>((byte & 0xF0) | codes[i]);
  }
  return true;
}

namespace {

template <DType D>
Nf4BlocksKernel selectForDType(int64_t blocksize, Nf4Isa maxIsa) {
#ifdef QLORA_NF4_X86
  static const bool hasAvx2 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
  }();
  static const bool hasAvx512 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw");
  }();
  if (blocksize % 32 == 0) {
    if (maxIsa == Nf4Isa::Best && hasAvx512)
      return avx512Blocks<D>;
    if (maxIsa != Nf4Isa::Portable && hasAvx2)
      return avx2Blocks<D>;
  }
#endif
  (void)blocksize;
  (void)maxIsa;
  return portableBlocks<D>;
}

} // namespace

Nf4BlocksKernel selectNf4BlocksKernel(DType dtype, int64_t blocksize,
                                      Nf4Isa maxIsa) {
  switch (dtype) {
  case DType::BF16:
    return selectForDType<DType::BF16>(blocksize, maxIsa);
  case DType::F16:
    return selectForDType<DType::F16>(blocksize, maxIsa);
  default:
    return selectForDType<DType::F32>(blocksize, maxIsa);
  }
}

} // namespace qlora::format::detail
