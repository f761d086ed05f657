//===- Embedding.cuh - embedding_fwd ---------------------------*- CUDA -*-===//
//
// out[r, :] = table[tokens[r], :] widened from W and rounded to T; a token
// outside [0, vocab) writes a NaN row (torch raises; the program cannot see
// data). One block per row. Config: T, W, kRows, kVocab, kHidden, kVec
// (divides kHidden), kThreads.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_KERNELS_EMBEDDING_CUH
#define QLORACC_KERNELS_EMBEDDING_CUH

#include "kernels/Common.cuh"

namespace qlora::cuda {

template <class Config>
__device__ void embeddingFwd(const typename Config::W *table, const int *tokens,
                             typename Config::T *out) {
  constexpr int kVec = Config::kVec;
  static_assert(Config::kHidden % kVec == 0, "kVec must divide kHidden");
  const Index row = blockIdx.x;
  const Index token = tokens[row];
  const bool valid = token >= 0 && token < Config::kVocab;
  const auto *from = table + (valid ? token : 0) * Config::kHidden;
  auto *to = out + row * Config::kHidden;
  for (Index i = Index(threadIdx.x) * kVec; i < Config::kHidden;
       i += Index(Config::kThreads) * kVec) {
    float values[kVec];
    loadFloats(from, i, values);
    if (!valid)
#pragma unroll
      for (int k = 0; k < kVec; ++k)
        values[k] = __int_as_float(0x7fc00000);
    storeFloats(to, i, values);
  }
}

} // namespace qlora::cuda

#endif // QLORACC_KERNELS_EMBEDDING_CUH
