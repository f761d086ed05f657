//===- CpuKernelHarness.h - Launching CPU kernels from gtests ----*- C++
//-*-===//
//
// What the CPU kernel tests share: kernel arguments over test vectors,
// parameters from a list, and validate-then-run launches through the
// kernel registry, as the executor does.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_TEST_RUNTIME_CPUKERNELHARNESS_H
#define QLORACC_TEST_RUNTIME_CPUKERNELHARNESS_H

#include "runtime/backends/cpu/CpuKernels.h"
#include "runtime/backends/cpu/ThreadPool.h"
#include "runtime/format/KernelParams.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qlora::cpu::testing {

/// A pool of `Threads` threads, one per count for the whole test binary.
template <unsigned Threads> ThreadPool &pool() {
  static ThreadPool instance(Threads);
  return instance;
}

/// One kernel argument: its bytes.
struct Arg {
  void *data;
  size_t bytes;
};
template <typename T> Arg buf(std::vector<T> &v) {
  return {v.data(), v.size() * sizeof(T)};
}
template <typename T> Arg one(T &value) { return {&value, sizeof(T)}; }

inline format::KernelParams makeParams(
    std::initializer_list<std::pair<const char *, format::KernelParams::Value>>
        entries) {
  format::KernelParams params;
  for (const auto &[name, value] : entries)
    params.set(name, value);
  return params;
}

/// The kernel's validation message for these arguments ("" when valid).
inline std::string validate(std::string_view name,
                            const format::KernelParams &params,
                            const std::vector<Arg> &args) {
  const CpuKernel *kernel = findCpuKernel(name);
  if (!kernel)
    return "no kernel " + std::string(name);
  std::vector<size_t> bytes;
  for (const Arg &arg : args)
    bytes.push_back(arg.bytes);
  return kernel->validate(params, bytes);
}

/// Validates (a test failure if invalid), then runs on `pool`.
inline void launch(std::string_view name, const format::KernelParams &params,
                   const std::vector<Arg> &args, ThreadPool &pool) {
  ASSERT_EQ(validate(name, params, args), "");
  std::vector<void *> pointers;
  std::vector<size_t> bytes;
  for (const Arg &arg : args) {
    pointers.push_back(arg.data);
    bytes.push_back(arg.bytes);
  }
  findCpuKernel(name)->run({params, pointers, bytes, pool});
}

} // namespace qlora::cpu::testing

#endif // QLORACC_TEST_RUNTIME_CPUKERNELHARNESS_H
