//===- AttentionCases.cpp - compile cases of the attention kernels --------===//
//
// attention_fwd (causal and not) and attention_bwd (with and without
// accumulate) for the model's shapes, plus grouped-query variants
// (kv_heads = heads / 4 for 7B, as llama3-8b; heads / 2 for tiny).
//
//===----------------------------------------------------------------------===//
#include "test/kernels/CudaKernelCases.h"

#include <cmath>

namespace qlora::cuda::test {

std::vector<Case> attentionCases(const Shapes &s,
                                 const std::string &namePrefix) {
  const int64_t groupedKvHeads = s.heads / (s.prefix == "tiny" ? 2 : 4);
  auto params = [&](int64_t kvHeads, int64_t causal) {
    return makeParams({{"batch", s.batch},
                       {"seq", s.seq},
                       {"heads", s.heads},
                       {"kv_heads", kvHeads},
                       {"head_dim", s.headDim},
                       {"scale", 1.0 / std::sqrt(double(s.headDim))},
                       {"causal", causal}});
  };
  auto backward = [&](int64_t kvHeads, int64_t accumulate) {
    KernelParams p = params(kvHeads, 1);
    p.set("accumulate", accumulate);
    return p;
  };
  const std::string p = namePrefix + "attention_";
  return {
      {p + "fwd", abi::kAttentionFwd, params(s.heads, 1)},
      {p + "fwd_noncausal", abi::kAttentionFwd, params(s.heads, 0)},
      {p + "fwd_gqa", abi::kAttentionFwd, params(groupedKvHeads, 1)},
      {p + "bwd", abi::kAttentionBwd, backward(s.heads, 0)},
      {p + "bwd_accumulate", abi::kAttentionBwd, backward(s.heads, 1)},
      {p + "bwd_gqa", abi::kAttentionBwd, backward(groupedKvHeads, 0)},
  };
}

} // namespace qlora::cuda::test
