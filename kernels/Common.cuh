//===- Common.cuh - What every CUDA kernel template shares -----*- CUDA -*-===//
//
// Element conversions, packed vector loads and block reductions. Every
// template in kernels/ is instantiated with a `Config` struct that the
// compiler generates from a `qrt.kernel`'s static parameters
// (kernels/CudaKernelSource.cpp): shapes and scalars are `static constexpr`
// there, so loops over them unroll and divisions become shifts.
//
// Conventions: activations and gradients are `Config::T` (float or
// __nv_bfloat16), arithmetic is fp32 (double where the CPU kernel needs
// it), LoRA weights and optimizer state are fp32. Buffers are 16-byte
// aligned (the CUDA arena aligns every range): packed loads rely on it.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_KERNELS_COMMON_CUH
#define QLORACC_KERNELS_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace qlora::cuda {

using Index = long long;
constexpr int kWarpSize = 32;

__device__ __forceinline__ float toFloat(float v) { return v; }
__device__ __forceinline__ float toFloat(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
__device__ __forceinline__ float toFloat(__half v) { return __half2float(v); }

/// `v` rounded to T, to nearest even.
template <typename T> __device__ __forceinline__ T fromFloat(float v);
template <> __device__ __forceinline__ float fromFloat<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 fromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <> __device__ __forceinline__ __half fromFloat<__half>(float v) {
  return __float2half_rn(v);
}

/// A if Condition, else B (std::conditional; NVRTC has no standard
/// library).
template <bool Condition, class A, class B> struct Select { using Type = A; };
template <class A, class B> struct Select<false, A, B> { using Type = B; };

template <typename T> struct IsBf16 { static constexpr bool value = false; };
template <> struct IsBf16<__nv_bfloat16> {
  static constexpr bool value = true;
};

/// `Width` consecutive elements, loaded and stored as one vector access.
template <typename T, int Width> struct alignas(sizeof(T) * Width) Pack {
  T v[Width];
};

/// Elements [i, i + Width) of `p` widened to float.
template <int Width, typename T>
__device__ __forceinline__ void loadFloats(const T *p, Index i,
                                           float (&out)[Width]) {
  Pack<T, Width> pack = *reinterpret_cast<const Pack<T, Width> *>(p + i);
#pragma unroll
  for (int k = 0; k < Width; ++k)
    out[k] = toFloat(pack.v[k]);
}

template <int Width, typename T>
__device__ __forceinline__ void storeFloats(T *p, Index i,
                                            const float (&in)[Width]) {
  Pack<T, Width> pack;
#pragma unroll
  for (int k = 0; k < Width; ++k)
    pack.v[k] = fromFloat<T>(in[k]);
  *reinterpret_cast<Pack<T, Width> *>(p + i) = pack;
}

/// fn(v) for every vector index v in [0, Vectors), over the whole grid.
template <Index Vectors, typename Fn>
__device__ __forceinline__ void forEachVector(Fn fn) {
  const Index stride = Index(gridDim.x) * blockDim.x;
  for (Index v = Index(blockIdx.x) * blockDim.x + threadIdx.x; v < Vectors;
       v += stride)
    fn(v);
}

struct SumOp {
  template <typename V> __device__ static V identity() { return V(0); }
  template <typename V> __device__ V operator()(V a, V b) const {
    return a + b;
  }
};
struct MaxOp {
  template <typename V> __device__ static V identity() {
    return -__int_as_float(0x7f800000);
  }
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <typename V, typename Op>
__device__ __forceinline__ V warpReduce(V v, Op op) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1)
    v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

/// The reduction of `v` over a block of Threads threads, returned to every
/// thread. The tree order is fixed, so the result is deterministic.
template <int Threads, typename V, typename Op>
__device__ __forceinline__ V blockReduce(V v, Op op) {
  static_assert(Threads % kWarpSize == 0 && Threads <= 1024,
                "a block is whole warps");
  constexpr int kWarps = Threads / kWarpSize;
  __shared__ V partial[kWarps];
  v = warpReduce(v, op);
  if constexpr (kWarps == 1)
    return v;
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  if (lane == 0)
    partial[warp] = v;
  __syncthreads();
  // Lanes past the last warp add nothing (not a copy of partial[0]).
  v = lane < kWarps ? partial[lane] : Op::template identity<V>();
  v = warpReduce(v, op);
  __syncthreads(); // `partial` may be reused by the next call
  return v;
}

/// Starts copying `Bytes` (4, 8 or 16, aligned so) from global `src` to
/// shared `dst` without staging them in registers (cp.async, sm_80), or
/// writing zeros there when !inside (src is then not read). The copies of
/// a thread land by its next waitCopies(). The host emulator's shim
/// (test/emu) defers them to that point, so a read before it sees stale
/// shared memory.
template <int Bytes>
__device__ __forceinline__ void copyAsync(void *dst, const void *src,
                                          bool inside) {
  static_assert(Bytes == 4 || Bytes == 8 || Bytes == 16, "cp.async sizes");
#if defined(__CUDA_ARCH__)
  const unsigned shared = unsigned(__cvta_generic_to_shared(dst));
  if constexpr (Bytes == 16)
    asm volatile(
        "cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared),
        "l"(src), "r"(inside ? 16 : 0));
  else
    asm volatile(
        "cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(shared),
        "l"(src), "n"(Bytes), "r"(inside ? Bytes : 0));
#elif defined(QLORACC_TEST_EMU_CUDAHOSTSHIM_H)
  qlora_emu::copyAsync(dst, src, inside ? Bytes : 0, Bytes);
#else
  for (int i = 0; i < Bytes; ++i)
    static_cast<char *>(dst)[i] =
        inside ? static_cast<const char *>(src)[i] : char(0);
#endif
}

/// Waits for this thread's copyAsync copies.
__device__ __forceinline__ void waitCopies() {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.wait_all;\n" ::);
#elif defined(QLORACC_TEST_EMU_CUDAHOSTSHIM_H)
  qlora_emu::waitCopies();
#endif
}

/// __launch_bounds__'s minimum resident blocks a SM, `older` before sm_90
/// and `sm90` from it (0: unspecified), for blocks whose registers only
/// sm_90's ptxas fits into a higher occupancy step without spilling.
/// QLORA_NO_SM90_MIN_BLOCKS (NvrtcCompiler.h's compileCudaKernel, where
/// ptxas would spill to meet it) gives sm_90 `older` too.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 &&                          \
    !defined(QLORA_NO_SM90_MIN_BLOCKS)
#define QLORA_MIN_BLOCKS(older, sm90) sm90
#else
#define QLORA_MIN_BLOCKS(older, sm90) older
#endif

/// `p`, opaque to the optimizer: called on a shared tile's pointer at the
/// top of each loop iteration, it keeps the compiler from computing every
/// WMMA fragment address (64-bit, generic) once before the loop and holding
/// each in two registers across it (some 40 registers in attention at
/// head_dim 128; 2 in the GEMM, which then fits two blocks a SM).
template <typename T> __device__ __forceinline__ T *unhoisted(T *p) {
#if defined(__CUDA_ARCH__)
  asm volatile("" : "+l"(p));
#endif
  return p;
}

/// True in exactly one block, the last of the grid to call it: the block
/// that combines what the others wrote to global memory (each thread's
/// writes are fenced before the count). `counter` is reset for the next
/// launch. Launches of one instantiation must not overlap.
__device__ __forceinline__ bool isLastBlock(unsigned *counter) {
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned done = atomicAdd(counter, 1u);
    last = done == gridDim.x - 1;
    if (last)
      *counter = 0;
  }
  __syncthreads();
  if (last)
    __threadfence();
  return last;
}

} // namespace qlora::cuda

#endif // QLORACC_KERNELS_COMMON_CUH
