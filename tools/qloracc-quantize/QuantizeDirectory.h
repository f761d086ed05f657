//===- QuantizeDirectory.h - HF model directory to 4-bit --------*- C++ -*-===//
//
// Turns a Hugging Face model directory (config.json plus model.safetensors,
// or model.safetensors.index.json and its shards) into the directory that
// transformers' save_pretrained writes for the model loaded with
// BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
// bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=<model dtype>):
//
//  - every shard quantized by quantizeCheckpoint, under its own name (each
//    tensor stays in the shard it came from);
//  - the index's weight_map listing the new keys, metadata.total_size the
//    bytes of all tensors and metadata.total_parameters as num_parameters()
//    counts a 4-bit model;
//  - config.json with transformers' quantization_config block, every other
//    key kept, written as transformers writes it (sorted keys, indent 2);
//  - every other file (tokenizer, generation_config.json, ...) copied.
//
// The output is built in a temporary directory beside OUT_DIR and renamed
// into place at the end: a failure leaves no partial output.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_TOOLS_QLORACC_QUANTIZE_QUANTIZEDIRECTORY_H
#define QLORACC_TOOLS_QLORACC_QUANTIZE_QUANTIZEDIRECTORY_H

#include "tools/qloracc-quantize/Quantize.h"

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace qlora::quantize {

struct DirectoryOptions {
  QuantizeOptions quantize;
  /// bnb_4bit_compute_dtype ("float32", "float16", "bfloat16"); empty: the
  /// config's "dtype" (or "torch_dtype"), else the linear weights' dtype.
  std::string computeDtype;
  /// Replace an existing non-empty output directory.
  bool force = false;
};

struct DirectorySummary {
  /// Summed over the shards.
  int64_t quantized = 0;
  int64_t copied = 0;
  int64_t shards = 0;
  /// Files and directories copied unchanged.
  int64_t otherFiles = 0;
  /// The bnb_4bit_compute_dtype written.
  std::string computeDtype;
};

/// Called with one line per shard quantized (for progress on stderr).
using ProgressFn = std::function<void(const std::string &line)>;

/// True when `path` names a directory (the directory mode's input).
bool isDirectory(const std::string &path);

/// Writes the 4-bit model of `inputDir` to `outputDir`. Refuses an input
/// that is already quantized (a quantization_config in config.json or
/// bitsandbytes quant-state tensors), an output that is the input, and an
/// existing non-empty `outputDir` unless `options.force`. On failure returns
/// false with `error` set to one line naming the file (and the tensor), and
/// leaves `outputDir` as it was.
bool quantizeDirectory(const std::string &inputDir,
                       const std::string &outputDir,
                       const DirectoryOptions &options,
                       const ProgressFn &progress, DirectorySummary &summary,
                       std::string &error);

} // namespace qlora::quantize

#endif // QLORACC_TOOLS_QLORACC_QUANTIZE_QUANTIZEDIRECTORY_H
