//===- MetricsWriter.h - Per-step training metrics as JSONL -----*- C++ -*-===//
//
// `qlora-run --metrics FILE.jsonl` writes one JSON object per optimizer step,
// keys in this order:
//
//   {"step":1,"loss":2.3141,"lr":0.0002,"grad_norm":0.84,
//    "tokens_per_s":12345.6,"elapsed_s":1.52}
//
// `step` counts optimizer steps from 1. Numbers are written in the shortest
// form that reads back to the same double; a non-finite value (a diverged
// loss) is written as null, since JSON has no NaN. Each line is flushed as it
// is written, so the file can be followed while training runs.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_TRAIN_METRICSWRITER_H
#define QLORACC_RUNTIME_TRAIN_METRICSWRITER_H

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

namespace qlora::train {

struct StepMetrics {
  /// Optimizer steps done, from 1.
  int64_t step = 0;
  double loss = 0;
  double lr = 0;
  double gradNorm = 0;
  double tokensPerSecond = 0;
  double elapsedSeconds = 0;
  /// Arena bytes live at the step's high-water mark, as the runtime
  /// measured it (equal to the planned peak); 0 leaves the key out.
  uint64_t measuredPeakBytes = 0;
};

/// One JSONL line for `metrics`, without the newline.
std::string metricsLine(const StepMetrics &metrics);

class MetricsWriter {
public:
  /// Creates or truncates `path`. On failure nullptr and a one-line `error`
  /// naming the file.
  static std::unique_ptr<MetricsWriter> open(const std::string &path,
                                             std::string &error);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter &) = delete;
  MetricsWriter &operator=(const MetricsWriter &) = delete;

  /// Appends and flushes one line; false with `error` naming the file and
  /// the step when the write or the flush fails (a full disk, for one).
  bool write(const StepMetrics &metrics, std::string &error);
  /// Closes the file, reporting an error close() may be the first to see.
  /// Further writes fail. Idempotent.
  bool close(std::string &error);

  const std::string &path() const { return path_; }

private:
  MetricsWriter(std::string path, std::FILE *file)
      : path_(std::move(path)), file_(file) {}

  std::string path_;
  std::FILE *file_;
};

} // namespace qlora::train

#endif // QLORACC_RUNTIME_TRAIN_METRICSWRITER_H
