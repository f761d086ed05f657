//===- AttentionKernels.cpp - attention_fwd and attention_bwd -------------===//
//
// transformers' eager attention on [B, S, H, D] tensors: scores = (q·kᵀ) *
// scale (the product rounded, then scaled), causal positions dropped (torch
// adds the dtype minimum, which exp turns into exact zeros), softmax as
// torch's CPU kernel (exp(x - max), times 1/sum; the sum in double), then
// P·v. Query head h reads kv head h / (heads / kv_heads), as repeat_kv does.
//
// Work is cut into blocks of kRowBlock query rows of one (batch, head);
// only the block's P (and dP) live in thread-local scratch, never S x S per
// head. The backward pass recomputes P, applies torch's softmax backward
// dS = P * (dP - sum(dP * P)), and runs one task per (batch, kv head), so the
// dk/dv sums over query heads and row blocks happen in one thread in a fixed
// order. o is validated but not read (sum(dP * P) equals rowsum(dO * O)).
//
//===----------------------------------------------------------------------===//
#include "runtime/backends/cpu/Gemm.h"
#include "runtime/backends/cpu/KernelSupport.h"
#include "runtime/format/KernelAbi.h"

#include <algorithm>
#include <cmath>

namespace qlora::cpu::detail {
namespace {

constexpr int64_t kRowBlock = 64;

struct AttentionShape {
  int64_t batch, seq, heads, kvHeads, headDim;
  float scale;
  bool causal;

  int64_t group() const { return heads / kvHeads; }
  int64_t blocks() const { return (seq + kRowBlock - 1) / kRowBlock; }
  /// Element offset of [b, s, h, 0] in a tensor with `n` heads.
  int64_t offset(int64_t b, int64_t s, int64_t h, int64_t n) const {
    return ((b * seq + s) * n + h) * headDim;
  }
};

std::string validateAttention(std::string_view kernel,
                              const format::KernelParams &params,
                              std::span<const size_t> argBytes, bool backward) {
  Signature sig(kernel, params, argBytes);
  int64_t batch = sig.dim("batch"), seq = sig.dim("seq");
  int64_t heads = sig.dim("heads"), kvHeads = sig.dim("kv_heads");
  int64_t headDim = sig.dim("head_dim");
  sig.check(heads % kvHeads == 0, "parameter 'heads' (" +
                                      std::to_string(heads) +
                                      ") must be a multiple of 'kv_heads' (" +
                                      std::to_string(kvHeads) + ")");
  sig.real("scale");
  sig.flag("causal");
  if (backward)
    sig.flag("accumulate");
  std::initializer_list<int64_t> qShape = {batch, seq, heads, headDim};
  std::initializer_list<int64_t> kvShape = {batch, seq, kvHeads, headDim};
  if (backward)
    sig.arg("do", qShape);
  sig.arg("q", qShape);
  sig.arg("k", kvShape);
  sig.arg("v", kvShape);
  sig.arg("o", qShape);
  if (backward) {
    sig.arg("dq", qShape);
    sig.arg("dk", kvShape);
    sig.arg("dv", kvShape);
  }
  return sig.finish();
}

AttentionShape attentionShape(const KernelCall &call) {
  return {intParam(call, "batch"),      intParam(call, "seq"),
          intParam(call, "heads"),      intParam(call, "kv_heads"),
          intParam(call, "head_dim"),   float(realParam(call, "scale")),
          intParam(call, "causal") == 1};
}

/// P[rows x keys] for query rows [i0, i0 + rows) of head h in batch b, where
/// keys = causal ? i0 + rows : seq; masked entries are 0.
void attentionProbs(const AttentionShape &s, const float *q, const float *k,
                    int64_t b, int64_t h, int64_t i0, int64_t rows,
                    int64_t keys, float *p) {
  int64_t g = h / s.group();
  GemmSpec scores{rows,
                  keys,
                  s.headDim,
                  {q + s.offset(b, i0, h, s.heads), s.heads * s.headDim, 1},
                  {k + s.offset(b, 0, g, s.kvHeads), 1, s.kvHeads * s.headDim},
                  p,
                  keys};
  scores.alpha = s.scale;
  gemmSerial(scores);
  for (int64_t r = 0; r < rows; ++r) {
    float *row = p + r * keys;
    int64_t valid = s.causal ? i0 + r + 1 : keys;
    float max = *std::max_element(row, row + valid);
    double sum = 0;
    for (int64_t j = 0; j < valid; ++j) {
      row[j] = std::exp(row[j] - max);
      sum += row[j];
    }
    float inverse = 1.0f / float(sum);
    for (int64_t j = 0; j < valid; ++j)
      row[j] = row[j] * inverse;
    std::fill(row + valid, row + keys, 0.0f);
  }
}

void runAttentionFwd(const KernelCall &call) {
  AttentionShape s = attentionShape(call);
  const float *q = argAs<const float>(call, 0);
  const float *k = argAs<const float>(call, 1);
  const float *v = argAs<const float>(call, 2);
  float *o = argAs<float>(call, 3);
  int64_t tasks = s.batch * s.heads * s.blocks();
  call.pool.parallelFor(0, tasks, 1, [&](int64_t lo, int64_t hi) {
    thread_local std::vector<float> probs;
    for (int64_t task = lo; task < hi; ++task) {
      int64_t block = task % s.blocks(), h = task / s.blocks() % s.heads;
      int64_t b = task / s.blocks() / s.heads;
      int64_t i0 = block * kRowBlock, rows = std::min(kRowBlock, s.seq - i0);
      int64_t keys = s.causal ? i0 + rows : s.seq;
      probs.resize(size_t(rows * keys));
      attentionProbs(s, q, k, b, h, i0, rows, keys, probs.data());
      int64_t g = h / s.group();
      gemmSerial({rows,
                  s.headDim,
                  keys,
                  {probs.data(), keys, 1},
                  {v + s.offset(b, 0, g, s.kvHeads), s.kvHeads * s.headDim, 1},
                  o + s.offset(b, i0, h, s.heads),
                  s.heads * s.headDim});
    }
  });
}

void runAttentionBwd(const KernelCall &call) {
  AttentionShape s = attentionShape(call);
  bool accumulate = intParam(call, "accumulate");
  const float *dOut = argAs<const float>(call, 0);
  const float *q = argAs<const float>(call, 1);
  const float *k = argAs<const float>(call, 2);
  const float *v = argAs<const float>(call, 3);
  float *dq = argAs<float>(call, 5);
  float *dk = argAs<float>(call, 6);
  float *dv = argAs<float>(call, 7);
  int64_t qRow = s.heads * s.headDim, kvRow = s.kvHeads * s.headDim;
  call.pool.parallelFor(0, s.batch * s.kvHeads, 1, [&](int64_t lo, int64_t hi) {
    thread_local std::vector<float> probs, dProbs;
    for (int64_t task = lo; task < hi; ++task) {
      int64_t b = task / s.kvHeads, g = task % s.kvHeads;
      float *dkBase = dk + s.offset(b, 0, g, s.kvHeads);
      float *dvBase = dv + s.offset(b, 0, g, s.kvHeads);
      if (!accumulate)
        for (int64_t j = 0; j < s.seq; ++j) {
          std::fill_n(dkBase + j * kvRow, s.headDim, 0.0f);
          std::fill_n(dvBase + j * kvRow, s.headDim, 0.0f);
        }
      const float *kBase = k + s.offset(b, 0, g, s.kvHeads);
      const float *vBase = v + s.offset(b, 0, g, s.kvHeads);
      for (int64_t h = g * s.group(); h < (g + 1) * s.group(); ++h)
        for (int64_t i0 = 0; i0 < s.seq; i0 += kRowBlock) {
          int64_t rows = std::min(kRowBlock, s.seq - i0);
          int64_t keys = s.causal ? i0 + rows : s.seq;
          probs.resize(size_t(rows * keys));
          dProbs.resize(size_t(rows * keys));
          float *p = probs.data(), *dp = dProbs.data();
          attentionProbs(s, q, k, b, h, i0, rows, keys, p);
          const float *dOutBlock = dOut + s.offset(b, i0, h, s.heads);
          const float *qBlock = q + s.offset(b, i0, h, s.heads);
          gemmSerial({rows,
                      keys,
                      s.headDim,
                      {dOutBlock, qRow, 1},
                      {vBase, 1, kvRow},
                      dp,
                      keys});
          for (int64_t r = 0; r < rows; ++r) {
            float *pr = p + r * keys, *dpr = dp + r * keys;
            double dot = 0;
            for (int64_t j = 0; j < keys; ++j)
              dot += double(dpr[j]) * pr[j];
            auto sum = float(dot);
            for (int64_t j = 0; j < keys; ++j)
              dpr[j] = ((dpr[j] - sum) * pr[j]) * s.scale;
          }
          GemmSpec gradQ{rows,
                         s.headDim,
                         keys,
                         {dp, keys, 1},
                         {kBase, kvRow, 1},
                         dq + s.offset(b, i0, h, s.heads),
                         qRow};
          gradQ.accumulate = accumulate;
          gemmSerial(gradQ);
          GemmSpec gradK{keys,          s.headDim,         rows,
                         {dp, 1, keys}, {qBlock, qRow, 1}, dkBase,
                         kvRow};
          gradK.accumulate = true;
          gemmSerial(gradK);
          GemmSpec gradV{
              keys,   s.headDim, rows, {p, 1, keys}, {dOutBlock, qRow, 1},
              dvBase, kvRow};
          gradV.accumulate = true;
          gemmSerial(gradV);
        }
    }
  });
}

using Params = format::KernelParams;
using Bytes = std::span<const size_t>;

constexpr NamedKernel kKernels[] = {
    {kernels::kAttentionFwd,
     {[](const Params &p, Bytes b) {
        return validateAttention(kernels::kAttentionFwd, p, b, false);
      },
      runAttentionFwd}},
    {kernels::kAttentionBwd,
     {[](const Params &p, Bytes b) {
        return validateAttention(kernels::kAttentionBwd, p, b, true);
      },
      runAttentionBwd}},
};

} // namespace

std::span<const NamedKernel> attentionKernels() { return kKernels; }

} // namespace qlora::cpu::detail
