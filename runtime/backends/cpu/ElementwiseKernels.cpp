//===- ElementwiseKernels.cpp - embedding, cast, silu, add, mul, fill -----===//
//
// Elementwise kernels, each element computed as torch's CPU kernel does:
//   silu(x)   = x / (1 + exp(-x))                       (ActivationKernel)
//   silu'     = dy * s * (1 + x * (1 - s)), s = 1 / (1 + exp(-x))
// embedding_fwd writes a NaN row for a token outside [0, vocab) (torch
// raises; validate cannot see data).
//
//===----------------------------------------------------------------------===//
#include "runtime/backends/cpu/Float16.h"
#include "runtime/backends/cpu/KernelSupport.h"
#include "runtime/format/KernelAbi.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace qlora::cpu::detail {
namespace {

using format::DType;

/// Runs fn(i) for i in [0, n) over the pool.
template <typename Fn> void forEach(ThreadPool &pool, int64_t n, Fn fn) {
  pool.parallelFor(0, n, 1 << 14, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i)
      fn(i);
  });
}

//===- embedding_fwd ------------------------------------------------------===//

std::string validateEmbedding(const format::KernelParams &params,
                              std::span<const size_t> argBytes) {
  Signature sig(kernels::kEmbeddingFwd, params, argBytes);
  int64_t rows = sig.dim("rows"), vocab = sig.dim("vocab");
  int64_t hidden = sig.dim("hidden");
  DType wType = sig.floatType("w_dtype");
  sig.arg("table", {vocab, hidden}, wType);
  sig.arg("tokens", {rows}, DType::I32);
  sig.arg("out", {rows, hidden});
  return sig.finish();
}

void runEmbedding(const KernelCall &call) {
  int64_t rows = intParam(call, "rows"), vocab = intParam(call, "vocab");
  int64_t hidden = intParam(call, "hidden");
  DType wType = dtypeParam(call, "w_dtype");
  const void *table = call.args[0];
  const auto *tokens = argAs<const int32_t>(call, 1);
  float *out = argAs<float>(call, 2);
  call.pool.parallelFor(0, rows, grainFor(hidden), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      int64_t token = tokens[r];
      float *row = out + r * hidden;
      if (token < 0 || token >= vocab)
        std::fill(row, row + hidden, std::numeric_limits<float>::quiet_NaN());
      else
        widenToFloat(table, wType, size_t(token * hidden), size_t(hidden), row);
    }
  });
}

//===- cast ---------------------------------------------------------------===//

std::string validateCast(const format::KernelParams &params,
                         std::span<const size_t> argBytes) {
  Signature sig(kernels::kCast, params, argBytes);
  int64_t n = sig.dim("n");
  DType from = sig.floatType("from"), to = sig.floatType("to");
  sig.arg("in", {n}, from);
  sig.arg("out", {n}, to);
  return sig.finish();
}

void runCast(const KernelCall &call) {
  int64_t n = intParam(call, "n");
  DType from = dtypeParam(call, "from"), to = dtypeParam(call, "to");
  const void *in = call.args[0];
  void *out = call.args[1];
  forEach(call.pool, n, [&](int64_t i) {
    float value = loadAsFloat(in, from, size_t(i));
    if (to == DType::BF16)
      static_cast<uint16_t *>(out)[i] = floatToBf16(value);
    else if (to == DType::F16)
      static_cast<uint16_t *>(out)[i] = floatToHalf(value);
    else
      static_cast<float *>(out)[i] = value;
  });
}

//===- silu_fwd, silu_bwd, add, mul, fill ---------------------------------===//

/// Kernels over `n` f32 elements whose arguments are all [n].
std::string validateVector(std::string_view kernel,
                           const format::KernelParams &params,
                           std::span<const size_t> argBytes,
                           std::initializer_list<std::string_view> names,
                           bool hasAccumulate) {
  Signature sig(kernel, params, argBytes);
  int64_t n = sig.dim("n");
  if (hasAccumulate)
    sig.flag("accumulate");
  if (sig.has("dtype"))
    sig.check(sig.floatType("dtype") == DType::F32,
              "parameter 'dtype' must be F32 on the CPU backend (it computes "
              "in f32; bf16 and f16 programs are for the GPU)");
  for (std::string_view name : names)
    sig.arg(name, {n});
  return sig.finish();
}

float sigmoidOf(float x) { return 1.0f / (1.0f + std::exp(-x)); }

void runSiluFwd(const KernelCall &call) {
  const float *x = argAs<const float>(call, 0);
  float *y = argAs<float>(call, 1);
  forEach(call.pool, intParam(call, "n"),
          [&](int64_t i) { y[i] = x[i] / (1.0f + std::exp(-x[i])); });
}

void runSiluBwd(const KernelCall &call) {
  const float *dy = argAs<const float>(call, 0);
  const float *x = argAs<const float>(call, 1);
  float *dx = argAs<float>(call, 2);
  bool accumulate = intParam(call, "accumulate");
  forEach(call.pool, intParam(call, "n"), [&](int64_t i) {
    float s = sigmoidOf(x[i]);
    float grad = dy[i] * s * (1.0f + x[i] * (1.0f - s));
    dx[i] = accumulate ? dx[i] + grad : grad;
  });
}

void runAdd(const KernelCall &call) {
  const float *a = argAs<const float>(call, 0);
  const float *b = argAs<const float>(call, 1);
  float *y = argAs<float>(call, 2);
  forEach(call.pool, intParam(call, "n"),
          [&](int64_t i) { y[i] = a[i] + b[i]; });
}

void runMul(const KernelCall &call) {
  const float *a = argAs<const float>(call, 0);
  const float *b = argAs<const float>(call, 1);
  float *y = argAs<float>(call, 2);
  forEach(call.pool, intParam(call, "n"),
          [&](int64_t i) { y[i] = a[i] * b[i]; });
}

std::string validateFill(const format::KernelParams &params,
                         std::span<const size_t> argBytes) {
  Signature sig(kernels::kFill, params, argBytes);
  int64_t n = sig.dim("n");
  sig.real("value", /*allowNonFinite=*/true);
  sig.arg("out", {n});
  return sig.finish();
}

void runFill(const KernelCall &call) {
  float value = float(realParam(call, "value"));
  float *out = argAs<float>(call, 0);
  forEach(call.pool, intParam(call, "n"), [&](int64_t i) { out[i] = value; });
}

//===- scalar_binary ------------------------------------------------------===//

std::string validateScalarBinary(const format::KernelParams &params,
                                 std::span<const size_t> argBytes) {
  Signature sig(kernels::kScalarBinary, params, argBytes);
  sig.oneOf("op", {"add", "sub", "mul", "div"});
  sig.arg("a", {});
  sig.arg("b", {});
  sig.arg("out", {});
  return sig.finish();
}

void runScalarBinary(const KernelCall &call) {
  std::string op = *call.params.getString("op");
  float a = *argAs<const float>(call, 0), b = *argAs<const float>(call, 1);
  float &out = *argAs<float>(call, 2);
  out = op == "add" ? a + b : op == "sub" ? a - b : op == "mul" ? a * b : a / b;
}

using Params = format::KernelParams;
using Bytes = std::span<const size_t>;

constexpr NamedKernel kKernels[] = {
    {kernels::kEmbeddingFwd, {validateEmbedding, runEmbedding}},
    {kernels::kCast, {validateCast, runCast}},
    {kernels::kSiluFwd,
     {[](const Params &p, Bytes b) {
        return validateVector(kernels::kSiluFwd, p, b, {"x", "y"}, false);
      },
      runSiluFwd}},
    {kernels::kSiluBwd,
     {[](const Params &p, Bytes b) {
        return validateVector(kernels::kSiluBwd, p, b, {"dy", "x", "dx"}, true);
      },
      runSiluBwd}},
    {kernels::kAdd,
     {[](const Params &p, Bytes b) {
        return validateVector(kernels::kAdd, p, b, {"a", "b", "y"}, false);
      },
      runAdd}},
    {kernels::kMul,
     {[](const Params &p, Bytes b) {
        return validateVector(kernels::kMul, p, b, {"a", "b", "y"}, false);
      },
      runMul}},
    {kernels::kFill, {validateFill, runFill}},
    {kernels::kScalarBinary, {validateScalarBinary, runScalarBinary}},
};

} // namespace

std::span<const NamedKernel> elementwiseKernels() { return kKernels; }

} // namespace qlora::cpu::detail
