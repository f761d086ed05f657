//===- OptimizerKernels.cpp - adamw, global_norm, clip_coefficient --------===//
//
// adamw is torch.optim.AdamW's single-tensor path (foreach=False,
// amsgrad=False), op by op with torch's CPU roundings: Python scalars are
// doubles, combined in double, and become floats where they meet a float
// tensor; lerp_ with a small weight is an FMA (LerpKernel's vectorized
// path); addcmul/addcdiv compute self + (value * t1) op t2.
//
//   g = grad * grad_scale
//   p *= float(1 - lr * wd)                      (skipped when wd == 0)
//   m = fma(w, g - m, m), w = float(1 - beta1)   (m.lerp_(g, 1 - beta1))
//   v = v * float(beta2) + (float(1 - beta2) * g) * g
//   denom = sqrt(v) / float(sqrt(bc2)) + float(eps)
//   p = p + (float(-lr / bc1) * m) / denom
//   with bc1 = 1 - beta1^step, bc2 = 1 - beta2^step in double.
// step < 1 makes bc1 zero and p non-finite, as torch would.
//
// global_norm follows clip_grad_norm_: a norm per gradient (sum of squares
// in double over fixed chunks, added in chunk order, rounded to float), then
// the norm of those norms. clip_coefficient is `max_norm / (norm + 1e-6)`
// where `scalar / tensor` is `tensor.reciprocal() * scalar`, clamped to 1.
//
//===----------------------------------------------------------------------===//
#include "runtime/backends/cpu/KernelSupport.h"
#include "runtime/format/KernelAbi.h"

#include <algorithm>
#include <cmath>

namespace qlora::cpu::detail {
namespace {

using format::DType;

//===- adamw --------------------------------------------------------------===//

std::string validateAdamW(const format::KernelParams &params,
                          std::span<const size_t> argBytes) {
  Signature sig(kernels::kAdamW, params, argBytes);
  int64_t n = sig.dim("n");
  double beta1 = sig.real("beta1"), beta2 = sig.real("beta2");
  double epsilon = sig.real("epsilon");
  sig.check(beta1 >= 0 && beta1 < 1, "parameter 'beta1' must be in [0, 1)");
  sig.check(beta2 >= 0 && beta2 < 1, "parameter 'beta2' must be in [0, 1)");
  sig.check(epsilon >= 0, "parameter 'epsilon' must be >= 0");
  for (const char *name : {"p", "g", "m", "v"})
    sig.arg(name, {n});
  sig.arg("grad_scale", {});
  sig.arg("lr", {});
  sig.arg("step", {}, DType::I64);
  sig.arg("weight_decay", {});
  return sig.finish();
}

void runAdamW(const KernelCall &call) {
  double beta1 = realParam(call, "beta1"), beta2 = realParam(call, "beta2");
  double epsilon = realParam(call, "epsilon");
  float *p = argAs<float>(call, 0);
  const float *grad = argAs<const float>(call, 1);
  float *m = argAs<float>(call, 2), *v = argAs<float>(call, 3);
  float gradScale = *argAs<const float>(call, 4);
  double lr = *argAs<const float>(call, 5);
  auto step = double(*argAs<const int64_t>(call, 6));
  double weightDecay = *argAs<const float>(call, 7);

  auto decay = float(1.0 - lr * weightDecay);
  double biasCorrection1 = 1.0 - std::pow(beta1, step);
  double biasCorrection2 = 1.0 - std::pow(beta2, step);
  auto negStepSize = float(-(lr / biasCorrection1));
  auto biasCorrection2Sqrt = float(std::sqrt(biasCorrection2));
  auto lerpWeight = float(1.0 - beta1);
  auto beta2F = float(beta2), oneMinusBeta2 = float(1.0 - beta2);
  auto eps = float(epsilon);
  bool smallWeight = std::fabs(lerpWeight) < 0.5f;

  call.pool.parallelFor(
      0, intParam(call, "n"), 1 << 14, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) {
          float g = grad[i] * gradScale;
          float param = weightDecay != 0 ? p[i] * decay : p[i];
          float diff = g - m[i];
          float mi = smallWeight ? std::fma(lerpWeight, diff, m[i])
                                 : std::fma(lerpWeight - 1.0f, diff, g);
          float vi = v[i] * beta2F;
          vi = vi + oneMinusBeta2 * g * g;
          float denom = std::sqrt(vi) / biasCorrection2Sqrt + eps;
          p[i] = param + negStepSize * mi / denom;
          m[i] = mi;
          v[i] = vi;
        }
      });
}

//===- global_norm --------------------------------------------------------===//

std::string validateGlobalNorm(const format::KernelParams &params,
                               std::span<const size_t> argBytes) {
  Signature sig(kernels::kGlobalNorm, params, argBytes);
  int64_t count = sig.dim("count");
  std::vector<int64_t> sizes = sig.dims("sizes");
  sig.check(int64_t(sizes.size()) == count,
            "parameter 'sizes' must have 'count' (" + std::to_string(count) +
                ") entries, found " + std::to_string(sizes.size()));
  for (size_t i = 0; i < sizes.size(); ++i)
    sig.arg("g" + std::to_string(i), {sizes[i]});
  sig.arg("norm", {});
  return sig.finish();
}

void runGlobalNorm(const KernelCall &call) {
  constexpr int64_t kChunk = 1 << 14;
  std::vector<int64_t> sizes = *call.params.getInts("sizes");
  double total = 0;
  std::vector<double> partial;
  for (size_t t = 0; t < sizes.size(); ++t) {
    const float *g = argAs<const float>(call, t);
    int64_t chunks = (sizes[t] + kChunk - 1) / kChunk;
    partial.assign(size_t(chunks), 0.0);
    call.pool.parallelFor(0, sizes[t], kChunk, [&](int64_t lo, int64_t hi) {
      double sum = 0;
      for (int64_t i = lo; i < hi; ++i)
        sum += double(g[i]) * g[i];
      partial[size_t(lo / kChunk)] = sum;
    });
    double sum = 0;
    for (double value : partial)
      sum += value;
    auto norm = float(std::sqrt(sum));
    total += double(norm) * norm;
  }
  *argAs<float>(call, sizes.size()) = float(std::sqrt(total));
}

//===- clip_coefficient ---------------------------------------------------===//

std::string validateClipCoefficient(const format::KernelParams &params,
                                    std::span<const size_t> argBytes) {
  Signature sig(kernels::kClipCoefficient, params, argBytes);
  sig.arg("norm", {});
  sig.arg("max_norm", {});
  sig.arg("out", {});
  return sig.finish();
}

void runClipCoefficient(const KernelCall &call) {
  float norm = *argAs<const float>(call, 0);
  float maxNorm = *argAs<const float>(call, 1);
  float &out = *argAs<float>(call, 2);
  if (!(maxNorm > 0)) {
    out = 1.0f;
    return;
  }
  float coefficient = (1.0f / (norm + 1e-6f)) * maxNorm;
  // torch.clamp(max=1) keeps NaN.
  out = std::isnan(coefficient) ? coefficient : std::min(coefficient, 1.0f);
}

constexpr NamedKernel kKernels[] = {
    {kernels::kAdamW, {validateAdamW, runAdamW}},
    {kernels::kGlobalNorm, {validateGlobalNorm, runGlobalNorm}},
    {kernels::kClipCoefficient, {validateClipCoefficient, runClipCoefficient}},
};

} // namespace

std::span<const NamedKernel> optimizerKernels() { return kKernels; }

} // namespace qlora::cpu::detail
