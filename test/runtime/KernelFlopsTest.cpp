//===- KernelFlopsTest.cpp - Model FLOPs of the matrix-heavy kernels ------===//
#include "runtime/exec/KernelFlops.h"

#include <gtest/gtest.h>

namespace qlora::exec {
namespace {

format::KernelParams
params(std::initializer_list<std::pair<const char *, int64_t>> values) {
  format::KernelParams result;
  for (const auto &[name, value] : values)
    result.set(name, value);
  return result;
}

TEST(KernelFlopsTest, LinearsCountTheBaseAndTheLoraProducts) {
  // llama2-7b's q_proj at seq 2048, r = 64.
  auto q = params({{"rows", 2048}, {"in", 4096}, {"out", 4096}, {"rank", 64}});
  double base = 2.0 * 2048 * 4096 * 4096, lora = 2.0 * 2048 * 64 * 8192;
  EXPECT_EQ(modelFlops("linear_fwd", q), base + lora);
  EXPECT_EQ(modelFlops("linear_grad_input", q), base + lora);
  EXPECT_EQ(modelFlops("lora_grad", q), lora);
  // lm_head: no LoRA.
  auto head = params({{"rows", 2048}, {"in", 4096}, {"out", 32000}});
  EXPECT_EQ(modelFlops("linear_fwd", head), 2.0 * 2048 * 4096 * 32000);
}

TEST(KernelFlopsTest, AttentionCountsHalfTheScoresWhenCausal) {
  auto causal = params({{"batch", 1},
                        {"seq", 2048},
                        {"heads", 32},
                        {"kv_heads", 32},
                        {"head_dim", 128},
                        {"causal", 1}});
  double forward = 4.0 * 32 * 2048 * 2048 * 128 / 2;
  EXPECT_EQ(modelFlops("attention_fwd", causal), forward);
  EXPECT_EQ(modelFlops("attention_bwd", causal), 2.5 * forward);
  causal.set("causal", int64_t(0));
  EXPECT_EQ(modelFlops("attention_fwd", causal), 2 * forward);
}

TEST(KernelFlopsTest, OtherTemplatesAndMissingShapesHaveNoCount) {
  EXPECT_EQ(modelFlops("adamw", params({{"n", 10}})), std::nullopt);
  EXPECT_EQ(modelFlops("linear_fwd", params({{"rows", 2}})), std::nullopt);
}

} // namespace
} // namespace qlora::exec
