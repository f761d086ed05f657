//===- GemmMicroKernel.cpp - Register-blocked GEMM inner loops ------------===//
//
// Compiled with -ffp-contract=fast (see CMakeLists.txt).
//
//===----------------------------------------------------------------------===//
#include "runtime/backends/cpu/GemmMicroKernel.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define QLORA_GEMM_X86 1
#endif

#define QLORA_ALWAYS_INLINE inline __attribute__((always_inline))

namespace qlora::cpu::detail {
namespace {

typedef float Vec4 __attribute__((vector_size(16)));
typedef float Vec8 __attribute__((vector_size(32)));

// Unaligned, aliasing views of the vectors, for loads and stores. (Helper
// functions taking or returning a 32-byte vector by value would draw GCC's
// -Wpsabi note about AVX argument passing, even when inlined.)
typedef float Vec4Unaligned
    __attribute__((vector_size(16), aligned(4), may_alias));
typedef float Vec8Unaligned
    __attribute__((vector_size(32), aligned(4), may_alias));
template <typename V> struct UnalignedOf;
template <> struct UnalignedOf<Vec4> { using Type = Vec4Unaligned; };
template <> struct UnalignedOf<Vec8> { using Type = Vec8Unaligned; };

/// Columns [0, 2W) of the micro-tile with W-float vectors V: 12 accumulators,
/// which fit the 16 vector registers of SSE and AVX2 alike.
template <typename V>
QLORA_ALWAYS_INLINE void microKernelColumns(int64_t kc, const float *ap,
                                            const float *bp, float *tile,
                                            int64_t ld, bool first) {
  constexpr int64_t kW = sizeof(V) / sizeof(float);
  using U = typename UnalignedOf<V>::Type;
  V acc[kMicroRows][2];
  for (int64_t r = 0; r < kMicroRows; ++r) {
    acc[r][0] = first ? V{} : *reinterpret_cast<const U *>(tile + r * ld);
    acc[r][1] = first ? V{} : *reinterpret_cast<const U *>(tile + r * ld + kW);
  }
  for (int64_t kk = 0; kk < kc; ++kk, ap += kMicroRows, bp += kMicroColumns) {
    V b0 = *reinterpret_cast<const U *>(bp);
    V b1 = *reinterpret_cast<const U *>(bp + kW);
    for (int64_t r = 0; r < kMicroRows; ++r) {
      acc[r][0] += ap[r] * b0;
      acc[r][1] += ap[r] * b1;
    }
  }
  for (int64_t r = 0; r < kMicroRows; ++r) {
    *reinterpret_cast<U *>(tile + r * ld) = acc[r][0];
    *reinterpret_cast<U *>(tile + r * ld + kW) = acc[r][1];
  }
}

template <typename V>
QLORA_ALWAYS_INLINE void microKernelBody(int64_t kc, const float *ap,
                                         const float *bp, float *tile,
                                         int64_t ld, bool first) {
  constexpr int64_t kColumns = 2 * int64_t(sizeof(V) / sizeof(float));
  static_assert(kMicroColumns % kColumns == 0);
  for (int64_t c = 0; c < kMicroColumns; c += kColumns)
    microKernelColumns<V>(kc, ap, bp + c, tile + c, ld, first);
}

void microKernelPortable(int64_t kc, const float *ap, const float *bp,
                         float *tile, int64_t ld, bool first) {
  microKernelBody<Vec4>(kc, ap, bp, tile, ld, first);
}

#ifdef QLORA_GEMM_X86
__attribute__((target("avx2,fma"))) void
microKernelAvx2(int64_t kc, const float *ap, const float *bp, float *tile,
                int64_t ld, bool first) {
  microKernelBody<Vec8>(kc, ap, bp, tile, ld, first);
}
#endif

} // namespace

MicroKernel selectMicroKernel(bool portable) {
#ifdef QLORA_GEMM_X86
  static const bool hasAvx2Fma = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  if (!portable && hasAvx2Fma)
    return microKernelAvx2;
#endif
  (void)portable;
  return microKernelPortable;
}

} // namespace qlora::cpu::detail
