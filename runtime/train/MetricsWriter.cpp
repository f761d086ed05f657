//===- MetricsWriter.cpp - Per-step training metrics as JSONL -------------===//
#include "runtime/train/MetricsWriter.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <system_error>

namespace qlora::train {
namespace {

std::string errnoMessage(int err) {
  return std::error_code(err, std::generic_category()).message();
}

} // namespace

std::string metricsLine(const StepMetrics &metrics) {
  // nlohmann writes doubles in their shortest round-trip form and NaN or
  // infinity as null.
  nlohmann::ordered_json line = {
      {"step", metrics.step},
      {"loss", metrics.loss},
      {"lr", metrics.lr},
      {"grad_norm", metrics.gradNorm},
      {"tokens_per_s", metrics.tokensPerSecond},
      {"elapsed_s", metrics.elapsedSeconds},
  };
  if (metrics.measuredPeakBytes)
    line["measured_peak_bytes"] = metrics.measuredPeakBytes;
  return line.dump();
}

std::unique_ptr<MetricsWriter> MetricsWriter::open(const std::string &path,
                                                   std::string &error) {
  std::FILE *file = std::fopen(path.c_str(), "w");
  if (!file) {
    error = path + ": cannot open for writing: " + errnoMessage(errno);
    return nullptr;
  }
  return std::unique_ptr<MetricsWriter>(new MetricsWriter(path, file));
}

MetricsWriter::~MetricsWriter() {
  std::string ignored;
  close(ignored);
}

bool MetricsWriter::write(const StepMetrics &metrics, std::string &error) {
  std::string where = path_ + ": cannot write the metrics of step " +
                      std::to_string(metrics.step);
  if (!file_) {
    error = where + ": the file is closed";
    return false;
  }
  std::string line = metricsLine(metrics) + "\n";
  errno = 0;
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() ||
      std::fflush(file_) != 0) {
    int err = errno;
    // The stream keeps its error flag; later lines would fail the same way.
    std::clearerr(file_);
    error = where + ": " + (err ? errnoMessage(err) : "write failed");
    return false;
  }
  return true;
}

bool MetricsWriter::close(std::string &error) {
  if (!file_)
    return true;
  int result = std::fclose(file_);
  int err = errno;
  file_ = nullptr;
  if (result != 0) {
    error = path_ + ": cannot close: " + errnoMessage(err);
    return false;
  }
  return true;
}

} // namespace qlora::train
