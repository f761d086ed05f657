//===- RunOptions.h - qlora-run's command line ------------------*- C++ -*-===//
#ifndef QLORACC_TOOLS_QLORA_RUN_RUNOPTIONS_H
#define QLORACC_TOOLS_QLORA_RUN_RUNOPTIONS_H

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace qlora::run {

struct RunOptions {
  std::string trainBin;
  std::string data;
  std::string dataFormat = "auto";
  int64_t steps = 0;
  double lr = 2e-4;
  std::string schedule = "constant";
  int64_t warmup = 0;
  uint64_t seed = 0;
  /// Unset: the value compiled into train.bin (qloracc --weight-decay, ...).
  std::optional<double> weightDecay;
  std::optional<double> maxGradNorm;
  std::string saveAdapter;
  std::string initAdapter;
  std::string metrics;
  std::string saveGrads;
  std::string device = "auto";
  unsigned threads = 0;
  bool progress = true;
  /// --memory-report: the plan and the measured peak on stdout; alone (no
  /// --data), measured over one step on zero inputs, then exit.
  bool memoryReport = false;
  /// --profile: per kernel template, the launches and time of a step.
  bool profile = false;
};

/// Parses argv. On `--help` prints usage to stdout and sets `exitCode` to 0;
/// on a bad command line prints the reason and usage to stderr and sets it
/// to 2. Returns std::nullopt in both cases.
std::optional<RunOptions> parseRunOptions(int argc, char **argv, int &exitCode);

} // namespace qlora::run

#endif // QLORACC_TOOLS_QLORA_RUN_RUNOPTIONS_H
