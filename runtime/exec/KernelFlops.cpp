//===- KernelFlops.cpp - The arithmetic a kernel launch stands for --------===//
#include "runtime/exec/KernelFlops.h"

#include "runtime/format/KernelAbi.h"

namespace qlora::exec {

std::optional<double> modelFlops(std::string_view templateName,
                                 const format::KernelParams &params) {
  auto number = [&](std::string_view name) {
    return params.getFloat(name).value_or(-1.0);
  };
  if (templateName == kernels::kLinearFwd ||
      templateName == kernels::kLinearGradInput ||
      templateName == kernels::kLoraGrad) {
    double rows = number("rows"), in = number("in"), out = number("out");
    double rank = params.getFloat("rank").value_or(0.0);
    if (rows < 0 || in < 0 || out < 0)
      return std::nullopt;
    double lora = 2 * rows * rank * (in + out);
    return templateName == kernels::kLoraGrad ? lora
                                              : 2 * rows * in * out + lora;
  }
  if (templateName == kernels::kAttentionFwd ||
      templateName == kernels::kAttentionBwd) {
    double batch = number("batch"), seq = number("seq"),
           heads = number("heads"), dim = number("head_dim");
    if (batch < 0 || seq < 0 || heads < 0 || dim < 0)
      return std::nullopt;
    double forward = 4 * batch * heads * seq * seq * dim *
                     (params.getInt("causal").value_or(0) ? 0.5 : 1.0);
    return templateName == kernels::kAttentionFwd ? forward : 2.5 * forward;
  }
  return std::nullopt;
}

} // namespace qlora::exec
