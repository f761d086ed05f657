//===- Nf4.cuh - dequantize_nf4 and NF4 decoding ---------------*- CUDA -*-===//
//
// NF4 tensors in format/Nf4Layout.h's layout, decoded exactly as
// KernelAbi.h's [nf4] defines them (bit-identical with the CPU):
//   absmax(b) = dq ? (dyn[code(b)] * nested[b / dq]) + offset : absmax[b]
//   W(e)      = Dequant(kNf4Code[code(e)] * absmax(e / blocksize))
// each operation one `_rn` intrinsic. The two tables live in __constant__
// memory (qlora::cuda::kNf4Code, kDynamicMap), emitted ahead of this file
// by the generator from format::kNf4Code and format::createDynamicMap so
// that they can never drift; a block copies them to shared memory because
// its threads index them with different codes.
// dequantize_nf4 stores W as `To`: kVec elements (8, 2 or 1) per thread
// and step, one absmax each (kVec divides the block size).
// Config: To, Dequant, kN, kBlockSize, kDqBlockSize, kVec, kThreads, and
// the layout's byte offsets kAbsmaxOffset, kNestedAbsmaxOffset,
// kOffsetOffset (codes start at 0).
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_KERNELS_NF4_CUH
#define QLORACC_KERNELS_NF4_CUH

#include "kernels/Common.cuh"

namespace qlora::cuda {

/// The tables, in shared memory.
struct Nf4Tables {
  float code[16];
  float dynamicMap[256];
};

template <int Threads>
__device__ __forceinline__ void loadNf4Tables(Nf4Tables &tables,
                                              bool doubleQuantized) {
  for (int i = threadIdx.x; i < 16; i += Threads)
    tables.code[i] = kNf4Code[i];
  if (doubleQuantized)
    for (int i = threadIdx.x; i < 256; i += Threads)
      tables.dynamicMap[i] = kDynamicMap[i];
  __syncthreads();
}

/// absmax of block `block` of the NF4 tensor at `base`.
template <class Config>
__device__ __forceinline__ float
nf4Absmax(const unsigned char *base, const Nf4Tables &tables, Index block) {
  if constexpr (Config::kDqBlockSize == 0) {
    return reinterpret_cast<const float *>(base + Config::kAbsmaxOffset)[block];
  } else {
    const unsigned char code = base[Config::kAbsmaxOffset + block];
    const float nested = reinterpret_cast<const float *>(
        base + Config::kNestedAbsmaxOffset)[block / Config::kDqBlockSize];
    const float offset =
        *reinterpret_cast<const float *>(base + Config::kOffsetOffset);
    return __fadd_rn(__fmul_rn(tables.dynamicMap[code], nested), offset);
  }
}

/// Elements [first, first + Width) (one absmax block) as Dequant, widened.
template <class Config, int Width>
__device__ __forceinline__ void nf4Decode(const unsigned char *base,
                                          const Nf4Tables &tables, Index first,
                                          float (&out)[Width]) {
  const float absmax =
      nf4Absmax<Config>(base, tables, first / Config::kBlockSize);
  unsigned bits; // codes, element `first` in the top nibble
  if constexpr (Width == 8) {
    bits = __byte_perm(*reinterpret_cast<const unsigned *>(base + first / 2), 0,
                       0x0123); // bytes in element order, high to low
  } else if constexpr (Width == 2) {
    bits = unsigned(base[first / 2]) << 24;
  } else {
    unsigned byte = base[first / 2];
    bits = (first & 1 ? byte & 0xfu : byte >> 4) << 28;
  }
#pragma unroll
  for (int k = 0; k < Width; ++k) {
    const unsigned code = (bits >> (28 - 4 * k)) & 0xfu;
    out[k] = toFloat(fromFloat<typename Config::Dequant>(
        __fmul_rn(tables.code[code], absmax)));
  }
}

template <class Config>
__device__ void dequantizeNf4(const unsigned char *w,
                              typename Config::To *out) {
  constexpr int kVec = Config::kVec;
  static_assert(kVec == 8 || kVec == 2 || kVec == 1, "kVec is 8, 2 or 1");
  static_assert(Config::kBlockSize % kVec == 0 && Config::kN % kVec == 0,
                "kVec must divide the block size and the count");
  __shared__ Nf4Tables tables;
  loadNf4Tables<Config::kThreads>(tables, Config::kDqBlockSize != 0);
  forEachVector<Config::kN / kVec>([&](Index vector) {
    float values[kVec];
    nf4Decode<Config, kVec>(w, tables, vector * kVec, values);
    storeFloats(out, vector * kVec, values);
  });
}

} // namespace qlora::cuda

#endif // QLORACC_KERNELS_NF4_CUH
