//===- Nf4Kernels.cpp - dequantize_nf4 ------------------------------------===//
//
// dequantize_nf4 writes an NF4 tensor's elements as KernelAbi.h's [nf4]
// defines them (the values the linear kernels dequantize while they pack W),
// then stores them as `to` (a second rounding when `to` is narrower than
// w_dequant_dtype).
//
//===----------------------------------------------------------------------===//
#include "runtime/backends/cpu/Float16.h"
#include "runtime/backends/cpu/KernelSupport.h"
#include "runtime/backends/cpu/Nf4Decode.h"
#include "runtime/format/KernelAbi.h"

#include <algorithm>
#include <cstring>

namespace qlora::cpu::detail {
namespace {

using format::DType;

std::string validateDequantizeNf4(const format::KernelParams &params,
                                  std::span<const size_t> argBytes) {
  Signature sig(kernels::kDequantizeNf4, params, argBytes);
  int64_t n = sig.dim("n");
  Nf4Params nf4 = sig.nf4Params();
  DType to = sig.floatType("to");
  sig.nf4Arg("w", {n}, nf4);
  sig.arg("out", {n}, to);
  return sig.finish();
}

/// Stores `count` floats as `to` at element `first` of `out`.
void storeAs(DType to, const float *values, int64_t count, void *out,
             int64_t first) {
  if (to == DType::BF16) {
    auto *dst = static_cast<uint16_t *>(out) + first;
    for (int64_t i = 0; i < count; ++i)
      dst[i] = floatToBf16(values[i]);
  } else if (to == DType::F16) {
    auto *dst = static_cast<uint16_t *>(out) + first;
    for (int64_t i = 0; i < count; ++i)
      dst[i] = floatToHalf(values[i]);
  } else {
    std::memcpy(static_cast<float *>(out) + first, values,
                size_t(count) * sizeof(float));
  }
}

void runDequantizeNf4(const KernelCall &call) {
  constexpr int64_t kRun = 1024; // elements decoded per step, on the stack
  int64_t n = intParam(call, "n");
  DType to = dtypeParam(call, "to");
  Nf4Weight weight(call.args[0], n, nf4ParamsOf(call), call.pool);
  void *out = call.args[1];
  call.pool.parallelFor(0, n, 1 << 16, [&](int64_t lo, int64_t hi) {
    float run[kRun];
    for (int64_t first = lo; first < hi; first += kRun) {
      int64_t count = std::min(kRun, hi - first);
      decodeNf4Run(weight.view(), first, count, run);
      storeAs(to, run, count, out, first);
    }
  });
}

constexpr NamedKernel kKernels[] = {
    {kernels::kDequantizeNf4, {validateDequantizeNf4, runDequantizeNf4}},
};

} // namespace

std::span<const NamedKernel> nf4Kernels() { return kKernels; }

} // namespace qlora::cpu::detail
