//===- StepProfile.cpp - Where a training step's time goes ----------------===//
#include "tools/qlora-run/StepProfile.h"

#include <algorithm>
#include <span>
#include <vector>

namespace qlora::run {

bool StepProfile::mark(std::string &error) {
  if (!executor_.backend().synchronize(error))
    return false;
  auto now = std::chrono::steady_clock::now();
  if (current_ >= 0) {
    Entry &entry =
        byLabel_[std::string(executor_.instrLabel(uint32_t(current_)))];
    entry.launches += 1;
    entry.seconds += std::chrono::duration<double>(now - last_).count();
    entry.flops += flops_[size_t(current_)].value_or(0.0);
    entry.bytes += double(bytes_[size_t(current_)]);
    seconds_[size_t(current_)] +=
        std::chrono::duration<double>(now - last_).count();
  }
  last_ = now;
  return true;
}

exec::Executor::InstrHook StepProfile::hook(std::string &error) {
  current_ = -1;
  if (flops_.empty()) // once: the program's counts do not change
    for (uint32_t i = 0; i < executor_.instrCount(); ++i) {
      flops_.push_back(executor_.instrFlops(i));
      bytes_.push_back(executor_.instrBytes(i));
    }
  seconds_.resize(flops_.size());
  return [this, &error](uint32_t index) {
    if (error.empty() && mark(error))
      current_ = index;
  };
}

bool StepProfile::finishStep(std::string &error) {
  if (!mark(error))
    return false;
  current_ = -1;
  ++steps_;
  return true;
}

void StepProfile::print(std::FILE *out) const {
  if (steps_ == 0)
    return;
  std::vector<std::pair<std::string, Entry>> rows(byLabel_.begin(),
                                                  byLabel_.end());
  std::sort(rows.begin(), rows.end(), [](const auto &a, const auto &b) {
    return a.second.seconds > b.second.seconds;
  });
  double total = 0;
  for (const auto &[label, entry] : rows)
    total += entry.seconds;
  std::fprintf(out,
               "profile: %lld step(s), %.2f ms per step (each instruction "
               "waited for; GB/s counts each argument buffer once)\n"
               "  %-20s %10s %12s %7s %9s %9s\n",
               (long long)steps_, 1e3 * total / double(steps_), "kernel",
               "launches", "ms/step", "share", "GB/s", "TFLOP/s");
  for (const auto &[label, entry] : rows) {
    std::fprintf(out, "  %-20s %10llu %12.3f %6.1f%%", label.c_str(),
                 (unsigned long long)(entry.launches / uint64_t(steps_)),
                 1e3 * entry.seconds / double(steps_),
                 total > 0 ? 100.0 * entry.seconds / total : 0.0);
    if (entry.seconds > 0)
      std::fprintf(out, " %9.1f", entry.bytes / entry.seconds * 1e-9);
    if (entry.flops > 0 && entry.seconds > 0)
      std::fprintf(out, " %9.3f", entry.flops / entry.seconds * 1e-12);
    std::fputc('\n', out);
  }

  std::vector<uint32_t> slowest;
  for (uint32_t i = 0; i < seconds_.size(); ++i)
    if (seconds_[i] > 0)
      slowest.push_back(i);
  size_t shown = std::min(kSlowest, slowest.size());
  std::partial_sort(
      slowest.begin(), slowest.begin() + ptrdiff_t(shown), slowest.end(),
      [&](uint32_t a, uint32_t b) { return seconds_[a] > seconds_[b]; });
  std::fprintf(out, "  slowest launches: instruction, kernel, ms/step, GB/s, "
                    "TFLOP/s, parameters\n");
  for (uint32_t i : std::span(slowest).first(shown)) {
    const double seconds = seconds_[i] / double(steps_);
    std::fprintf(out, "  #%-6u %-20s %9.3f %9.1f", i,
                 std::string(executor_.instrLabel(i)).c_str(), 1e3 * seconds,
                 double(bytes_[i]) / seconds * 1e-9);
    if (flops_[i])
      std::fprintf(out, " %9.3f", *flops_[i] / seconds * 1e-12);
    else
      std::fprintf(out, " %9s", "-");
    std::fprintf(out, "  %s\n", executor_.instrParams(i).c_str());
  }
}

} // namespace qlora::run
