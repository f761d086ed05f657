//===- GlobalNorm.cuh - global_norm ----------------------------*- CUDA -*-===//
//
// clip_grad_norm_'s total norm of k fp32 gradients, in two stages within one
// launch (as the CPU kernel, chunks of kChunk elements):
//   1. one block per chunk: its sum of squares, fp32 per thread and double
//      across the block, written to `partial`;
//   2. the last block to finish: per gradient, its chunks' partials summed
//      in chunk order in double and rounded to a float norm; then
//      norm = float(sqrt(sum of norm^2 in gradient order, in double)).
// The order of stage 2 is the CPU's; within a chunk the order differs.
// The generated entry passes `gradient(t)` (the t-th pointer argument) and
// the chunk table `firstChunk[t]` (prefix sums of the chunk counts, k + 1
// entries) and `sizes[t]`.
// Config: kCount, kChunk, kTotalChunks, kThreads.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_KERNELS_GLOBALNORM_CUH
#define QLORACC_KERNELS_GLOBALNORM_CUH

#include "kernels/Common.cuh"

namespace qlora::cuda {

/// The gradient whose chunks contain chunk `chunk` (a binary search).
template <int Count>
__device__ __forceinline__ int gradientOfChunk(const Index *firstChunk,
                                               Index chunk) {
  int lo = 0, hi = Count; // firstChunk[lo] <= chunk < firstChunk[hi]
  while (hi - lo > 1) {
    int mid = (lo + hi) / 2;
    if (firstChunk[mid] <= chunk)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

template <class Config, typename GradientFn>
__device__ void globalNorm(GradientFn gradient, const Index *firstChunk,
                           const Index *sizes, float *norm, double *partial,
                           unsigned *counter) {
  constexpr int kThreads = Config::kThreads, kVec = 4;
  static_assert(Config::kChunk % (kThreads * kVec) == 0,
                "a chunk is whole block steps");
  const Index chunk = blockIdx.x;
  if (chunk < Config::kTotalChunks) {
    const int t = gradientOfChunk<Config::kCount>(firstChunk, chunk);
    const float *g = gradient(t);
    const Index begin = (chunk - firstChunk[t]) * Config::kChunk;
    const Index end = min(begin + Config::kChunk, sizes[t]);
    float sum = 0.0f;
    for (Index i = begin + Index(threadIdx.x) * kVec; i < end;
         i += kThreads * kVec) {
      if (i + kVec <= end) {
        float x[kVec];
        loadFloats(g, i, x);
#pragma unroll
        for (int k = 0; k < kVec; ++k)
          sum += x[k] * x[k];
      } else {
        for (Index j = i; j < end; ++j)
          sum += g[j] * g[j];
      }
    }
    double total = blockReduce<kThreads>(double(sum), SumOp());
    if (threadIdx.x == 0)
      partial[chunk] = total;
  }
  if (!isLastBlock(counter))
    return;
  __shared__ float norms[Config::kCount > 0 ? Config::kCount : 1];
  for (int t = threadIdx.x; t < Config::kCount; t += kThreads) {
    double sum = 0.0;
    for (Index c = firstChunk[t]; c < firstChunk[t + 1]; ++c)
      sum += partial[c];
    norms[t] = float(sqrt(sum));
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int t = 0; t < Config::kCount; ++t)
      total += double(norms[t]) * norms[t];
    *norm = float(sqrt(total));
  }
}

} // namespace qlora::cuda

#endif // QLORACC_KERNELS_GLOBALNORM_CUH
