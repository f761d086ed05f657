//===- LinearCases.cpp - compile cases of the linear kernels --------------===//
//
// linear_fwd, linear_grad_input and lora_grad as the lowering emits them for
// a model: NF4 (double quantized or with f32 absmax) and plain frozen
// weights (at every projection's shape, as --nf4-gemm dequantize emits
// them), the LM head (rank 0, out = vocab), down_proj (in =
// intermediate), LoRA dropout, accumulate, and the rank-0 launches that fill
// a workspace with B ([out, r], f32) as their weight.
//
//===----------------------------------------------------------------------===//
#include "test/kernels/CudaKernelCases.h"

namespace qlora::cuda::test {

std::vector<Case> linearCases(const Shapes &s, const std::string &p) {
  const int64_t rows = s.batch * s.seq;
  auto linear = [&](int64_t in, int64_t out, int64_t rank,
                    const std::string &wDtype) {
    return makeParams({{"rows", rows},
                       {"in", in},
                       {"out", out},
                       {"rank", rank},
                       {"scaling", 2.0},
                       {"w_dtype", wDtype}});
  };
  auto nf4 = [&](KernelParams params, bool doubleQuant) {
    params.set("w_block_size", int64_t(64));
    params.set("w_dq_block_size", int64_t(doubleQuant ? 256 : 0));
    params.set("w_dequant_dtype", std::string(doubleQuant ? "BF16" : "F32"));
    return params;
  };
  auto withDropout = [](KernelParams params) {
    params.set("dropout", 0.1);
    params.set("dropout_stream", std::string("layers.0.q_proj.lora_A#0"));
    params.set("dropout_seed", int64_t(1234));
    return params;
  };
  auto accumulating = [](KernelParams params, int64_t accumulate) {
    params.set("accumulate", accumulate);
    return params;
  };
  const std::string nf4Type = "NF4";
  const int64_t h = s.hidden, mlp = s.intermediate, r = s.rank;
  KernelParams loraGrad = makeParams({{"rows", rows},
                                      {"in", h},
                                      {"out", mlp},
                                      {"rank", r},
                                      {"scaling", 2.0},
                                      {"accumulate", int64_t(0)}});
  return {
      {p + "linear_fwd_nf4", abi::kLinearFwd,
       nf4(linear(h, h, r, nf4Type), true)},
      {p + "linear_fwd_nf4_f32_absmax", abi::kLinearFwd,
       nf4(linear(h, mlp, r, nf4Type), false)},
      {p + "linear_fwd_nf4_down_proj", abi::kLinearFwd,
       nf4(linear(mlp, h, r, nf4Type), true)},
      {p + "linear_fwd_nf4_dropout", abi::kLinearFwd,
       withDropout(nf4(linear(h, mlp, r, nf4Type), true))},
      {p + "linear_fwd_lm_head", abi::kLinearFwd,
       linear(h, s.vocab, 0, s.weightType)},
      {p + "linear_fwd_plain_lora", abi::kLinearFwd,
       linear(h, h, r, s.weightType)},
      // Plain weights at every projection's shape: --nf4-gemm dequantize
      // turns each NF4 linear into one.
      {p + "linear_fwd_plain_lora_mlp", abi::kLinearFwd,
       linear(h, mlp, r, s.weightType)},
      {p + "linear_fwd_plain_lora_down_proj", abi::kLinearFwd,
       linear(mlp, h, r, s.weightType)},
      {p + "linear_fwd_workspace", abi::kLinearFwd, linear(h, r, 0, "F32")},
      {p + "linear_grad_input_nf4", abi::kLinearGradInput,
       accumulating(nf4(linear(h, mlp, r, nf4Type), true), 0)},
      {p + "linear_grad_input_nf4_accumulate", abi::kLinearGradInput,
       accumulating(nf4(linear(mlp, h, r, nf4Type), false), 1)},
      {p + "linear_grad_input_nf4_dropout", abi::kLinearGradInput,
       accumulating(withDropout(nf4(linear(h, h, r, nf4Type), true)), 0)},
      {p + "linear_grad_input_lm_head", abi::kLinearGradInput,
       accumulating(linear(h, s.vocab, 0, s.weightType), 1)},
      {p + "linear_grad_input_plain_lora", abi::kLinearGradInput,
       accumulating(linear(h, h, r, s.weightType), 0)},
      {p + "linear_grad_input_plain_lora_mlp", abi::kLinearGradInput,
       accumulating(linear(h, mlp, r, s.weightType), 0)},
      {p + "linear_grad_input_plain_lora_down_proj", abi::kLinearGradInput,
       accumulating(linear(mlp, h, r, s.weightType), 1)},
      {p + "linear_grad_input_workspace", abi::kLinearGradInput,
       accumulating(linear(r, mlp, 0, "F32"), 0)},
      {p + "lora_grad", abi::kLoraGrad, loraGrad},
      {p + "lora_grad_accumulate", abi::kLoraGrad, accumulating(loraGrad, 1)},
      {p + "lora_grad_dropout", abi::kLoraGrad, withDropout(loraGrad)},
      {p + "lora_grad_down_proj", abi::kLoraGrad,
       makeParams({{"rows", rows},
                   {"in", mlp},
                   {"out", h},
                   {"rank", r},
                   {"scaling", 2.0},
                   {"accumulate", int64_t(1)}})},
  };
}

} // namespace qlora::cuda::test
