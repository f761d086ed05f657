//===- ProgressBar.h - One-line training progress ---------------*- C++ -*-===//
//
// qlora-run's progress display:
//
//   step 37/200 [###.................]  18% | loss 2.3141 | 12,345 tok/s | ETA
//   0:01:12
//
// On a terminal the line is redrawn in place with '\r' after every step; in
// a log file (not a TTY) a plain line is written every max(1, total/20)
// steps and at the last step, so logs stay short and readable. The ETA is
// the mean step time so far times the steps left; the last step shows the
// elapsed time instead.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_TRAIN_PROGRESSBAR_H
#define QLORACC_RUNTIME_TRAIN_PROGRESSBAR_H

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace qlora::train {

/// What one progress line shows.
struct ProgressState {
  /// Optimizer steps done (1-based) and planned.
  int64_t step = 0;
  int64_t totalSteps = 0;
  double loss = 0;
  double tokensPerSecond = 0;
  /// Wall time since training started.
  double elapsedSeconds = 0;
};

/// The progress line for `state`, without '\r' or '\n'.
std::string renderProgressLine(const ProgressState &state);

class ProgressBar {
public:
  /// Draws on `stream` (usually stderr), redrawing in place when it is a
  /// TTY. The clock for elapsed time starts now.
  ProgressBar(std::FILE *stream, int64_t totalSteps);
  /// As above with the TTY decision made by the caller (tests, --no-tty).
  ProgressBar(std::FILE *stream, int64_t totalSteps, bool isTty);
  /// Ends the line on a terminal; see finish().
  ~ProgressBar();
  ProgressBar(const ProgressBar &) = delete;
  ProgressBar &operator=(const ProgressBar &) = delete;

  /// Reports that optimizer step `step` (1-based) finished with `loss`.
  void update(int64_t step, double loss, double tokensPerSecond);
  /// As above with the elapsed time given rather than measured.
  void update(int64_t step, double loss, double tokensPerSecond,
              double elapsedSeconds);
  /// Ends the display: on a TTY moves to a new line; in a log writes the
  /// last state when its line was skipped (a run stopped early). Idempotent.
  void finish();

private:
  void write(const std::string &text);

  std::FILE *stream_;
  int64_t totalSteps_;
  bool isTty_;
  int64_t logInterval_;
  std::chrono::steady_clock::time_point start_;
  ProgressState last_;
  bool lastPrinted_ = true;
  bool drawnOnTty_ = false;
  size_t drawnWidth_ = 0;
};

} // namespace qlora::train

#endif // QLORACC_RUNTIME_TRAIN_PROGRESSBAR_H
