//===- ProgressBar.cpp - One-line training progress -----------------------===//
#include "runtime/train/ProgressBar.h"

#include "runtime/train/TextFormat.h"

#include <algorithm>
#include <cmath>
#include <unistd.h>

#include <fmt/format.h>

namespace qlora::train {
namespace {

constexpr int64_t kBarWidth = 20;
/// A log gets about this many lines per run.
constexpr int64_t kLogLines = 20;

} // namespace

std::string renderProgressLine(const ProgressState &state) {
  int64_t total = std::max<int64_t>(state.totalSteps, 1);
  int64_t step = std::clamp<int64_t>(state.step, 0, total);
  int64_t filled = step * kBarWidth / total;
  int64_t percent = step * 100 / total;
  std::string bar = std::string(static_cast<size_t>(filled), '#') +
                    std::string(static_cast<size_t>(kBarWidth - filled), '.');
  std::string speed =
      std::isfinite(state.tokensPerSecond) && state.tokensPerSecond >= 0
          ? formatThousands(std::llround(std::min(state.tokensPerSecond, 1e18)))
          : "-";
  std::string time;
  if (state.step >= state.totalSteps)
    time = "elapsed " + formatDuration(state.elapsedSeconds);
  else if (state.step <= 0)
    time = "ETA " + formatDuration(-1);
  else
    time = "ETA " + formatDuration(state.elapsedSeconds /
                                   static_cast<double>(state.step) *
                                   static_cast<double>(total - step));
  return fmt::format("step {}/{} [{}] {:3}% | loss {:.4f} | {} tok/s | {}",
                     state.step, state.totalSteps, bar, percent, state.loss,
                     speed, time);
}

ProgressBar::ProgressBar(std::FILE *stream, int64_t totalSteps)
    : ProgressBar(stream, totalSteps, ::isatty(::fileno(stream)) == 1) {}

ProgressBar::ProgressBar(std::FILE *stream, int64_t totalSteps, bool isTty)
    : stream_(stream), totalSteps_(totalSteps), isTty_(isTty),
      logInterval_(std::max<int64_t>(1, totalSteps / kLogLines)),
      start_(std::chrono::steady_clock::now()) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::update(int64_t step, double loss, double tokensPerSecond) {
  std::chrono::duration<double> elapsed =
      std::chrono::steady_clock::now() - start_;
  update(step, loss, tokensPerSecond, elapsed.count());
}

void ProgressBar::update(int64_t step, double loss, double tokensPerSecond,
                         double elapsedSeconds) {
  last_ = {step, totalSteps_, loss, tokensPerSecond, elapsedSeconds};
  std::string line = renderProgressLine(last_);
  if (isTty_) {
    // Spaces cover what a longer previous line left on the terminal.
    size_t width = line.size();
    if (width < drawnWidth_)
      line.append(drawnWidth_ - width, ' ');
    drawnWidth_ = width;
    drawnOnTty_ = true;
    write("\r" + line);
    return;
  }
  lastPrinted_ = step % logInterval_ == 0 || step >= totalSteps_;
  if (lastPrinted_)
    write(line + "\n");
}

void ProgressBar::finish() {
  if (drawnOnTty_) {
    write("\n");
    drawnOnTty_ = false;
    drawnWidth_ = 0;
  }
  if (!lastPrinted_) {
    write(renderProgressLine(last_) + "\n");
    lastPrinted_ = true;
  }
}

void ProgressBar::write(const std::string &text) {
  // Progress is best effort: a closed stderr must not stop training.
  std::fwrite(text.data(), 1, text.size(), stream_);
  std::fflush(stream_);
}

} // namespace qlora::train
