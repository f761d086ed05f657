//===- LossKernels.cpp - cross_entropy_fwd/bwd and count_targets ----------===//
//
// transformers' ForCausalLMLoss: position t of each sequence is scored
// against labels[t + 1], the last position against nothing, labels equal to
// ignore_index are skipped. Per row, torch's CPU log_softmax: max, then the
// sum of exp(x - max) (in double here), logp = (x - max) - log(sum) in float.
// Row losses are summed in row order in double and rounded to float, then
// divided in float by the target count (reduction 'mean'; 0 targets give
// NaN like torch) or by the normalizer (reduction 'sum' / num_items).
//
// The backward pass is torch's nll_loss + log_softmax backward:
// g = -(dloss / count) on the target, dlogits = onehot*g - exp(logp)*g.
//
// A label outside [0, vocab) other than ignore_index (torch raises; validate
// cannot see data) makes the loss NaN and its row of dlogits NaN.
//
//===----------------------------------------------------------------------===//
#include "runtime/backends/cpu/KernelSupport.h"
#include "runtime/format/KernelAbi.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace qlora::cpu::detail {
namespace {

using format::DType;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct LossShape {
  int64_t batch, seq, vocab, ignoreIndex;
  bool hasNormalizer;

  /// The label that row `row` of the logits is scored against; `scored` is
  /// false for a sequence's last position and for ignore_index.
  int64_t target(const int32_t *labels, int64_t row, bool &scored) const {
    scored = row % seq != seq - 1 && labels[row + 1] != ignoreIndex;
    return scored ? labels[row + 1] : 0;
  }
  bool inRange(int64_t label) const { return label >= 0 && label < vocab; }
};

std::string validateLoss(std::string_view kernel,
                         const format::KernelParams &params,
                         std::span<const size_t> argBytes, bool backward) {
  Signature sig(kernel, params, argBytes);
  int64_t batch = sig.dim("batch"), seq = sig.dim("seq");
  int64_t vocab = sig.dim("vocab");
  sig.integer("ignore_index");
  bool hasNormalizer = sig.flag("has_normalizer");
  sig.arg("logits", {batch, seq, vocab});
  sig.arg("labels", {batch, seq}, DType::I32);
  if (backward)
    sig.arg("dloss", {});
  if (hasNormalizer)
    sig.arg("normalizer", {});
  if (backward)
    sig.arg("dlogits", {batch, seq, vocab});
  else
    sig.arg("loss", {});
  return sig.finish();
}

LossShape lossShape(const KernelCall &call) {
  return {intParam(call, "batch"), intParam(call, "seq"),
          intParam(call, "vocab"), intParam(call, "ignore_index"),
          intParam(call, "has_normalizer") == 1};
}

/// max and log(sum(exp(x - max))) of one row of logits.
struct RowStats {
  float max, logSum;
};

RowStats rowStats(const float *x, int64_t vocab) {
  float max = *std::max_element(x, x + vocab);
  double sum = 0;
  for (int64_t j = 0; j < vocab; ++j)
    sum += std::exp(x[j] - max);
  return {max, float(std::log(sum))};
}

int64_t countTargets(const LossShape &s, const int32_t *labels) {
  int64_t count = 0;
  bool scored;
  for (int64_t row = 0; row < s.batch * s.seq; ++row) {
    s.target(labels, row, scored);
    count += scored;
  }
  return count;
}

void runCrossEntropyFwd(const KernelCall &call) {
  LossShape s = lossShape(call);
  const float *logits = argAs<const float>(call, 0);
  const auto *labels = argAs<const int32_t>(call, 1);
  float *loss = argAs<float>(call, s.hasNormalizer ? 3 : 2);
  int64_t rows = s.batch * s.seq;
  // Per-row results first, summed in row order below: no thread count
  // dependence.
  std::vector<float> rowLoss(size_t(rows), 0.0f);
  call.pool.parallelFor(
      0, rows, grainFor(s.vocab), [&](int64_t lo, int64_t hi) {
        bool scored;
        for (int64_t row = lo; row < hi; ++row) {
          int64_t label = s.target(labels, row, scored);
          if (!scored)
            continue;
          if (!s.inRange(label)) {
            rowLoss[size_t(row)] = kNaN;
            continue;
          }
          const float *x = logits + row * s.vocab;
          RowStats stats = rowStats(x, s.vocab);
          rowLoss[size_t(row)] = -((x[label] - stats.max) - stats.logSum);
        }
      });
  double sum = 0;
  for (float value : rowLoss)
    sum += value;
  float denominator = s.hasNormalizer ? *argAs<const float>(call, 2)
                                      : float(countTargets(s, labels));
  *loss = float(sum) / denominator;
}

void runCrossEntropyBwd(const KernelCall &call) {
  LossShape s = lossShape(call);
  const float *logits = argAs<const float>(call, 0);
  const auto *labels = argAs<const int32_t>(call, 1);
  float dloss = *argAs<const float>(call, 2);
  float *dlogits = argAs<float>(call, s.hasNormalizer ? 4 : 3);
  float denominator = s.hasNormalizer ? *argAs<const float>(call, 3)
                                      : float(countTargets(s, labels));
  float g = -(dloss / denominator);
  call.pool.parallelFor(
      0, s.batch * s.seq, grainFor(s.vocab), [&](int64_t lo, int64_t hi) {
        bool scored;
        for (int64_t row = lo; row < hi; ++row) {
          int64_t label = s.target(labels, row, scored);
          float *out = dlogits + row * s.vocab;
          if (!scored || !s.inRange(label)) {
            std::fill_n(out, s.vocab, scored ? kNaN : 0.0f);
            continue;
          }
          const float *x = logits + row * s.vocab;
          RowStats stats = rowStats(x, s.vocab);
          for (int64_t j = 0; j < s.vocab; ++j) {
            float p = std::exp((x[j] - stats.max) - stats.logSum);
            out[j] = (j == label ? g : 0.0f) - p * g;
          }
        }
      });
}

std::string validateCountTargets(const format::KernelParams &params,
                                 std::span<const size_t> argBytes) {
  Signature sig(kernels::kCountTargets, params, argBytes);
  int64_t batch = sig.dim("batch"), seq = sig.dim("seq");
  sig.integer("ignore_index");
  sig.arg("labels", {batch, seq}, DType::I32);
  sig.arg("count", {});
  return sig.finish();
}

void runCountTargets(const KernelCall &call) {
  LossShape s{intParam(call, "batch"), intParam(call, "seq"), 1,
              intParam(call, "ignore_index"), false};
  *argAs<float>(call, 1) =
      float(countTargets(s, argAs<const int32_t>(call, 0)));
}

using Params = format::KernelParams;
using Bytes = std::span<const size_t>;

constexpr NamedKernel kKernels[] = {
    {kernels::kCrossEntropyFwd,
     {[](const Params &p, Bytes b) {
        return validateLoss(kernels::kCrossEntropyFwd, p, b, false);
      },
      runCrossEntropyFwd}},
    {kernels::kCrossEntropyBwd,
     {[](const Params &p, Bytes b) {
        return validateLoss(kernels::kCrossEntropyBwd, p, b, true);
      },
      runCrossEntropyBwd}},
    {kernels::kCountTargets, {validateCountTargets, runCountTargets}},
};

} // namespace

std::span<const NamedKernel> lossKernels() { return kKernels; }

} // namespace qlora::cpu::detail
