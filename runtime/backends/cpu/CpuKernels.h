//===- CpuKernels.h - Reference kernels of the CPU backend ------*- C++ -*-===//
//
// One CpuKernel per template name of runtime/format/KernelAbi.h, in fp32 with
// the rounding of the PyTorch / transformers / PEFT code they stand for.
// `validate` runs once per launch when a program is loaded; `run` trusts what
// it checked. Results do not depend on the number of threads of the pool.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_BACKENDS_CPU_CPUKERNELS_H
#define QLORACC_RUNTIME_BACKENDS_CPU_CPUKERNELS_H

#include "runtime/backends/cpu/ThreadPool.h"
#include "runtime/format/KernelParams.h"

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qlora::cpu {

struct KernelCall {
  const format::KernelParams &params;
  std::span<void *const> args;      // buffer base pointers, in KernelAbi order
  std::span<const size_t> argBytes; // size in bytes of each argument buffer
  ThreadPool &pool;
};

struct CpuKernel {
  /// Checks the argument count, every argument's byte size (at least the
  /// tensor KernelAbi.h puts there; a larger buffer is fine, only the tensor
  /// is touched) and every parameter against KernelAbi.h; returns "" when
  /// fine, else a one-line message naming the kernel, what was expected and
  /// what was found.
  std::string (*validate)(const format::KernelParams &,
                          std::span<const size_t> argBytes);
  /// Only ever called after validate succeeded.
  void (*run)(const KernelCall &);
};

/// The kernel for a KernelAbi.h template name; nullptr if unknown.
const CpuKernel *findCpuKernel(std::string_view templateName);

/// Every template name this backend runs.
std::vector<std::string_view> cpuKernelNames();

} // namespace qlora::cpu

#endif // QLORACC_RUNTIME_BACKENDS_CPU_CPUKERNELS_H
