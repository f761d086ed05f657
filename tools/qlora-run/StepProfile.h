//===- StepProfile.h - Where a training step's time goes --------*- C++ -*-===//
//
// qlora-run --profile: times every instruction of the step program by
// waiting for the backend before and after it (so the numbers are device
// time plus one launch latency each, and the profiled steps run slower than
// unprofiled ones), sums per kernel template and prints, after the run, the
// launches, milliseconds and share of each template per step, the GB/s of
// its argument buffers (Executor::instrBytes: each counted once, near the
// real traffic of the kernels that stream their buffers once), and for the
// matrix-heavy templates the model TFLOP/s (runtime/exec/KernelFlops.h);
// then the same per kernel instantiation (template and parameters: one
// projection's shape, the LM head), the slowest first.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_TOOLS_QLORA_RUN_STEPPROFILE_H
#define QLORACC_TOOLS_QLORA_RUN_STEPPROFILE_H

#include "runtime/exec/Executor.h"

#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace qlora::run {

class StepProfile {
public:
  explicit StepProfile(exec::Executor &executor) : executor_(executor) {}

  /// The hook that times one step's instructions; `error` keeps the first
  /// backend failure.
  exec::Executor::InstrHook hook(std::string &error);
  /// Attributes the step's last instruction; call after Executor::run.
  bool finishStep(std::string &error);
  /// The table, per step, most time first; then the kSlowest slowest
  /// kernel instantiations.
  void print(std::FILE *out) const;
  static constexpr size_t kSlowest = 15;

private:
  struct Entry {
    /// Adds `runs` runs of an instruction, `seconds` in all.
    void add(double seconds, std::optional<double> instrFlops,
             uint64_t instrBytes, uint64_t runs = 1) {
      launches += runs;
      this->seconds += seconds;
      flops += instrFlops.value_or(0.0) * double(runs);
      bytes += double(instrBytes) * double(runs);
    }

    uint64_t launches = 0;
    double seconds = 0;
    double flops = 0; ///< of the launches with a count
    double bytes = 0; ///< Executor::instrBytes
  };
  bool mark(std::string &error);

  exec::Executor &executor_;
  std::map<std::string, Entry, std::less<>> byLabel_;
  std::vector<std::optional<double>> flops_; ///< per instruction
  std::vector<uint64_t> bytes_;              ///< per instruction
  std::vector<double> seconds_;              ///< per instruction, all steps
  /// Prints `entry`'s launches and ms per step, share of `total` seconds,
  /// GB/s and TFLOP/s (blank when it has no count and `padFlops`).
  void printNumbers(std::FILE *out, const Entry &entry, double total,
                    bool padFlops) const;
  std::chrono::steady_clock::time_point last_;
  int64_t current_ = -1; ///< the instruction being timed, or -1
  int64_t steps_ = 0;
};

} // namespace qlora::run

#endif // QLORACC_TOOLS_QLORA_RUN_STEPPROFILE_H
