//===- Quantize.cpp - Checkpoint to bitsandbytes NF4 checkpoint -----------===//
#include "tools/qloracc-quantize/Quantize.h"

#include "tools/qloracc-quantize/PythonJson.h"

#include "runtime/format/Nf4.h"
#include "runtime/format/Nf4Quantizer.h"
#include "runtime/format/Safetensors.h"
#include "runtime/format/SafetensorsWriter.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <vector>

namespace qlora::quantize {
namespace {

using format::DType;

/// The order of safetensors' Rust Dtype enum, which the Python package sorts
/// tensors by (descending) before their names.
int safetensorsDtypeRank(DType dtype) {
  switch (dtype) {
  case DType::Bool:
    return 0;
  case DType::U8:
    return 1;
  case DType::I8:
    return 2;
  case DType::I16:
    return 3;
  case DType::F16:
    return 4;
  case DType::BF16:
    return 5;
  case DType::I32:
    return 6;
  case DType::F32:
    return 7;
  case DType::F64:
    return 8;
  case DType::I64:
    return 9;
  }
  return 0;
}

template <typename T> std::vector<uint8_t> toBytes(std::span<const T> values) {
  std::vector<uint8_t> bytes(values.size_bytes());
  if (!bytes.empty())
    std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

/// The one place that quantizes: every weight of every mode goes through
/// here, on all cores.
std::optional<format::Nf4Pieces> quantizeWeight(const format::TensorView &view,
                                                const QuantizeOptions &options,
                                                std::string &problem) {
  format::Nf4QuantizeOptions nf4;
  nf4.blocksize = options.blocksize;
  nf4.nestedBlocksize = options.doubleQuant ? options.nestedBlocksize : 0;
  return format::quantizeNf4Tensor(view.bytes.data(), view.dtype,
                                   view.numElements(), nf4, problem);
}

} // namespace

std::string_view torchDtypeName(DType dtype) {
  switch (dtype) {
  case DType::F32:
    return "float32";
  case DType::F16:
    return "float16";
  case DType::BF16:
    return "bfloat16";
  default:
    return {};
  }
}

std::string bnbQuantStateJson(std::string_view torchDtype,
                              std::span<const int64_t> shape, int64_t blocksize,
                              bool doubleQuant, int64_t nestedBlocksize,
                              float offset) {
  std::string json = "{\"quant_type\": \"nf4\", \"blocksize\": ";
  json += std::to_string(blocksize);
  json += ", \"dtype\": \"";
  json += torchDtype;
  json += "\", \"shape\": [";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i)
      json += ", ";
    json += std::to_string(shape[i]);
  }
  json += "]";
  if (doubleQuant) {
    json += ", \"nested_blocksize\": ";
    json += std::to_string(nestedBlocksize);
    // The nested 8-bit step always runs on fp32 absmax values.
    json += ", \"nested_dtype\": \"float32\", \"nested_offset\": ";
    json += pythonFloatRepr(static_cast<double>(offset));
  }
  json += "}";
  return json;
}

bool isBnbBlocksize(int64_t blocksize) {
  return blocksize >= 32 && blocksize <= 4096 &&
         (blocksize & (blocksize - 1)) == 0;
}

bool isLinearWeightName(std::string_view name) {
  constexpr std::string_view suffix = "_proj.weight";
  return name.size() >= suffix.size() &&
         name.substr(name.size() - suffix.size()) == suffix;
}

bool isBnbQuantStateName(std::string_view name) {
  auto endsWith = [&](std::string_view suffix) {
    return name.size() >= suffix.size() &&
           name.substr(name.size() - suffix.size()) == suffix;
  };
  // The 4-bit QuantState.as_dict(packed=True) keys, and the 8-bit ones.
  return name.find(".quant_state.bitsandbytes__") != std::string_view::npos ||
         endsWith(".weight.absmax") || endsWith(".weight.quant_map") ||
         endsWith(".weight.nested_absmax") ||
         endsWith(".weight.nested_quant_map") || endsWith(".SCB") ||
         endsWith(".weight_format");
}

bool quantizeCheckpoint(const std::string &inputPath,
                        const std::string &outputPath,
                        const QuantizeOptions &options,
                        QuantizeSummary &summary, std::string &error) {
  std::unique_ptr<format::SafetensorsFile> input =
      format::SafetensorsFile::open(inputPath, error);
  if (!input)
    return false;

  // Owns the bytes of every new tensor; a deque keeps them in place.
  std::deque<std::vector<uint8_t>> storage;
  std::vector<format::TensorToWrite> outputs;
  auto add = [&](std::string name, DType dtype, std::vector<int64_t> shape,
                 std::vector<uint8_t> bytes) {
    storage.push_back(std::move(bytes));
    outputs.push_back({std::move(name), dtype, std::move(shape),
                       std::span<const uint8_t>(storage.back())});
  };
  const std::vector<uint8_t> quantMap =
      toBytes(std::span<const float>(format::kNf4Code));
  const std::vector<float> dynamicMap = format::createDynamicMap(true);
  const std::vector<uint8_t> nestedQuantMap =
      toBytes(std::span<const float>(dynamicMap));

  // Before any weight: a packed 4-bit weight would otherwise be reported as
  // a U8 tensor that cannot be quantized.
  for (const format::TensorView &view : input->tensors()) {
    if (isBnbQuantStateName(view.name)) {
      error = inputPath + ": tensor '" + format::escapeForMessage(view.name) +
              "': the checkpoint is already quantized (a bitsandbytes "
              "quant-state tensor); quantize the original weights";
      return false;
    }
  }

  summary = {};
  for (const format::TensorView &view : input->tensors()) {
    std::string where =
        inputPath + ": tensor '" + format::escapeForMessage(view.name) + "': ";
    if (!isLinearWeightName(view.name)) {
      outputs.push_back({view.name, view.dtype, view.shape, view.bytes});
      ++summary.copied;
      continue;
    }
    std::string_view torchDtype = torchDtypeName(view.dtype);
    if (torchDtype.empty() || view.shape.size() != 2) {
      error = where +
              "a linear weight must be a 2-D F32, F16 or BF16 "
              "tensor to be quantized, found " +
              std::string(format::dtypeName(view.dtype)) + " " +
              format::formatShape(view.shape);
      return false;
    }
    if (view.numElements() == 0) {
      error = where + "shape " + format::formatShape(view.shape) +
              " has no elements to quantize";
      return false;
    }
    std::string problem;
    std::optional<format::Nf4Pieces> weight =
        quantizeWeight(view, options, problem);
    if (!weight) {
      error = where + problem;
      return false;
    }
    int64_t packedBytes = static_cast<int64_t>(weight->packed.size());
    std::string json = bnbQuantStateJson(
        torchDtype, view.shape, options.blocksize, options.doubleQuant,
        options.nestedBlocksize, weight->offset);

    add(view.name, DType::U8, {packedBytes, 1}, std::move(weight->packed));
    if (options.doubleQuant) {
      int64_t blocks = static_cast<int64_t>(weight->absmaxCodes.size());
      int64_t nestedBlocks = static_cast<int64_t>(weight->nestedAbsmax.size());
      add(view.name + ".absmax", DType::U8, {blocks},
          std::move(weight->absmaxCodes));
      add(view.name + ".quant_map", DType::F32, {16}, quantMap);
      add(view.name + ".nested_absmax", DType::F32, {nestedBlocks},
          toBytes(std::span<const float>(weight->nestedAbsmax)));
      add(view.name + ".nested_quant_map", DType::F32,
          {static_cast<int64_t>(dynamicMap.size())}, nestedQuantMap);
    } else {
      int64_t blocks = static_cast<int64_t>(weight->absmax.size());
      add(view.name + ".absmax", DType::F32, {blocks},
          toBytes(std::span<const float>(weight->absmax)));
      add(view.name + ".quant_map", DType::F32, {16}, quantMap);
    }
    add(view.name + ".quant_state.bitsandbytes__nf4", DType::U8,
        {static_cast<int64_t>(json.size())},
        std::vector<uint8_t>(json.begin(), json.end()));
    summary.extraParameters += 2 * packedBytes - view.numElements();
    if (summary.weightDtype.empty())
      summary.weightDtype = torchDtype;
    ++summary.quantized;
  }

  // The Python safetensors package's layout: widest dtype first, then name.
  std::stable_sort(
      outputs.begin(), outputs.end(),
      [](const format::TensorToWrite &a, const format::TensorToWrite &b) {
        int rankA = safetensorsDtypeRank(a.dtype);
        int rankB = safetensorsDtypeRank(b.dtype);
        if (rankA != rankB)
          return rankA > rankB;
        return a.name < b.name;
      });

  for (const format::TensorToWrite &tensor : outputs) {
    summary.tensorNames.push_back(tensor.name);
    summary.tensorBytes += tensor.bytes.size();
  }
  std::map<std::string, std::string> metadata = input->metadata();
  metadata.try_emplace("format", "pt");
  return format::writeSafetensors(outputPath, outputs, metadata, error);
}

} // namespace qlora::quantize
