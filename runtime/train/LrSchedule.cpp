//===- LrSchedule.cpp - Learning-rate schedules with warmup ---------------===//
//
// Each branch transcribes the Python lambda: `float(a) / float(b)` is a
// double division of the converted integers, `max(1, n)` is taken on
// integers, and products are evaluated left to right as Python does. The
// library is compiled with -ffp-contract=off so that no multiply-add is
// fused where Python rounds twice.
//
//===----------------------------------------------------------------------===//
#include "runtime/train/LrSchedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include <fmt/format.h>

namespace qlora::train {

std::optional<ScheduleKind> parseScheduleKind(std::string_view name,
                                              std::string &error) {
  for (ScheduleKind kind :
       {ScheduleKind::Constant, ScheduleKind::Linear, ScheduleKind::Cosine})
    if (scheduleKindName(kind) == name)
      return kind;
  error = "unknown LR schedule '" + std::string(name) +
          "', expected constant, linear or cosine";
  return std::nullopt;
}

std::string_view scheduleKindName(ScheduleKind kind) {
  switch (kind) {
  case ScheduleKind::Constant:
    return "constant";
  case ScheduleKind::Linear:
    return "linear";
  case ScheduleKind::Cosine:
    return "cosine";
  }
  return "constant";
}

std::optional<LrSchedule> LrSchedule::create(ScheduleKind kind, double baseLr,
                                             int64_t warmupSteps,
                                             int64_t totalSteps,
                                             std::string &error) {
  if (!std::isfinite(baseLr) || baseLr < 0) {
    error = fmt::format("learning rate {}", baseLr) +
            ", expected a finite number >= 0";
    return std::nullopt;
  }
  if (warmupSteps < 0) {
    error = "warmup steps " + std::to_string(warmupSteps) +
            ", expected an integer >= 0";
    return std::nullopt;
  }
  if (totalSteps < 1) {
    error = "total steps " + std::to_string(totalSteps) +
            ", expected an integer >= 1";
    return std::nullopt;
  }
  return LrSchedule(kind, baseLr, warmupSteps, totalSteps);
}

double LrSchedule::multiplierAt(int64_t step) const {
  if (kind_ == ScheduleKind::Constant) {
    // _get_constant_schedule_with_warmup_lr_lambda takes max(1.0, n), a
    // float; the quotient is the same as with max(1, n).
    if (step < warmupSteps_)
      return static_cast<double>(step) /
             std::max(1.0, static_cast<double>(warmupSteps_));
    return 1.0;
  }
  if (step < warmupSteps_)
    return static_cast<double>(step) /
           static_cast<double>(std::max<int64_t>(1, warmupSteps_));
  double decaySteps =
      static_cast<double>(std::max<int64_t>(1, totalSteps_ - warmupSteps_));
  if (kind_ == ScheduleKind::Linear)
    return std::max(0.0, static_cast<double>(totalSteps_ - step) / decaySteps);
  constexpr double kNumCycles = 0.5;
  double progress = static_cast<double>(step - warmupSteps_) / decaySteps;
  return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * kNumCycles *
                                             2.0 * progress)));
}

} // namespace qlora::train
