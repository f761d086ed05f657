//===- CudaKernelsCompileTest.cpp - every CUDA kernel compiles, no spills -===//
//
// Each case instantiates one KernelAbi.h kernel from kernels/ with the shapes
// of the tiny preset or of llama2-7b (hidden 4096, vocab 32000, seq 2048,
// r = 64) and compiles it with NVRTC for sm_80 and sm_90 (CUBIN, ptxas -v)
// and compute_80 (PTX). A CUBIN whose ptxas report shows a spill store or
// load fails the case. Without the CUDA toolkit the cases skip and say so.
//
//===----------------------------------------------------------------------===//
#include "kernels/CudaKernelSource.h"
#include "kernels/NvrtcCompiler.h"
#include "runtime/format/KernelAbi.h"
#include "test/kernels/CudaKernelCases.h"

#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <set>

namespace {

using namespace qlora::cuda::test;
namespace abi = qlora::kernels;

std::vector<Case> casesFor(const Shapes &s, const std::string &activation) {
  const int64_t rows = s.batch * s.seq;
  const std::string p = s.prefix + "_" + activation + "_";
  auto ropeParams = [&](int64_t inverse, bool llama3) {
    KernelParams params =
        makeParams({{"batch", s.batch},
                    {"seq", s.seq},
                    {"heads", s.heads},
                    {"head_dim", s.headDim},
                    {"inverse", inverse},
                    {"theta", llama3 ? 500000.0 : 10000.0},
                    {"rope_type", std::string(llama3 ? "llama3" : "default")}});
    if (llama3) {
      params.set("factor", 8.0);
      params.set("low_freq_factor", 1.0);
      params.set("high_freq_factor", 4.0);
      params.set("original_max_position", int64_t(8192));
    }
    return params;
  };
  auto loss = [&](int64_t hasNormalizer) {
    return makeParams({{"batch", s.batch},
                       {"seq", s.seq},
                       {"vocab", s.vocab},
                       {"ignore_index", int64_t(-100)},
                       {"has_normalizer", hasNormalizer}});
  };
  // The LoRA gradients of every all-linear module of every layer (two
  // layers of them for the tiny preset, 32 for 7B).
  std::vector<int64_t> loraSizes;
  int64_t layers = s.prefix == "tiny" ? 2 : 32;
  for (int64_t layer = 0; layer < layers; ++layer)
    for (auto [in, out] : {std::pair{s.hidden, s.hidden},
                           {s.hidden, s.hidden},
                           {s.hidden, s.hidden},
                           {s.hidden, s.hidden},
                           {s.hidden, s.intermediate},
                           {s.hidden, s.intermediate},
                           {s.intermediate, s.hidden}}) {
      loraSizes.push_back(s.rank * in);
      loraSizes.push_back(out * s.rank);
    }
  const int64_t hiddenElements = rows * s.hidden;
  const int64_t mlpElements = rows * s.intermediate;
  std::vector<Case> cases = {
      {p + "embedding_fwd", abi::kEmbeddingFwd,
       makeParams({{"rows", rows},
                   {"vocab", s.vocab},
                   {"hidden", s.hidden},
                   {"w_dtype", s.weightType}})},
      {p + "cast_f32_bf16", abi::kCast,
       makeParams({{"n", hiddenElements},
                   {"from", std::string("F32")},
                   {"to", std::string("BF16")}})},
      {p + "cast_bf16_f32", abi::kCast,
       makeParams({{"n", s.hidden * s.intermediate},
                   {"from", std::string("BF16")},
                   {"to", std::string("F32")}})},
      {p + "rms_norm_fwd", abi::kRmsNormFwd,
       makeParams({{"rows", rows},
                   {"hidden", s.hidden},
                   {"eps", 1e-5},
                   {"w_dtype", s.weightType}})},
      {p + "rms_norm_bwd", abi::kRmsNormBwd,
       makeParams({{"rows", rows},
                   {"hidden", s.hidden},
                   {"eps", 1e-5},
                   {"w_dtype", s.weightType},
                   {"accumulate", int64_t(0)}})},
      {p + "rms_norm_bwd_accumulate", abi::kRmsNormBwd,
       makeParams({{"rows", rows},
                   {"hidden", s.hidden},
                   {"eps", 1e-5},
                   {"w_dtype", s.weightType},
                   {"accumulate", int64_t(1)}})},
      {p + "rope_default", abi::kRope, ropeParams(0, false)},
      {p + "rope_default_inverse", abi::kRope, ropeParams(1, false)},
      {p + "rope_llama3", abi::kRope, ropeParams(0, true)},
      {p + "rope_llama3_inverse", abi::kRope, ropeParams(1, true)},
      {p + "silu_fwd", abi::kSiluFwd, makeParams({{"n", mlpElements}})},
      {p + "silu_bwd", abi::kSiluBwd,
       makeParams({{"n", mlpElements}, {"accumulate", int64_t(0)}})},
      {p + "silu_bwd_accumulate", abi::kSiluBwd,
       makeParams({{"n", mlpElements}, {"accumulate", int64_t(1)}})},
      {p + "add", abi::kAdd, makeParams({{"n", hiddenElements}})},
      {p + "mul", abi::kMul, makeParams({{"n", mlpElements}})},
      // Gradient accumulation sums f32 LoRA gradients in any program.
      {p + "add_f32_gradients", abi::kAdd,
       makeParams({{"n", s.rank * s.hidden}, {"dtype", std::string("F32")}})},
      {p + "fill", abi::kFill,
       makeParams({{"n", hiddenElements}, {"value", 0.0}})},
      {p + "fill_nan_odd", abi::kFill,
       makeParams({{"n", hiddenElements + 1}, {"value", std::nan("")}})},
      {p + "scalar_binary_add", abi::kScalarBinary,
       makeParams({{"op", std::string("add")}})},
      {p + "scalar_binary_div", abi::kScalarBinary,
       makeParams({{"op", std::string("div")}})},
      {p + "count_targets", abi::kCountTargets,
       makeParams({{"batch", s.batch},
                   {"seq", s.seq},
                   {"ignore_index", int64_t(-100)}})},
      {p + "cross_entropy_fwd", abi::kCrossEntropyFwd, loss(0)},
      {p + "cross_entropy_fwd_normalizer", abi::kCrossEntropyFwd, loss(1)},
      {p + "cross_entropy_bwd", abi::kCrossEntropyBwd, loss(0)},
      {p + "cross_entropy_bwd_normalizer", abi::kCrossEntropyBwd, loss(1)},
      {p + "global_norm", abi::kGlobalNorm,
       makeParams(
           {{"count", int64_t(loraSizes.size())}, {"sizes", loraSizes}})},
      {p + "clip_coefficient", abi::kClipCoefficient, KernelParams()},
      {p + "adamw", abi::kAdamW,
       makeParams({{"n", s.rank * s.hidden},
                   {"beta1", 0.9},
                   {"beta2", 0.999},
                   {"epsilon", 1e-8}})},
      {p + "adamw_odd", abi::kAdamW,
       makeParams({{"n", s.rank * s.hidden + 3},
                   {"beta1", 0.9},
                   {"beta2", 0.999},
                   {"epsilon", 1e-8}})},
      {p + "dequantize_nf4_dq", abi::kDequantizeNf4,
       makeParams({{"n", s.hidden * s.intermediate},
                   {"w_block_size", int64_t(64)},
                   {"w_dq_block_size", int64_t(256)},
                   {"w_dequant_dtype", std::string("BF16")},
                   {"to", std::string("BF16")}})},
      {p + "dequantize_nf4_f32_absmax", abi::kDequantizeNf4,
       makeParams({{"n", s.hidden * s.intermediate + 1},
                   {"w_block_size", int64_t(64)},
                   {"w_dq_block_size", int64_t(0)},
                   {"w_dequant_dtype", std::string("F32")},
                   {"to", std::string("F32")}})},
  };
  for (auto *more : {linearCases, attentionCases}) {
    std::vector<Case> extra = more(s, p);
    cases.insert(cases.end(), extra.begin(), extra.end());
  }
  for (Case &c : cases)
    c.activation = activation;
  return cases;
}

const Shapes kTiny = {"tiny", 2, 8, 256, 64, 128, 4, 16, 4, "F32"};
const Shapes kLlama2_7b = {"llama2_7b", 1,  2048, 32000, 4096,
                           11008,       32, 128,  64,    "BF16"};

std::vector<Case> allCases() {
  std::vector<Case> cases = casesFor(kTiny, "f32");
  for (auto *set : {&kTiny, &kLlama2_7b}) {
    std::vector<Case> more = casesFor(*set, "bf16");
    cases.insert(cases.end(), more.begin(), more.end());
  }
  return cases;
}

class CudaKernelCompile : public testing::TestWithParam<Case> {};

TEST_P(CudaKernelCompile, CompilesWithoutSpills) {
  const Case &c = GetParam();
  std::string error;
  auto source = qlora::cuda::instantiateCudaKernel(c.kernel, c.params,
                                                   c.activation, error);
  ASSERT_TRUE(source) << error;
  EXPECT_GT(source->blockThreads, 0u);
  if (!qlora::cuda::nvrtcAvailable())
    GTEST_SKIP() << "built without the CUDA toolkit (NVRTC): " << c.name
                 << " not compiled";
  const std::vector<std::string> archs = {"sm_80", "sm_90", "compute_80"};
  auto images = qlora::cuda::compileCudaKernel(
      source->source, source->entry + ".cu", archs, error);
  ASSERT_TRUE(images) << error;
  ASSERT_EQ(images->size(), archs.size());
  std::string report;
  for (const qlora::cuda::NvrtcImage &image : *images) {
    EXPECT_FALSE(image.bytes.empty()) << image.arch;
    if (image.isPtx) {
      EXPECT_NE(image.bytes.find(".entry " + source->entry), std::string::npos)
          << "PTX lacks the entry " << source->entry;
      continue;
    }
    bool sawEntry = false;
    for (const qlora::cuda::PtxasFunctionInfo &f : image.functions) {
      EXPECT_EQ(f.spillStoreBytes, 0)
          << f.function << " on " << image.arch << "\n"
          << image.log;
      EXPECT_EQ(f.spillLoadBytes, 0)
          << f.function << " on " << image.arch << "\n"
          << image.log;
      if (f.function != source->entry)
        continue;
      sawEntry = true;
      report += " " + image.arch + ": " + std::to_string(f.registers) +
                " registers, " + std::to_string(f.stackFrameBytes) +
                " bytes stack";
      if (image.withoutSm90MinBlocks)
        report += " (its min-blocks hint would spill)";
    }
    EXPECT_TRUE(sawEntry) << "no ptxas report for " << source->entry << " on "
                          << image.arch << "\n"
                          << image.log;
  }
  std::cout << "[cuda-compile] " << c.name << " (" << source->blockThreads
            << " threads, grid " << source->grid[0] << "):" << report << "\n";
}

INSTANTIATE_TEST_SUITE_P(Kernels, CudaKernelCompile,
                         testing::ValuesIn(allCases()),
                         [](const testing::TestParamInfo<Case> &info) {
                           return info.param.name;
                         });

TEST(CudaKernelSource, EveryKernelHasACase) {
  std::set<std::string_view> covered;
  for (const Case &c : allCases())
    covered.insert(c.kernel);
  for (std::string_view name : qlora::cuda::cudaKernelNames())
    EXPECT_TRUE(covered.count(name)) << name << " has no compile case";
}

TEST(CudaKernelSource, EntryNameCoversParams) {
  std::string error;
  KernelParams a = makeParams({{"n", int64_t(64)}});
  KernelParams b = makeParams({{"n", int64_t(128)}});
  auto first = qlora::cuda::instantiateCudaKernel(abi::kAdd, a, "bf16", error);
  auto again = qlora::cuda::instantiateCudaKernel(abi::kAdd, a, "bf16", error);
  auto other = qlora::cuda::instantiateCudaKernel(abi::kAdd, b, "bf16", error);
  auto f32 = qlora::cuda::instantiateCudaKernel(abi::kAdd, a, "f32", error);
  ASSERT_TRUE(first && again && other && f32) << error;
  EXPECT_EQ(first->entry, again->entry);
  EXPECT_EQ(first->source, again->source);
  EXPECT_NE(first->entry, other->entry);
  EXPECT_NE(first->entry, f32->entry);
  EXPECT_EQ(first->entry.rfind("add_bf16_", 0), 0u) << first->entry;
  EXPECT_NE(first->source.find("extern \"C\" __global__"), std::string::npos);
}

TEST(CudaKernelSource, RefusesWhatItCannotInstantiate) {
  std::string error;
  EXPECT_FALSE(qlora::cuda::instantiateCudaKernel("conv2d", KernelParams(),
                                                  "bf16", error));
  EXPECT_NE(error.find("has no CUDA template"), std::string::npos) << error;
  EXPECT_FALSE(qlora::cuda::instantiateCudaKernel(
      abi::kRmsNormFwd, makeParams({{"rows", int64_t(4)}}), "bf16", error));
  EXPECT_NE(error.find("kernel 'rms_norm_fwd': missing integer parameter "
                       "'hidden'"),
            std::string::npos)
      << error;
  EXPECT_FALSE(qlora::cuda::instantiateCudaKernel(
      abi::kAdd, makeParams({{"n", int64_t(4)}}), "f16", error));
  EXPECT_NE(error.find("activation type"), std::string::npos) << error;
}

TEST(NvrtcCompiler, ParsesPtxasReport) {
  const char *log =
      "ptxas info    : 0 bytes gmem\n"
      "ptxas info    : Compiling entry function 'k' for 'sm_90'\n"
      "ptxas info    : Function properties for k\n"
      "ptxas         .     8 bytes stack frame, 12 bytes spill stores, 16 "
      "bytes spill loads\n"
      "ptxas info    : Used 40 registers, used 1 barriers, 380 bytes cmem[0]\n";
  auto functions = qlora::cuda::parsePtxasInfo(log);
  ASSERT_EQ(functions.size(), 1u);
  EXPECT_EQ(functions[0].function, "k");
  EXPECT_EQ(functions[0].arch, "sm_90");
  EXPECT_EQ(functions[0].registers, 40);
  EXPECT_EQ(functions[0].stackFrameBytes, 8);
  EXPECT_EQ(functions[0].spillStoreBytes, 12);
  EXPECT_EQ(functions[0].spillLoadBytes, 16);
}

/// A kernel with 40 accumulators live across a loop, asking for two blocks
/// of 1024 threads a SM on sm_90 (32 registers each: it must spill) and
/// for nothing before (64 registers: it need not).
std::string heavyKernel() {
  std::string common;
  for (const qlora::cuda::CudaTemplateFile &file :
       qlora::cuda::cudaTemplateFiles())
    if (file.name == "Common.cuh")
      common = file.text;
  return common + R"(
extern "C" __global__ void __launch_bounds__(1024, QLORA_MIN_BLOCKS(0, 2))
heavy(const float *in, float *out, int n) {
  float acc[40];
#pragma unroll
  for (int i = 0; i < 40; ++i)
    acc[i] = in[i];
  for (int t = 0; t < n; ++t) {
    const float x = in[t * 1024 + threadIdx.x];
#pragma unroll
    for (int i = 0; i < 40; ++i)
      acc[i] = fmaf(acc[i], x, float(i));
  }
#pragma unroll
  for (int i = 0; i < 40; ++i)
    out[i * 1024 + threadIdx.x] = acc[i];
}
)";
}

TEST(NvrtcCompiler, DropsAnSm90MinBlocksHintThatWouldSpill) {
  if (!qlora::cuda::nvrtcAvailable())
    GTEST_SKIP() << "built without the CUDA toolkit (NVRTC)";
  const std::vector<std::string> archs = {"sm_80", "sm_90"};
  std::string error;
  // The premise: asked for two blocks, sm_90 spills.
  auto hinted =
      qlora::cuda::compileCuda(heavyKernel(), "heavy.cu", archs, error);
  ASSERT_TRUE(hinted) << error;
  EXPECT_FALSE((*hinted)[0].spills()) << (*hinted)[0].log;
  ASSERT_TRUE((*hinted)[1].spills()) << (*hinted)[1].log;

  auto images =
      qlora::cuda::compileCudaKernel(heavyKernel(), "heavy.cu", archs, error);
  ASSERT_TRUE(images) << error;
  ASSERT_EQ(images->size(), 2u);
  EXPECT_EQ((*images)[0].arch, "sm_80");
  EXPECT_FALSE((*images)[0].withoutSm90MinBlocks);
  EXPECT_EQ((*images)[0].bytes, (*hinted)[0].bytes);
  EXPECT_EQ((*images)[1].arch, "sm_90");
  EXPECT_TRUE((*images)[1].withoutSm90MinBlocks);
  EXPECT_FALSE((*images)[1].spills()) << (*images)[1].log;
  EXPECT_GT((*images)[1].functions.at(0).registers, 32);
}

TEST(NvrtcCompiler, SaysWhenNvrtcIsMissing) {
  if (qlora::cuda::nvrtcAvailable())
    GTEST_SKIP() << "NVRTC " << qlora::cuda::nvrtcVersionString()
                 << " is available";
  std::string error;
  std::vector<std::string> archs = {"sm_80"};
  EXPECT_FALSE(qlora::cuda::compileCuda("", "x.cu", archs, error));
  EXPECT_NE(error.find("without the CUDA toolkit"), std::string::npos);
}

} // namespace
