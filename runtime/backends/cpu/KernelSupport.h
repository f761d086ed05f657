//===- KernelSupport.h - Shared by the CPU kernel families ------*- C++ -*-===//
//
// `Signature` is how every validate() reads its parameters and declares its
// arguments; the first problem found becomes the one-line message. The
// run-side accessors assume validate() succeeded.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_BACKENDS_CPU_KERNELSUPPORT_H
#define QLORACC_RUNTIME_BACKENDS_CPU_KERNELSUPPORT_H

#include "runtime/backends/cpu/CpuKernels.h"
#include "runtime/backends/cpu/Nf4Decode.h"
#include "runtime/format/DType.h"
#include "runtime/format/KernelParams.h"

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qlora::cpu::detail {

/// A kernel with its template name, as each family file lists them.
struct NamedKernel {
  std::string_view name;
  CpuKernel kernel;
};

std::span<const NamedKernel> elementwiseKernels();
std::span<const NamedKernel> normRopeKernels();
std::span<const NamedKernel> linearKernels();
std::span<const NamedKernel> attentionKernels();
std::span<const NamedKernel> lossKernels();
std::span<const NamedKernel> optimizerKernels();
std::span<const NamedKernel> nf4Kernels();

class Signature {
public:
  Signature(std::string_view kernelName,
            const format::KernelParams &kernelParams,
            std::span<const size_t> argumentBytes)
      : kernel(kernelName), params(kernelParams), argBytes(argumentBytes) {}

  /// An integer parameter >= `min` (shapes use 1, counts such as rank 0).
  int64_t integer(std::string_view name, int64_t min = INT64_MIN);
  int64_t dim(std::string_view name) { return integer(name, 1); }
  /// An integer parameter that is 0 or 1.
  bool flag(std::string_view name);
  /// A float parameter (an integer parameter reads as its value), finite
  /// unless `allowNonFinite`.
  double real(std::string_view name, bool allowNonFinite = false);
  /// "F32", "BF16" or "F16".
  format::DType floatType(std::string_view name);
  /// A string parameter that is one of `options`.
  std::string oneOf(std::string_view name,
                    std::initializer_list<std::string_view> options);
  /// A non-empty string parameter.
  std::string text(std::string_view name);
  /// The [nf4] parameters w_block_size, w_dq_block_size and w_dequant_dtype.
  Nf4Params nf4Params();
  /// Whether the parameter `name` is given (for optional parameters).
  bool has(std::string_view name) const { return params.find(name) != nullptr; }
  /// An integer array parameter whose entries are all >= 1.
  std::vector<int64_t> dims(std::string_view name);
  /// Records "<kernel>: <message>" unless `ok` or a problem is already known.
  void check(bool ok, const std::string &message);

  /// Declares the next argument: `shape` elements of `dtype` ({} = scalar).
  void arg(std::string_view name, std::initializer_list<int64_t> shape,
           format::DType dtype = format::DType::F32);
  void arg(std::string_view name, std::span<const int64_t> shape,
           format::DType dtype = format::DType::F32);
  /// Declares the next argument as an NF4 tensor of `shape` elements stored
  /// as format/Nf4Layout.h describes (its totalBytes).
  void nf4Arg(std::string_view name, std::initializer_list<int64_t> shape,
              const Nf4Params &nf4);

  /// "" when the parameters and the argument count are right and every
  /// argument holds at least its tensor; else the first problem.
  std::string finish();

private:
  struct Expected {
    std::string description; // "w [32 x 16] BF16"
    size_t bytes;
    bool overflow;
  };

  /// "name [a x b]" and the elements times `elementBytes`, overflow marked.
  static Expected shaped(std::string_view name, std::span<const int64_t> shape,
                         uint64_t elementBytes);
  const format::KernelParams::Value *lookup(std::string_view name,
                                            std::string_view expected);

  std::string kernel;
  const format::KernelParams &params;
  std::span<const size_t> argBytes;
  std::vector<Expected> expected;
  std::string error;
};

// Run-side accessors: validate() has checked that these exist.
inline int64_t intParam(const KernelCall &call, std::string_view name) {
  return *call.params.getInt(name);
}
inline double realParam(const KernelCall &call, std::string_view name) {
  return *call.params.getFloat(name);
}
format::DType dtypeParam(const KernelCall &call, std::string_view name);
/// The [nf4] parameters of a launch (see Signature::nf4Params).
Nf4Params nf4ParamsOf(const KernelCall &call);

template <typename T> T *argAs(const KernelCall &call, size_t index) {
  return static_cast<T *>(call.args[index]);
}

/// `n` indices cut into chunks of about `work` elements of work each for
/// ThreadPool::parallelFor (at least 1 index per chunk).
inline int64_t grainFor(int64_t workPerIndex, int64_t work = 1 << 15) {
  return workPerIndex >= work ? 1
                              : work / (workPerIndex > 0 ? workPerIndex : 1);
}

} // namespace qlora::cpu::detail

#endif // QLORACC_RUNTIME_BACKENDS_CPU_KERNELSUPPORT_H
