//===- CudaParityCases.cpp - Kernels the GPU must run like the CPU --------===//
//
// Shapes are small but ragged (80 rows, 352 columns, vocabulary 1000, head
// dim 32 and 128), so every kernel meets partial tiles; one NF4 linear has
// llama-sized rows (4096) so that the GEMM runs many tiles along K.
//
//===----------------------------------------------------------------------===//
#include "test/runtime/CudaParityCases.h"

#include "runtime/format/KernelAbi.h"
#include "runtime/format/Nf4Layout.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <utility>

namespace qlora::cuda::parity {

namespace {

namespace abi = qlora::kernels;
using format::DType;
using format::KernelParams;

constexpr int64_t kBatch = 2, kSeq = 40, kRows = kBatch * kSeq;
constexpr int64_t kHidden = 128, kInter = 352, kVocab = 1000, kRank = 8;

KernelParams params(
    std::initializer_list<std::pair<std::string, KernelParams::Value>> list) {
  KernelParams result;
  for (const auto &[name, value] : list)
    result.set(name, value);
  return result;
}

ParityArg input(std::string name, int64_t elements, double scale = 1.0,
                DType dtype = DType::F32) {
  return {std::move(name), dtype, elements, Fill::Normal, scale, 0, false};
}
ParityArg output(std::string name, int64_t elements, DType dtype = DType::F32) {
  return {std::move(name), dtype, elements, Fill::Output, 0, 0, true};
}
/// An input the kernel also writes (accumulate, AdamW's state).
ParityArg inOut(std::string name, int64_t elements, double scale = 1.0) {
  return {std::move(name), DType::F32, elements, Fill::Normal, scale, 0, true};
}
ParityArg value(std::string name, double v, DType dtype = DType::F32) {
  return {std::move(name), dtype, 1, Fill::Value, v, 0, false};
}
/// `arg`, of the kernel's activation type T.
ParityArg activation(ParityArg arg) {
  arg.activation = true;
  return arg;
}
ParityArg nf4(std::string name, int64_t elements, bool doubleQuant = true) {
  return {std::move(name),
          DType::U8,
          elements,
          doubleQuant ? Fill::Nf4 : Fill::Nf4NoDq,
          0,
          0,
          false};
}

void addNf4Params(KernelParams &p, bool doubleQuant) {
  p.set("w_block_size", int64_t(64));
  p.set("w_dq_block_size", int64_t(doubleQuant ? 256 : 0));
  p.set("w_dequant_dtype", std::string("BF16"));
}

void addDropout(KernelParams &p, std::vector<ParityArg> &args) {
  p.set("dropout", 0.1);
  p.set("dropout_stream", std::string("m.lora_A.weight#0"));
  p.set("dropout_seed", int64_t(7));
  args.push_back(value("step", 3, DType::I64));
}

/// linear_fwd / linear_grad_input / lora_grad over rows x [in -> out].
struct Linear {
  int64_t rows, in, out, rank;
  enum class Weight { F32, Bf16, Nf4, Nf4NoDq } weight;
  bool dropout = false;

  KernelParams base() const {
    KernelParams p = params({{"rows", rows},
                             {"in", in},
                             {"out", out},
                             {"rank", rank},
                             {"scaling", 2.0}});
    bool quantized = weight == Weight::Nf4 || weight == Weight::Nf4NoDq;
    p.set("w_dtype", std::string(quantized               ? "NF4"
                                 : weight == Weight::F32 ? "F32"
                                                         : "BF16"));
    if (quantized)
      addNf4Params(p, weight == Weight::Nf4);
    return p;
  }
  ParityArg w() const {
    if (weight == Weight::Nf4 || weight == Weight::Nf4NoDq)
      return nf4("w", out * in, weight == Weight::Nf4);
    double bound = 1.0 / std::sqrt(double(in));
    return input("w", out * in, bound,
                 weight == Weight::F32 ? DType::F32 : DType::BF16);
  }
  // LoRA A and B both random (B is zero only at the very start).
  ParityArg a() const { return input("a", rank * in, 0.2); }
  ParityArg b() const { return input("b", out * rank, 0.2); }

  ParityCase forward(std::string name) const {
    ParityCase c{std::move(name),
                 std::string(abi::kLinearFwd),
                 base(),
                 {},
                 kGemmTolerance};
    c.args = {activation(input("x", rows * in)), w()};
    if (rank > 0)
      c.args.insert(c.args.end(),
                    {a(), b(), activation(output("t_ws", rows * rank))});
    c.args.push_back(activation(output("y", rows * out)));
    if (dropout)
      addDropout(c.params, c.args);
    return c;
  }
  ParityCase gradInput(std::string name, bool accumulate) const {
    ParityCase c{std::move(name),
                 std::string(abi::kLinearGradInput),
                 base(),
                 {},
                 kGemmTolerance};
    c.params.set("accumulate", int64_t(accumulate));
    c.args = {activation(input("dy", rows * out)), w()};
    if (rank > 0)
      c.args.insert(c.args.end(),
                    {a(), b(), activation(output("dt_ws", rows * rank))});
    c.args.push_back(activation(accumulate ? inOut("dx", rows * in)
                                           : output("dx", rows * in)));
    if (dropout)
      addDropout(c.params, c.args);
    return c;
  }
  ParityCase loraGrad(std::string name, bool accumulate) const {
    KernelParams p = params({{"rows", rows},
                             {"in", in},
                             {"out", out},
                             {"rank", rank},
                             {"scaling", 2.0},
                             {"accumulate", int64_t(accumulate)}});
    ParityCase c{
        std::move(name), std::string(abi::kLoraGrad), p, {}, kGemmTolerance};
    auto grad = [&](std::string n, int64_t elements) {
      return accumulate ? inOut(std::move(n), elements)
                        : output(std::move(n), elements);
    };
    c.args = {activation(input("dy", rows * out)),
              activation(input("x", rows * in)),
              a(),
              b(),
              activation(input("t_ws", rows * rank)),
              activation(input("dt_ws", rows * rank)),
              grad("da", rank * in),
              grad("db", out * rank)};
    if (dropout)
      addDropout(c.params, c.args);
    return c;
  }
};

void addLinearCases(std::vector<ParityCase> &cases) {
  using W = Linear::Weight;
  Linear nf4Lora{kRows, kHidden, kInter, kRank, W::Nf4};
  Linear down{kRows, kInter, kHidden, kRank, W::Nf4NoDq};
  Linear dropout{kRows, kHidden, kInter, kRank, W::Bf16, true};
  Linear head{kRows, kHidden, kVocab, 0, W::F32};
  Linear wide{64, 4096, 512, 16, W::Nf4};
  // r = 4: the LoRA GEMMs' K (or N) is half a vector of 8 and a partial tile.
  Linear rank4{kRows, kHidden, kInter, 4, W::Nf4};
  cases.push_back(nf4Lora.forward("linear_fwd_nf4_lora"));
  cases.push_back(rank4.forward("linear_fwd_nf4_rank4"));
  cases.push_back(
      rank4.gradInput("linear_grad_input_nf4_rank4_accumulate", true));
  cases.push_back(down.forward("linear_fwd_nf4_f32_absmax_down"));
  cases.push_back(dropout.forward("linear_fwd_bf16_dropout"));
  cases.push_back(head.forward("linear_fwd_lm_head"));
  cases.push_back(wide.forward("linear_fwd_nf4_k4096"));
  cases.push_back(nf4Lora.gradInput("linear_grad_input_nf4", false));
  cases.push_back(nf4Lora.gradInput("linear_grad_input_nf4_accumulate", true));
  cases.push_back(dropout.gradInput("linear_grad_input_dropout", false));
  cases.push_back(head.gradInput("linear_grad_input_lm_head", false));
  cases.push_back(wide.gradInput("linear_grad_input_nf4_k512", false));
  cases.push_back(nf4Lora.loraGrad("lora_grad", false));
  cases.push_back(nf4Lora.loraGrad("lora_grad_accumulate", true));
  cases.push_back(dropout.loraGrad("lora_grad_dropout", false));
}

/// One attention shape: grouped-query (kv < heads), head_dim 32/40/64/128,
/// sequences that are not a multiple of the 32-row FMA tiles nor of the
/// tensor-core path's 64-row blocks (40, 45, 130), and 160: several 64-row
/// blocks, the causal diagonal inside a key tile.
struct AttentionShape {
  int64_t heads, kvHeads, headDim, seq;
  bool causal;
};

void addAttentionCases(std::vector<ParityCase> &cases) {
  for (AttentionShape s : {AttentionShape{4, 2, 32, kSeq, true},
                           AttentionShape{2, 2, 128, kSeq, true},
                           AttentionShape{4, 1, 40, 45, false},
                           AttentionShape{4, 2, 64, 160, true},
                           AttentionShape{2, 1, 128, 130, true}}) {
    std::string shape = "_h" + std::to_string(s.heads) + "_kv" +
                        std::to_string(s.kvHeads) + "_d" +
                        std::to_string(s.headDim) + "_s" +
                        std::to_string(s.seq) + (s.causal ? "" : "_not_causal");
    KernelParams p = params({{"batch", kBatch},
                             {"seq", s.seq},
                             {"heads", s.heads},
                             {"kv_heads", s.kvHeads},
                             {"head_dim", s.headDim},
                             {"scale", 1.0 / std::sqrt(double(s.headDim))},
                             {"causal", int64_t(s.causal)}});
    int64_t rows = kBatch * s.seq;
    int64_t q = rows * s.heads * s.headDim, kv = rows * s.kvHeads * s.headDim;
    cases.push_back({"attention_fwd" + shape,
                     std::string(abi::kAttentionFwd),
                     p,
                     {activation(input("q", q)), activation(input("k", kv)),
                      activation(input("v", kv)), activation(output("o", q))}});
    for (bool accumulate : {false, true}) {
      KernelParams bwd = p;
      bwd.set("accumulate", int64_t(accumulate));
      auto grad = [&](std::string n, int64_t elements) {
        return activation(accumulate ? inOut(std::move(n), elements)
                                     : output(std::move(n), elements));
      };
      ParityArg o{"o", DType::F32, q, Fill::Attention, 0, 0, false, true};
      cases.push_back(
          {"attention_bwd" + shape + (accumulate ? "_accumulate" : ""),
           std::string(abi::kAttentionBwd),
           bwd,
           {activation(input("do", q)), activation(input("q", q)),
            activation(input("k", kv)), activation(input("v", kv)), o,
            grad("dq", q), grad("dk", kv), grad("dv", kv)}});
    }
  }
}

void addNormRopeCases(std::vector<ParityCase> &cases) {
  int64_t n = kRows * kHidden;
  cases.push_back({"embedding_fwd",
                   std::string(abi::kEmbeddingFwd),
                   params({{"rows", kRows},
                           {"vocab", kVocab},
                           {"hidden", kHidden},
                           {"w_dtype", std::string("BF16")}}),
                   {input("table", kVocab * kHidden, 1.0, DType::BF16),
                    {"tokens", DType::I32, kRows, Fill::Tokens, 0, kVocab},
                    activation(output("out", n))}});
  KernelParams norm = params({{"rows", kRows},
                              {"hidden", kHidden},
                              {"eps", 1e-5},
                              {"w_dtype", std::string("F32")}});
  cases.push_back({"rms_norm_fwd",
                   std::string(abi::kRmsNormFwd),
                   norm,
                   {activation(input("x", n)), input("w", kHidden),
                    activation(output("y", n))}});
  for (bool accumulate : {false, true}) {
    KernelParams bwd = norm;
    bwd.set("accumulate", int64_t(accumulate));
    cases.push_back(
        {std::string("rms_norm_bwd") + (accumulate ? "_accumulate" : ""),
         std::string(abi::kRmsNormBwd),
         bwd,
         {activation(input("dy", n)), activation(input("x", n)),
          input("w", kHidden),
          activation(accumulate ? inOut("dx", n) : output("dx", n))}});
  }
  for (bool llama3 : {false, true})
    for (bool inverse : {false, true}) {
      KernelParams p =
          params({{"batch", kBatch},
                  {"seq", kSeq},
                  {"heads", int64_t(4)},
                  {"head_dim", int64_t(32)},
                  {"inverse", int64_t(inverse)},
                  {"theta", llama3 ? 500000.0 : 10000.0},
                  {"rope_type", std::string(llama3 ? "llama3" : "default")}});
      if (llama3) {
        p.set("factor", 8.0);
        p.set("low_freq_factor", 1.0);
        p.set("high_freq_factor", 4.0);
        p.set("original_max_position", 8192.0);
      }
      cases.push_back(
          {std::string("rope_") + (llama3 ? "llama3" : "default") +
               (inverse ? "_inverse" : ""),
           std::string(abi::kRope),
           p,
           {activation(input("x", n)), activation(output("y", n))}});
    }
}

void addElementwiseCases(std::vector<ParityCase> &cases) {
  int64_t n = kRows * kInter;
  cases.push_back(
      {"silu_fwd",
       std::string(abi::kSiluFwd),
       params({{"n", n}}),
       {activation(input("x", n, 4.0)), activation(output("y", n))}});
  for (bool accumulate : {false, true})
    cases.push_back(
        {std::string("silu_bwd") + (accumulate ? "_accumulate" : ""),
         std::string(abi::kSiluBwd),
         params({{"n", n}, {"accumulate", int64_t(accumulate)}}),
         {activation(input("dy", n)), activation(input("x", n, 4.0)),
          activation(accumulate ? inOut("dx", n) : output("dx", n))}});
  for (const char *op : {"add", "mul"})
    cases.push_back(
        {op,
         op,
         params({{"n", n + 3}}),
         {activation(input("a", n + 3)), activation(input("b", n + 3)),
          activation(output("y", n + 3))}});
  cases.push_back({"cast_f32_bf16",
                   std::string(abi::kCast),
                   params({{"n", n + 1},
                           {"from", std::string("F32")},
                           {"to", std::string("BF16")}}),
                   {input("in", n + 1), output("out", n + 1, DType::BF16)}});
  cases.push_back({"cast_bf16_f32",
                   std::string(abi::kCast),
                   params({{"n", n},
                           {"from", std::string("BF16")},
                           {"to", std::string("F32")}}),
                   {input("in", n, 1.0, DType::BF16), output("out", n)}});
  cases.push_back({"fill",
                   std::string(abi::kFill),
                   params({{"n", n + 5}, {"value", 0.25}}),
                   {activation(output("out", n + 5))}});
  for (bool doubleQuant : {true, false})
    cases.push_back(
        {std::string("dequantize_nf4") + (doubleQuant ? "" : "_f32_absmax"),
         std::string(abi::kDequantizeNf4),
         [&] {
           KernelParams p =
               params({{"n", kInter * kHidden}, {"to", std::string("F32")}});
           addNf4Params(p, doubleQuant);
           return p;
         }(),
         {nf4("w", kInter * kHidden, doubleQuant),
          output("out", kInter * kHidden)}});
}

void addLossOptimizerCases(std::vector<ParityCase> &cases) {
  ParityArg logits = activation(input("logits", kRows * kVocab, 4.0));
  ParityArg labels{"labels", DType::I32, kRows, Fill::Labels, 0, kVocab};
  for (bool normalizer : {false, true}) {
    KernelParams p = params({{"batch", kBatch},
                             {"seq", kSeq},
                             {"vocab", kVocab},
                             {"ignore_index", int64_t(-100)},
                             {"has_normalizer", int64_t(normalizer)}});
    std::string suffix = normalizer ? "_normalizer" : "";
    std::vector<ParityArg> fwd = {logits, labels};
    std::vector<ParityArg> bwd = {logits, labels, value("dloss", 0.5)};
    if (normalizer) {
      fwd.push_back(value("normalizer", 37.0));
      bwd.push_back(value("normalizer", 37.0));
    }
    fwd.push_back(output("loss", 1));
    bwd.push_back(activation(output("dlogits", kRows * kVocab)));
    cases.push_back({"cross_entropy_fwd" + suffix,
                     std::string(abi::kCrossEntropyFwd), p, fwd, 1e-4});
    cases.push_back({"cross_entropy_bwd" + suffix,
                     std::string(abi::kCrossEntropyBwd), p, bwd, 1e-4});
  }
  cases.push_back(
      {"count_targets",
       std::string(abi::kCountTargets),
       params(
           {{"batch", kBatch}, {"seq", kSeq}, {"ignore_index", int64_t(-100)}}),
       {labels, output("count", 1)},
       0.0});
  cases.push_back({"scalar_binary_div",
                   std::string(abi::kScalarBinary),
                   params({{"op", std::string("div")}}),
                   {value("a", 3.0), value("b", 7.0), output("out", 1)},
                   0.0});
  cases.push_back(
      {"clip_coefficient",
       std::string(abi::kClipCoefficient),
       KernelParams(),
       {value("norm", 5.0), value("max_norm", 1.0), output("out", 1)},
       0.0});
  std::vector<int64_t> sizes = {1000, 33, 40000};
  cases.push_back({"global_norm",
                   std::string(abi::kGlobalNorm),
                   params({{"count", int64_t(sizes.size())}, {"sizes", sizes}}),
                   {input("g0", sizes[0]), input("g1", sizes[1]),
                    input("g2", sizes[2]), output("norm", 1)},
                   1e-5});
  int64_t n = kRank * kInter + 3;
  cases.push_back(
      {"adamw",
       std::string(abi::kAdamW),
       params({{"n", n}, {"beta1", 0.9}, {"beta2", 0.999}, {"epsilon", 1e-8}}),
       {inOut("p", n),
        input("g", n),
        inOut("m", n, 0.1),
        {"v", DType::F32, n, Fill::Positive, 0.01, 0, true},
        value("grad_scale", 0.5),
        value("lr", 1e-3),
        value("step", 3, DType::I64),
        value("weight_decay", 0.01)},
       1e-5});
}

/// `c` with bf16 activations, or nothing where it has no activation buffer
/// (the optimizer, scalar, cast, count and NF4 kernels never read T).
std::optional<ParityCase> bf16Variant(const ParityCase &c) {
  // A `dtype` parameter overrides T (an elementwise kernel summing f32
  // gradients in a bf16 program): such a case has no bf16 variant.
  if (c.params.getString("dtype") ||
      std::none_of(c.args.begin(), c.args.end(),
                   [](const ParityArg &arg) { return arg.activation; }))
    return std::nullopt;
  ParityCase variant = c;
  variant.name += kBf16Suffix;
  variant.activationType = "bf16";
  return variant;
}

} // namespace

std::vector<ParityCase> parityCases() {
  std::vector<ParityCase> cases;
  addNormRopeCases(cases);
  addLinearCases(cases);
  addAttentionCases(cases);
  addElementwiseCases(cases);
  addLossOptimizerCases(cases);
  size_t f32Cases = cases.size();
  for (size_t i = 0; i < f32Cases; ++i)
    if (std::optional<ParityCase> variant = bf16Variant(cases[i]))
      cases.push_back(std::move(*variant));
  return cases;
}

uint64_t argBytes(const ParityArg &arg) {
  if (arg.fill == Fill::Nf4 || arg.fill == Fill::Nf4NoDq)
    return uint64_t(format::Nf4Layout::compute(arg.elements, 64,
                                               arg.fill == Fill::Nf4 ? 256 : 0)
                        ->totalBytes);
  return uint64_t(arg.elements) * format::dtypeSize(arg.dtype);
}

ParityArg onTheDevice(const ParityCase &c, const ParityArg &arg) {
  ParityArg device = arg;
  if (arg.activation && c.activationType == "bf16")
    device.dtype = DType::BF16;
  return device;
}

double toleranceOf(const ParityCase &c, const ParityArg &arg) {
  if (onTheDevice(c, arg).dtype == arg.dtype)
    return c.tolerance;
  return std::max(c.tolerance, kBf16Tolerance);
}

} // namespace qlora::cuda::parity
