//===- NormRopeKernels.cpp - rms_norm_fwd/bwd and rope --------------------===//
//
// rms_norm as transformers' LlamaRMSNorm in fp32: x*x rounded to float, summed
// (in double, so that the sum is as close to torch's cascade sum as we can
// get), the sum rounded to float and divided by `hidden` in float (torch's
// mean), rsqrt as 1/sqrt in float, then w * (x * r). The backward pass is the
// analytic gradient in double, rounded once.
//
// rope as LlamaRotaryEmbedding + apply_rotary_pos_emb: inv_freq built with
// the same float operations as `_compute_default_rope_parameters` (and
// `_compute_llama3_parameters`), freqs = float(pos) * inv_freq, cos/sin in
// float, y = x*cos + rotate_half(x)*sin with each product rounded.
//
//===----------------------------------------------------------------------===//
#include "runtime/backends/cpu/Float16.h"
#include "runtime/backends/cpu/KernelSupport.h"
#include "runtime/format/KernelAbi.h"

#include <cmath>
#include <numbers>

namespace qlora::cpu::detail {
namespace {

using format::DType;

//===- rms_norm -----------------------------------------------------------===//

std::string validateRmsNorm(std::string_view kernel,
                            const format::KernelParams &params,
                            std::span<const size_t> argBytes, bool backward) {
  Signature sig(kernel, params, argBytes);
  int64_t rows = sig.dim("rows"), hidden = sig.dim("hidden");
  double eps = sig.real("eps");
  sig.check(eps >= 0,
            "parameter 'eps' must be >= 0, found " + std::to_string(eps));
  DType wType = sig.floatType("w_dtype");
  if (backward) {
    sig.flag("accumulate");
    sig.arg("dy", {rows, hidden});
  }
  sig.arg("x", {rows, hidden});
  sig.arg("w", {hidden}, wType);
  sig.arg(backward ? "dx" : "y", {rows, hidden});
  return sig.finish();
}

/// 1 / sqrt(mean(x^2) + eps) rounded as LlamaRMSNorm rounds it.
float rmsInverse(const float *x, int64_t hidden, float eps) {
  double sum = 0;
  for (int64_t i = 0; i < hidden; ++i) {
    float square = x[i] * x[i];
    sum += square;
  }
  float variance = float(sum) / float(hidden);
  return 1.0f / std::sqrt(variance + eps);
}

std::vector<float> widenedWeight(const KernelCall &call, size_t index,
                                 int64_t hidden) {
  std::vector<float> w(size_t(hidden), 0.0f);
  widenToFloat(call.args[index], dtypeParam(call, "w_dtype"), 0, w.size(),
               w.data());
  return w;
}

void runRmsNormFwd(const KernelCall &call) {
  int64_t rows = intParam(call, "rows"), hidden = intParam(call, "hidden");
  float eps = float(realParam(call, "eps"));
  const float *x = argAs<const float>(call, 0);
  std::vector<float> w = widenedWeight(call, 1, hidden);
  float *y = argAs<float>(call, 2);
  call.pool.parallelFor(0, rows, grainFor(hidden), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const float *xr = x + r * hidden;
      float *yr = y + r * hidden;
      float inverse = rmsInverse(xr, hidden, eps);
      for (int64_t i = 0; i < hidden; ++i)
        yr[i] = w[i] * (xr[i] * inverse);
    }
  });
}

void runRmsNormBwd(const KernelCall &call) {
  int64_t rows = intParam(call, "rows"), hidden = intParam(call, "hidden");
  float eps = float(realParam(call, "eps"));
  bool accumulate = intParam(call, "accumulate");
  const float *dy = argAs<const float>(call, 0);
  const float *x = argAs<const float>(call, 1);
  std::vector<float> w = widenedWeight(call, 2, hidden);
  float *dx = argAs<float>(call, 3);
  call.pool.parallelFor(0, rows, grainFor(hidden), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const float *xr = x + r * hidden, *dyr = dy + r * hidden;
      float *dxr = dx + r * hidden;
      // y = w*x*r with r = (mean(x^2)+eps)^-1/2:
      // dx = r*w*dy - x * r^3/hidden * sum(w*dy*x).
      double inverse = rmsInverse(xr, hidden, eps);
      double dot = 0;
      for (int64_t i = 0; i < hidden; ++i)
        dot += double(w[i]) * dyr[i] * xr[i];
      double coefficient = dot * inverse * inverse * inverse / double(hidden);
      for (int64_t i = 0; i < hidden; ++i) {
        auto grad =
            float(inverse * w[i] * dyr[i] - double(xr[i]) * coefficient);
        dxr[i] = accumulate ? dxr[i] + grad : grad;
      }
    }
  });
}

//===- rope ---------------------------------------------------------------===//

void ropeParams(Signature &sig) {
  double theta = sig.real("theta");
  sig.check(theta > 0, "parameter 'theta' must be > 0");
  std::string type = sig.oneOf("rope_type", {"default", "llama3"});
  if (type != "llama3")
    return;
  double factor = sig.real("factor");
  double low = sig.real("low_freq_factor"), high = sig.real("high_freq_factor");
  double original = sig.real("original_max_position");
  sig.check(factor > 0, "parameter 'factor' must be > 0");
  sig.check(low > 0 && high > 0 && low != high,
            "parameters 'low_freq_factor' and 'high_freq_factor' must be > 0 "
            "and differ");
  sig.check(original > 0, "parameter 'original_max_position' must be > 0");
}

std::string validateRope(const format::KernelParams &params,
                         std::span<const size_t> argBytes) {
  Signature sig(kernels::kRope, params, argBytes);
  int64_t batch = sig.dim("batch"), seq = sig.dim("seq");
  int64_t heads = sig.dim("heads"), headDim = sig.dim("head_dim");
  sig.check(headDim % 2 == 0, "parameter 'head_dim' must be even, found " +
                                  std::to_string(headDim));
  sig.flag("inverse");
  ropeParams(sig);
  sig.arg("x", {batch, seq, heads, headDim});
  sig.arg("y", {batch, seq, heads, headDim});
  return sig.finish();
}

/// inv_freq with the float roundings of transformers: `1.0 / (base **
/// (arange(0, dim, 2).float() / dim))` where `scalar / tensor` is
/// `tensor.reciprocal() * scalar` and Python scalars meet float tensors as
/// floats; then the llama3 adjustment, written op by op.
std::vector<float> ropeInverseFrequencies(const KernelCall &call,
                                          int64_t headDim) {
  auto base = float(realParam(call, "theta"));
  std::vector<float> invFreq(size_t(headDim / 2));
  for (size_t i = 0; i < invFreq.size(); ++i) {
    float exponent = float(int64_t(2 * i)) / float(headDim);
    invFreq[i] = 1.0f / std::pow(base, exponent);
  }
  if (*call.params.getString("rope_type") != "llama3")
    return invFreq;
  double factor = realParam(call, "factor");
  double low = realParam(call, "low_freq_factor");
  double high = realParam(call, "high_freq_factor");
  double original = realParam(call, "original_max_position");
  auto lowFreqWavelen = float(original / low);
  auto highFreqWavelen = float(original / high);
  auto twoPi = float(2 * std::numbers::pi);
  auto factorF = float(factor), lowF = float(low), originalF = float(original);
  auto spread = float(high - low);
  for (float &inv : invFreq) {
    float wavelen = (1.0f / inv) * twoPi;
    float llama = wavelen > lowFreqWavelen ? inv / factorF : inv;
    float smooth = ((1.0f / wavelen) * originalF - lowF) / spread;
    float smoothed = (1.0f - smooth) * llama / factorF + smooth * llama;
    bool medium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
    inv = medium ? smoothed : llama;
  }
  return invFreq;
}

void runRope(const KernelCall &call) {
  int64_t batch = intParam(call, "batch"), seq = intParam(call, "seq");
  int64_t heads = intParam(call, "heads"), headDim = intParam(call, "head_dim");
  bool inverse = intParam(call, "inverse");
  int64_t half = headDim / 2;
  std::vector<float> invFreq = ropeInverseFrequencies(call, headDim);
  std::vector<float> cosTable(size_t(seq * half)), sinTable(cosTable.size());
  call.pool.parallelFor(0, seq, grainFor(half), [&](int64_t lo, int64_t hi) {
    for (int64_t pos = lo; pos < hi; ++pos)
      for (int64_t i = 0; i < half; ++i) {
        float freq = float(pos) * invFreq[size_t(i)];
        cosTable[size_t(pos * half + i)] = std::cos(freq);
        sinTable[size_t(pos * half + i)] = std::sin(freq);
      }
  });
  const float *x = argAs<const float>(call, 0);
  float *y = argAs<float>(call, 1);
  // sin enters with the opposite sign in the transposed rotation:
  // dx = dy*cos + rotate_half^T(dy*sin), rotate_half^T(u) = cat(u2, -u1).
  float sign = inverse ? -1.0f : 1.0f;
  int64_t rows = batch * seq * heads;
  call.pool.parallelFor(0, rows, grainFor(headDim),
                        [&](int64_t lo, int64_t hi) {
                          for (int64_t row = lo; row < hi; ++row) {
                            int64_t pos = row / heads % seq;
                            const float *c = cosTable.data() + pos * half;
                            const float *s = sinTable.data() + pos * half;
                            const float *in = x + row * headDim;
                            float *out = y + row * headDim;
                            for (int64_t i = 0; i < half; ++i) {
                              // Read both halves first: y may be x.
                              float first = in[i], second = in[i + half];
                              float sine = sign * s[i];
                              out[i] = first * c[i] - second * sine;
                              out[i + half] = second * c[i] + first * sine;
                            }
                          }
                        });
}

using Params = format::KernelParams;
using Bytes = std::span<const size_t>;

constexpr NamedKernel kKernels[] = {
    {kernels::kRmsNormFwd,
     {[](const Params &p, Bytes b) {
        return validateRmsNorm(kernels::kRmsNormFwd, p, b, false);
      },
      runRmsNormFwd}},
    {kernels::kRmsNormBwd,
     {[](const Params &p, Bytes b) {
        return validateRmsNorm(kernels::kRmsNormBwd, p, b, true);
      },
      runRmsNormBwd}},
    {kernels::kRope, {validateRope, runRope}},
};

} // namespace

std::span<const NamedKernel> normRopeKernels() { return kKernels; }

} // namespace qlora::cpu::detail
