//===- LinearKernels.cpp - linear_fwd, linear_grad_input, lora_grad -------===//
//
// PEFT's LoRA linear on top of a frozen (possibly bf16/f16/NF4) weight, as
// GEMMs (Gemm.h); an NF4 weight ([nf4]) is dequantized while the GEMM packs
// it. Each GEMM result is rounded to fp32 before it is scaled or
// added, as the separate torch ops round it:
//   linear_fwd         y = x·Wᵀ ; t = x·Aᵀ ; y += s·(t·Bᵀ)
//   linear_grad_input  dx (+)= dy·W ; dt = dy·B ; dx += s·(dt·A)
//   lora_grad          da (+)= s·(dtᵀ·x) ; db (+)= s·(dyᵀ·t)
// lora_grad reads the workspaces t = x·Aᵀ (from linear_fwd) and dt = dy·B
// (from linear_grad_input) instead of recomputing them; a and b are
// validated but not read.
//
// LoRA dropout (`dropout` p > 0): x is replaced by xd = x ⊙ m on the LoRA
// path, m = keep / (1 − p), where element (t, i) of a [rows, in] input is
// kept when CounterRng(dropout_seed, dropout_stream).uniform(step · rows · in
// + t · in + i) >= p. Each kernel recomputes the mask from the `step`
// argument; none stores it:
//   linear_fwd         t = xd·Aᵀ (so t_ws holds dropout(x)·Aᵀ)
//   linear_grad_input  dx += m ⊙ (s·(dt·A))
//   lora_grad          da (+)= s·(dtᵀ·xd)
//
//===----------------------------------------------------------------------===//
#include "runtime/backends/cpu/Gemm.h"
#include "runtime/backends/cpu/KernelSupport.h"
#include "runtime/format/CounterRng.h"
#include "runtime/format/KernelAbi.h"

#include <optional>
#include <vector>

namespace qlora::cpu::detail {
namespace {

using format::DType;

struct LinearShape {
  int64_t rows, in, out, rank;
};

LinearShape linearParams(Signature &sig, bool needsRank) {
  LinearShape shape{sig.dim("rows"), sig.dim("in"), sig.dim("out"),
                    sig.integer("rank", needsRank ? 1 : 0)};
  sig.real("scaling");
  return shape;
}

/// Validates the optional dropout parameters; true when dropout > 0, in
/// which case the caller declares the trailing `step` argument.
bool dropoutParams(Signature &sig, const LinearShape &shape) {
  if (!sig.has("dropout"))
    return false;
  double p = sig.real("dropout");
  sig.check(p >= 0 && p < 1, "parameter 'dropout' must be in [0, 1), found " +
                                 std::to_string(p));
  if (!(p > 0))
    return false;
  sig.check(shape.rank > 0, "dropout > 0 needs the LoRA path (rank > 0)");
  sig.text("dropout_stream");
  sig.integer("dropout_seed");
  return true;
}

/// The dropout mask of one launch over a [rows, in] input, recomputed from
/// its parameters and the step argument.
class DropoutMask {
public:
  /// Inactive (factor 1 everywhere) unless the launch has dropout > 0.
  DropoutMask(const KernelCall &call, int64_t rows, int64_t in)
      : p(call.params.getFloat("dropout").value_or(0.0)), in(in),
        rng(p > 0 ? uint64_t(intParam(call, "dropout_seed")) : 0,
            p > 0 ? *call.params.getString("dropout_stream") : "") {
    if (!active())
      return;
    auto step = *argAs<const int64_t>(call, call.args.size() - 1);
    base = uint64_t(step) * uint64_t(rows) * uint64_t(in);
    keepScale = float(1.0 / (1.0 - p));
  }

  bool active() const { return p > 0; }

  /// 1/(1 − p) when element (t, i) is kept, else 0.
  float factor(int64_t t, int64_t i) const {
    double u = rng.uniform(base + uint64_t(t * in + i));
    return u >= p ? keepScale : 0.0f;
  }

  /// dropout(x) of the f32 [rows, in] `x`.
  std::vector<float> apply(const void *x, int64_t rows,
                           ThreadPool &pool) const {
    std::vector<float> out(size_t(rows * in));
    const auto *src = static_cast<const float *>(x);
    pool.parallelFor(0, rows, grainFor(in), [&](int64_t lo, int64_t hi) {
      for (int64_t t = lo; t < hi; ++t)
        for (int64_t i = 0; i < in; ++i)
          out[t * in + i] = src[t * in + i] * factor(t, i);
    });
    return out;
  }

private:
  double p;
  int64_t in;
  format::CounterRng rng;
  uint64_t base = 0;
  float keepScale = 1.0f;
};

/// Row-major [rows x cols] as a GEMM operand, or its transpose.
MatrixRef rowMajor(const void *data, int64_t cols) { return {data, cols, 1}; }
MatrixRef transposed(const void *data, int64_t cols) { return {data, 1, cols}; }

/// How the frozen weight W [out, in] is stored: f32, bf16, f16 or NF4.
struct WeightFormat {
  DType dtype = DType::F32;
  std::optional<Nf4Params> nf4;
};

/// Reads `w_dtype` (and for NF4 its [nf4] parameters).
WeightFormat weightFormat(Signature &sig) {
  std::string name =
      sig.oneOf("w_dtype", {"F32", "BF16", "F16", kernels::kNf4WeightDType});
  if (name == kernels::kNf4WeightDType)
    return {DType::F32, sig.nf4Params()};
  return {*format::parseDType(name), std::nullopt};
}

void weightArg(Signature &sig, const WeightFormat &format,
               const LinearShape &s) {
  if (format.nf4)
    sig.nf4Arg("w", {s.out, s.in}, *format.nf4);
  else
    sig.arg("w", {s.out, s.in}, format.dtype);
}

/// W (argument 1) as a GEMM operand for one launch; an NF4 W holds its
/// recovered absmax here for the launch's GEMMs.
class FrozenWeight {
public:
  FrozenWeight(const KernelCall &call, int64_t out, int64_t in)
      : data(call.args[1]), in(in) {
    if (*call.params.getString("w_dtype") == kernels::kNf4WeightDType)
      nf4.emplace(data, out * in, nf4ParamsOf(call), call.pool);
    else
      dtype = dtypeParam(call, "w_dtype");
  }

  /// B(k = o, n = i) = W[o, i].
  MatrixRef rowMajor() const { return withNf4({data, in, 1, dtype}); }
  /// B(k = i, n = o) = W[o, i].
  MatrixRef transposed() const { return withNf4({data, 1, in, dtype}); }

private:
  MatrixRef withNf4(MatrixRef ref) const {
    if (nf4)
      ref.nf4 = &nf4->view();
    return ref;
  }

  const void *data;
  int64_t in;
  DType dtype = DType::F32;
  std::optional<Nf4Weight> nf4;
};

//===- linear_fwd ---------------------------------------------------------===//

std::string validateLinearFwd(const format::KernelParams &params,
                              std::span<const size_t> argBytes) {
  Signature sig(kernels::kLinearFwd, params, argBytes);
  LinearShape s = linearParams(sig, false);
  WeightFormat wFormat = weightFormat(sig);
  sig.arg("x", {s.rows, s.in});
  weightArg(sig, wFormat, s);
  if (s.rank > 0) {
    sig.arg("a", {s.rank, s.in});
    sig.arg("b", {s.out, s.rank});
    sig.arg("t_ws", {s.rows, s.rank});
  }
  sig.arg("y", {s.rows, s.out});
  if (dropoutParams(sig, s))
    sig.arg("step", {}, DType::I64);
  return sig.finish();
}

void runLinearFwd(const KernelCall &call) {
  int64_t rows = intParam(call, "rows"), in = intParam(call, "in");
  int64_t out = intParam(call, "out"), rank = intParam(call, "rank");
  const void *x = call.args[0];
  float *y = argAs<float>(call, rank > 0 ? 5 : 2);
  {
    FrozenWeight w(call, out, in);
    gemm({rows, out, in, rowMajor(x, in), w.transposed(), y, out}, call.pool);
  }
  if (rank == 0)
    return;
  const void *a = call.args[2], *b = call.args[3];
  float *t = argAs<float>(call, 4);
  DropoutMask mask(call, rows, in);
  std::vector<float> dropped;
  if (mask.active()) {
    dropped = mask.apply(x, rows, call.pool);
    x = dropped.data();
  }
  gemm({rows, rank, in, rowMajor(x, in), transposed(a, in), t, rank},
       call.pool);
  GemmSpec lora{rows, out, rank, rowMajor(t, rank), transposed(b, rank),
                y,    out};
  lora.alpha = float(realParam(call, "scaling"));
  lora.accumulate = true;
  gemm(lora, call.pool);
}

//===- linear_grad_input --------------------------------------------------===//

std::string validateLinearGradInput(const format::KernelParams &params,
                                    std::span<const size_t> argBytes) {
  Signature sig(kernels::kLinearGradInput, params, argBytes);
  LinearShape s = linearParams(sig, false);
  WeightFormat wFormat = weightFormat(sig);
  sig.flag("accumulate");
  sig.arg("dy", {s.rows, s.out});
  weightArg(sig, wFormat, s);
  if (s.rank > 0) {
    sig.arg("a", {s.rank, s.in});
    sig.arg("b", {s.out, s.rank});
    sig.arg("dt_ws", {s.rows, s.rank});
  }
  sig.arg("dx", {s.rows, s.in});
  if (dropoutParams(sig, s))
    sig.arg("step", {}, DType::I64);
  return sig.finish();
}

void runLinearGradInput(const KernelCall &call) {
  int64_t rows = intParam(call, "rows"), in = intParam(call, "in");
  int64_t out = intParam(call, "out"), rank = intParam(call, "rank");
  const void *dy = call.args[0];
  float *dx = argAs<float>(call, rank > 0 ? 5 : 2);
  {
    FrozenWeight w(call, out, in);
    GemmSpec base{rows, in, out, rowMajor(dy, out), w.rowMajor(), dx, in};
    base.accumulate = intParam(call, "accumulate");
    gemm(base, call.pool);
  }
  if (rank == 0)
    return;
  const void *a = call.args[2], *b = call.args[3];
  float *dt = argAs<float>(call, 4);
  gemm({rows, rank, out, rowMajor(dy, out), rowMajor(b, rank), dt, rank},
       call.pool);
  GemmSpec lora{rows, in, rank, rowMajor(dt, rank), rowMajor(a, in), dx, in};
  lora.alpha = float(realParam(call, "scaling"));
  DropoutMask mask(call, rows, in);
  if (!mask.active()) {
    lora.accumulate = true;
    gemm(lora, call.pool);
    return;
  }
  // dx += m ⊙ (s·(dt·A)): the product goes to scratch, then through the
  // forward's mask.
  std::vector<float> product(size_t(rows * in));
  lora.c = product.data();
  gemm(lora, call.pool);
  call.pool.parallelFor(0, rows, grainFor(in), [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t)
      for (int64_t i = 0; i < in; ++i)
        dx[t * in + i] += product[t * in + i] * mask.factor(t, i);
  });
}

//===- lora_grad ----------------------------------------------------------===//

std::string validateLoraGrad(const format::KernelParams &params,
                             std::span<const size_t> argBytes) {
  Signature sig(kernels::kLoraGrad, params, argBytes);
  LinearShape s = linearParams(sig, true);
  sig.flag("accumulate");
  sig.arg("dy", {s.rows, s.out});
  sig.arg("x", {s.rows, s.in});
  sig.arg("a", {s.rank, s.in});
  sig.arg("b", {s.out, s.rank});
  sig.arg("t_ws", {s.rows, s.rank});
  sig.arg("dt_ws", {s.rows, s.rank});
  sig.arg("da", {s.rank, s.in});
  sig.arg("db", {s.out, s.rank});
  if (dropoutParams(sig, s))
    sig.arg("step", {}, DType::I64);
  return sig.finish();
}

void runLoraGrad(const KernelCall &call) {
  int64_t rows = intParam(call, "rows"), in = intParam(call, "in");
  int64_t out = intParam(call, "out"), rank = intParam(call, "rank");
  auto scaling = float(realParam(call, "scaling"));
  bool accumulate = intParam(call, "accumulate");
  const void *dy = call.args[0], *x = call.args[1];
  const void *t = call.args[4], *dt = call.args[5];
  float *da = argAs<float>(call, 6), *db = argAs<float>(call, 7);
  // t already holds dropout(x)·Aᵀ; dA needs dropout(x) itself.
  DropoutMask mask(call, rows, in);
  std::vector<float> dropped;
  if (mask.active()) {
    dropped = mask.apply(x, rows, call.pool);
    x = dropped.data();
  }
  // Both reduce over rows: inside one GEMM element, in row order.
  GemmSpec gradA{rank, in, rows, transposed(dt, rank), rowMajor(x, in), da, in};
  gradA.alpha = scaling;
  gradA.accumulate = accumulate;
  gemm(gradA, call.pool);
  GemmSpec gradB{out, rank, rows, transposed(dy, out), rowMajor(t, rank),
                 db,  rank};
  gradB.alpha = scaling;
  gradB.accumulate = accumulate;
  gemm(gradB, call.pool);
}

constexpr NamedKernel kKernels[] = {
    {kernels::kLinearFwd, {validateLinearFwd, runLinearFwd}},
    {kernels::kLinearGradInput, {validateLinearGradInput, runLinearGradInput}},
    {kernels::kLoraGrad, {validateLoraGrad, runLoraGrad}},
};

} // namespace

std::span<const NamedKernel> linearKernels() { return kKernels; }

} // namespace qlora::cpu::detail
