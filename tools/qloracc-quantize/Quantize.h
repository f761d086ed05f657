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

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace qlora::quantize {

/// Python's repr() of a finite double (what json.dumps writes): the shortest
/// round-trip digits, fixed notation for decimal exponents -4..15 (with ".0"
/// when integral), otherwise "1.5e-05" / "1e+16".
std::string pythonFloatRepr(double value);

/// The torch dtype name bitsandbytes stores for `dtype` ("float32",
/// "float16", "bfloat16"); empty for a dtype that is not quantized.
std::string_view torchDtypeName(format::DType dtype);

/// The bytes of `X.weight.quant_state.bitsandbytes__nf4`: json.dumps of
/// {quant_type, blocksize, dtype, shape, nested_blocksize, nested_dtype,
/// nested_offset}, in that order, with json.dumps' default separators.
std::string bnbQuantStateJson(std::string_view torchDtype,
                              std::span<const int64_t> shape, int64_t blocksize,
                              int64_t nestedBlocksize, float offset);

/// True for the tensors that are quantized: the name ends in "_proj.weight".
bool isLinearWeightName(std::string_view name);

struct QuantizeSummary {
  int64_t quantized = 0;
  int64_t copied = 0;
};

/// Reads `inputPath`, quantizes its linear weights and writes `outputPath`
/// atomically, with the input's "__metadata__" (plus "format": "pt" when it
/// has none, as transformers writes). On failure returns false with `error`
/// set to one line naming the file (and the tensor), and writes nothing.
bool quantizeCheckpoint(const std::string &inputPath,
                        const std::string &outputPath, QuantizeSummary &summary,
                        std::string &error);

} // namespace qlora::quantize

#endif // QLORACC_TOOLS_QLORACC_QUANTIZE_QUANTIZE_H
