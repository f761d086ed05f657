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
    const auto index = size_t(current_);
    const double seconds = std::chrono::duration<double>(now - last_).count();
    byLabel_[std::string(executor_.instrLabel(uint32_t(index)))].add(
        seconds, flops_[index], bytes_[index]);
    seconds_[index] += seconds;
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

void StepProfile::printNumbers(std::FILE *out, const Entry &entry, double total,
                               bool padFlops) const {
  std::fprintf(out, " %10llu %12.3f %6.1f%%",
               (unsigned long long)(entry.launches / uint64_t(steps_)),
               1e3 * entry.seconds / double(steps_),
               total > 0 ? 100.0 * entry.seconds / total : 0.0);
  if (entry.seconds > 0)
    std::fprintf(out, " %9.1f", entry.bytes / entry.seconds * 1e-9);
  if (entry.flops > 0 && entry.seconds > 0)
    std::fprintf(out, " %9.3f", entry.flops / entry.seconds * 1e-12);
  else if (padFlops)
    std::fprintf(out, " %9s", "");
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
    std::fprintf(out, "  %-20s", label.c_str());
    printNumbers(out, entry, total, /*padFlops=*/false);
    std::fputc('\n', out);
  }

  // The same per kernel instantiation, the slowest first.
  std::map<uint32_t, Entry> byKernel;
  std::map<uint32_t, uint32_t> firstLaunch;
  for (uint32_t i = 0; i < seconds_.size(); ++i)
    if (std::optional<uint32_t> kernel = executor_.instrKernel(i);
        kernel && seconds_[i] > 0) {
      byKernel[*kernel].add(seconds_[i], flops_[i], bytes_[i],
                            uint64_t(steps_));
      firstLaunch.emplace(*kernel, i);
    }
  std::vector<std::pair<uint32_t, Entry>> kernels(byKernel.begin(),
                                                  byKernel.end());
  size_t shown = std::min(kSlowest, kernels.size());
  std::partial_sort(kernels.begin(), kernels.begin() + ptrdiff_t(shown),
                    kernels.end(), [](const auto &a, const auto &b) {
                      return a.second.seconds > b.second.seconds;
                    });
  std::fprintf(out, "  the %zu slowest of %zu kernel instantiations:\n", shown,
               kernels.size());
  for (const auto &[kernel, entry] : std::span(kernels).first(shown)) {
    const uint32_t first = firstLaunch.at(kernel);
    std::fprintf(out, "  %-20s",
                 std::string(executor_.instrLabel(first)).c_str());
    printNumbers(out, entry, total, /*padFlops=*/true);
    std::fprintf(out, "  %s\n", executor_.instrParams(first).c_str());
  }
}

} // namespace qlora::run
