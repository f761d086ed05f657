//===- Quantize.h - Checkpoint to bitsandbytes NF4 checkpoint ---*- C++ -*-===//
//
// Turns a safetensors checkpoint into the one transformers' save_pretrained
// writes for the same model loaded with BitsAndBytesConfig(load_in_4bit=True,
// bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True): every linear
// weight (a 2-D F32/F16/BF16 tensor named "..._proj.weight") becomes NF4 with
// double quantization (blocksize 64, nested 256) under bitsandbytes'
// QuantState.as_dict(packed=True) keys; every other tensor is copied as it
// is. Tensors are laid out as the Python safetensors package lays them out
// (by dtype, widest first, then by name), so the file is byte-identical with
// transformers' on the CPU.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_TOOLS_QLORACC_QUANTIZE_QUANTIZE_H
#define QLORACC_TOOLS_QLORACC_QUANTIZE_QUANTIZE_H

#include "runtime/format/DType.h"
#include "runtime/format/Nf4.h"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qlora::quantize {

/// How linear weights are quantized; the defaults are bitsandbytes' (and
/// the only ones transformers' BitsAndBytesConfig writes).
struct QuantizeOptions {
  /// Elements per first-level absmax.
  int64_t blocksize = format::kNf4DefaultBlocksize;
  /// First-level absmax values per nested absmax (double quantization).
  int64_t nestedBlocksize = format::kNf4NestedBlocksize;
  /// bnb_4bit_use_double_quant: false keeps the absmax as fp32.
  bool doubleQuant = true;
};

/// True for the block sizes bitsandbytes accepts (32, 64, ..., 4096), for
/// the 4-bit step and the nested 8-bit step alike.
bool isBnbBlocksize(int64_t blocksize);

/// The torch dtype name bitsandbytes stores for `dtype` ("float32",
/// "float16", "bfloat16"); empty for a dtype that is not quantized.
std::string_view torchDtypeName(format::DType dtype);

/// The bytes of `X.weight.quant_state.bitsandbytes__nf4`: json.dumps of
/// {quant_type, blocksize, dtype, shape} followed, with double quantization,
/// by {nested_blocksize, nested_dtype, nested_offset}, in that order, with
/// json.dumps' default separators.
std::string bnbQuantStateJson(std::string_view torchDtype,
                              std::span<const int64_t> shape, int64_t blocksize,
                              bool doubleQuant, int64_t nestedBlocksize,
                              float offset);

/// True for the tensors that are quantized: the name ends in "_proj.weight".
bool isLinearWeightName(std::string_view name);

/// True for the tensors bitsandbytes adds next to a quantized weight: a
/// checkpoint holding one is already quantized.
bool isBnbQuantStateName(std::string_view name);

struct QuantizeSummary {
  int64_t quantized = 0;
  int64_t copied = 0;
  /// The names of the tensors written.
  std::vector<std::string> tensorNames;
  /// The bytes of every tensor written: what huggingface_hub sums into an
  /// index's metadata.total_size.
  uint64_t tensorBytes = 0;
  /// What transformers' num_parameters() counts beyond the source tensors'
  /// elements: a 4-bit weight counts twice its packed bytes, one more than
  /// its elements when their count is odd.
  int64_t extraParameters = 0;
  /// The torch dtype of the first quantized weight ("" when none).
  std::string weightDtype;
};

/// Reads `inputPath`, quantizes its linear weights and writes `outputPath`
/// atomically, with the input's "__metadata__" (plus "format": "pt" when it
/// has none, as transformers writes). On failure returns false with `error`
/// set to one line naming the file (and the tensor), and writes nothing; a
/// checkpoint that already holds bitsandbytes quant-state tensors is such a
/// failure.
bool quantizeCheckpoint(const std::string &inputPath,
                        const std::string &outputPath,
                        const QuantizeOptions &options,
                        QuantizeSummary &summary, std::string &error);

} // namespace qlora::quantize

#endif // QLORACC_TOOLS_QLORACC_QUANTIZE_QUANTIZE_H
