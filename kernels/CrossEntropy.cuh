//===- CrossEntropy.cuh - cross_entropy_fwd/bwd, count_targets -*- CUDA -*-===//
//
// transformers' ForCausalLMLoss over logits[B,S,V]: row t of a sequence is
// scored against labels[t + 1], the last position and ignore_index are not
// scored. One block per row reads the row in packed chunks of
// kThreads * kVec logits with an online logsumexp (a running max and a sum
// rescaled when the max grows), fp32, then combines the threads' (max, sum)
// pairs; nothing of the softmax is kept.
//   fwd: loss = sum over rows of -((x[label] - max) - log(sum)), in double
//        in the last block to finish (rows in a fixed order), divided in
//        fp32 by the target count or by the normalizer.
//   bwd: dlogits = onehot(label) * g - exp((x - max) - log(sum)) * g,
//        g = -(dloss / count), written as T; 0 rows where not scored.
// A label outside [0, V) makes its row NaN (torch raises). The CPU kernel
// sums exp in double; here fp32 with expf.
// Config: T, kBatch, kSeq, kVocab, kIgnoreIndex, kHasNormalizer, kThreads,
// kVec (divides kVocab).
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_KERNELS_CROSSENTROPY_CUH
#define QLORACC_KERNELS_CROSSENTROPY_CUH

#include "kernels/Common.cuh"

namespace qlora::cuda {

template <class Config> struct LossTraits {
  static constexpr Index kRows = Config::kBatch * Config::kSeq;
  static constexpr int kVec = Config::kVec;
  static_assert(Config::kVocab % kVec == 0, "kVec must divide kVocab");
  static constexpr Index kChunk = Index(Config::kThreads) * kVec;

  /// The label row `row` is scored against, or -1 when it is not scored.
  static __device__ __forceinline__ Index target(const int *labels, Index row) {
    if (row % Config::kSeq == Config::kSeq - 1)
      return -1;
    int label = labels[row + 1];
    return label == Config::kIgnoreIndex ? -1 : label;
  }
  static __device__ __forceinline__ bool inRange(Index label) {
    return label >= 0 && label < Config::kVocab;
  }

  /// The number of scored rows, to every thread of the block.
  static __device__ __forceinline__ int countTargets(const int *labels) {
    int count = 0;
    for (Index row = threadIdx.x; row < kRows; row += Config::kThreads)
      count += target(labels, row) >= 0;
    return blockReduce<Config::kThreads>(count, SumOp());
  }
};

struct RowStats {
  float max, logSum;
};

/// max and log(sum(exp(x - max))) of one row, to every thread of the block.
template <class Config>
__device__ __forceinline__ RowStats rowStats(const typename Config::T *row) {
  using Traits = LossTraits<Config>;
  constexpr int kVec = Traits::kVec;
  float max = -__int_as_float(0x7f800000), sum = 0.0f;
  for (Index j = Index(threadIdx.x) * kVec; j < Config::kVocab;
       j += Traits::kChunk) {
    float x[kVec];
    loadFloats(row, j, x);
    float chunkMax = x[0];
#pragma unroll
    for (int k = 1; k < kVec; ++k)
      chunkMax = fmaxf(chunkMax, x[k]);
    if (chunkMax > max) {
      sum *= expf(max - chunkMax);
      max = chunkMax;
    }
#pragma unroll
    for (int k = 0; k < kVec; ++k)
      sum += expf(x[k] - max);
  }
  const float rowMax = blockReduce<Config::kThreads>(max, MaxOp());
  // A thread that saw nothing has max = -inf and sum = 0: exp(-inf) = 0.
  sum = sum == 0.0f ? 0.0f : sum * expf(max - rowMax);
  sum = blockReduce<Config::kThreads>(sum, SumOp());
  return {rowMax, logf(sum)};
}

/// `rowLoss` (kRows floats) and `counter` are the kernel's own global
/// scratch; the last block to finish sums the rows.
template <class Config>
__device__ void crossEntropyFwd(const typename Config::T *logits,
                                const int *labels, const float *normalizer,
                                float *loss, float *rowLoss,
                                unsigned *counter) {
  using Traits = LossTraits<Config>;
  const Index row = blockIdx.x;
  const Index label = Traits::target(labels, row);
  float value = 0.0f;
  if (label >= 0 && !Traits::inRange(label)) {
    value = __int_as_float(0x7fc00000);
  } else if (label >= 0) {
    const auto *x = logits + row * Config::kVocab;
    RowStats stats = rowStats<Config>(x);
    value = -((toFloat(x[label]) - stats.max) - stats.logSum);
  }
  if (threadIdx.x == 0)
    rowLoss[row] = value;
  if (!isLastBlock(counter))
    return;
  double sum = 0.0;
  for (Index r = threadIdx.x; r < Traits::kRows; r += Config::kThreads)
    sum += rowLoss[r];
  sum = blockReduce<Config::kThreads>(sum, SumOp());
  float denominator;
  if constexpr (Config::kHasNormalizer)
    denominator = *normalizer;
  else
    denominator = float(Traits::countTargets(labels));
  if (threadIdx.x == 0)
    *loss = float(sum) / denominator;
}

template <class Config>
__device__ void crossEntropyBwd(const typename Config::T *logits,
                                const int *labels, const float *dloss,
                                const float *normalizer,
                                typename Config::T *dlogits) {
  using Traits = LossTraits<Config>;
  constexpr int kVec = Traits::kVec;
  const Index row = blockIdx.x;
  const Index label = Traits::target(labels, row);
  auto *out = dlogits + row * Config::kVocab;
  if (label < 0 || !Traits::inRange(label)) {
    float fillValue = label < 0 ? 0.0f : __int_as_float(0x7fc00000);
    float values[kVec];
#pragma unroll
    for (int k = 0; k < kVec; ++k)
      values[k] = fillValue;
    for (Index j = Index(threadIdx.x) * kVec; j < Config::kVocab;
         j += Traits::kChunk)
      storeFloats(out, j, values);
    return;
  }
  float denominator;
  if constexpr (Config::kHasNormalizer)
    denominator = *normalizer;
  else
    denominator = float(Traits::countTargets(labels));
  const float g = -(*dloss / denominator);
  const auto *x = logits + row * Config::kVocab;
  const RowStats stats = rowStats<Config>(x);
  for (Index j = Index(threadIdx.x) * kVec; j < Config::kVocab;
       j += Traits::kChunk) {
    float values[kVec];
    loadFloats(x, j, values);
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      float p = expf((values[k] - stats.max) - stats.logSum);
      values[k] = (j + k == label ? g : 0.0f) - p * g;
    }
    storeFloats(out, j, values);
  }
}

/// One block: the number of scored rows, as f32.
template <class Config>
__device__ void countTargets(const int *labels, float *count) {
  int total = LossTraits<Config>::countTargets(labels);
  if (threadIdx.x == 0)
    *count = float(total);
}

} // namespace qlora::cuda

#endif // QLORACC_KERNELS_CROSSENTROPY_CUH
