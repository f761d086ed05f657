//===- CudaKernelCases.h - compile cases of the kernels/ templates -*- C++
//-*-===//
//
// One Case per kernel instantiation the compile test builds; the GEMM and
// attention families add theirs from their own files.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_TEST_KERNELS_CUDAKERNELCASES_H
#define QLORACC_TEST_KERNELS_CUDAKERNELCASES_H

#include "runtime/format/KernelAbi.h"
#include "runtime/format/KernelParams.h"

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qlora::cuda::test {

using qlora::format::KernelParams;
namespace abi = qlora::kernels;

struct Case {
  std::string name;
  std::string_view kernel;
  KernelParams params;
  std::string activation = "bf16";
};

/// The model shapes a case set is built from.
struct Shapes {
  std::string prefix;
  int64_t batch, seq, vocab, hidden, intermediate, heads, headDim, rank;
  std::string weightType; ///< frozen (non-NF4) weights
};

inline KernelParams makeParams(
    std::initializer_list<std::pair<std::string, KernelParams::Value>> list) {
  KernelParams params;
  for (const auto &[name, value] : list)
    params.set(name, value);
  return params;
}

/// linear_fwd, linear_grad_input and lora_grad cases (LinearCases.cpp) of
/// the model `s`, each named `namePrefix` + what it covers (the caller sets
/// the activation type).
std::vector<Case> linearCases(const Shapes &s, const std::string &namePrefix);
/// attention_fwd and attention_bwd cases (AttentionCases.cpp), likewise.
std::vector<Case> attentionCases(const Shapes &s,
                                 const std::string &namePrefix);

} // namespace qlora::cuda::test

#endif // QLORACC_TEST_KERNELS_CUDAKERNELCASES_H
