//===- LrSchedule.h - Learning-rate schedules with warmup -------*- C++ -*-===//
//
// The schedules of transformers' optimization.py, computed with the same
// double-precision operations in the same order so that the learning rate
// of every step is bit-identical to HF Trainer's:
//
//   constant  get_constant_schedule_with_warmup
//   linear    get_linear_schedule_with_warmup
//   cosine    get_cosine_schedule_with_warmup (num_cycles = 0.5)
//
// Step indices count optimizer steps from 0, like LambdaLR's last_epoch: the
// first optimizer step uses multiplierAt(0) (0 when there is warmup, as in
// HF Trainer, which steps the scheduler after the optimizer). Past
// totalSteps the formulas are applied as transformers applies them (linear
// stays at 0, cosine rises again); qlora-run never goes there.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_TRAIN_LRSCHEDULE_H
#define QLORACC_RUNTIME_TRAIN_LRSCHEDULE_H

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qlora::train {

enum class ScheduleKind { Constant, Linear, Cosine };

/// Parses "constant", "linear" or "cosine"; otherwise std::nullopt with
/// `error` naming the value and the accepted ones.
std::optional<ScheduleKind> parseScheduleKind(std::string_view name,
                                              std::string &error);
std::string_view scheduleKindName(ScheduleKind kind);

class LrSchedule {
public:
  /// Checks the arguments: baseLr finite and >= 0, warmupSteps >= 0,
  /// totalSteps >= 1. On failure std::nullopt with a one-line `error`.
  static std::optional<LrSchedule> create(ScheduleKind kind, double baseLr,
                                          int64_t warmupSteps,
                                          int64_t totalSteps,
                                          std::string &error);

  /// The factor LambdaLR multiplies the base learning rate by at
  /// `stepIndex` (0-based optimizer step).
  double multiplierAt(int64_t stepIndex) const;
  /// baseLr * multiplierAt(stepIndex), as LambdaLR computes it.
  double lrAt(int64_t stepIndex) const {
    return baseLr_ * multiplierAt(stepIndex);
  }

  ScheduleKind kind() const { return kind_; }
  double baseLr() const { return baseLr_; }
  int64_t warmupSteps() const { return warmupSteps_; }
  int64_t totalSteps() const { return totalSteps_; }

private:
  LrSchedule(ScheduleKind kind, double baseLr, int64_t warmupSteps,
             int64_t totalSteps)
      : kind_(kind), baseLr_(baseLr), warmupSteps_(warmupSteps),
        totalSteps_(totalSteps) {}

  ScheduleKind kind_;
  double baseLr_;
  int64_t warmupSteps_;
  int64_t totalSteps_;
};

} // namespace qlora::train

#endif // QLORACC_RUNTIME_TRAIN_LRSCHEDULE_H
