//===- Quantize.cpp - Checkpoint to bitsandbytes NF4 checkpoint -----------===//
#include "tools/qloracc-quantize/Quantize.h"

#include "runtime/backends/cpu/Float16.h"
#include "runtime/format/Nf4.h"
#include "runtime/format/Safetensors.h"
#include "runtime/format/SafetensorsWriter.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
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

/// `view`'s elements widened to fp32 (the bytes need not be aligned).
std::vector<float> widenToF32(const format::TensorView &view) {
  size_t count = static_cast<size_t>(view.numElements());
  std::vector<float> values(count);
  const uint8_t *bytes = view.bytes.data();
  for (size_t i = 0; i < count; ++i) {
    if (view.dtype == DType::F32) {
      std::memcpy(&values[i], bytes + 4 * i, 4);
      continue;
    }
    uint16_t bits;
    std::memcpy(&bits, bytes + 2 * i, 2);
    values[i] = view.dtype == DType::BF16 ? cpu::bf16ToFloat(bits)
                                          : cpu::halfToFloat(bits);
  }
  return values;
}

template <typename T> std::vector<uint8_t> toBytes(std::span<const T> values) {
  std::vector<uint8_t> bytes(values.size_bytes());
  if (!bytes.empty())
    std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

} // namespace

std::string pythonFloatRepr(double value) {
  // The shortest round-trip digits, as "d.ddde±XX".
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value,
                                 std::chars_format::scientific);
  if (ec != std::errc())
    return "nan";
  std::string text(buffer, end);
  size_t ePos = text.find('e');
  std::string mantissa = text.substr(0, ePos);
  int exponent = std::atoi(text.c_str() + ePos + 1);
  std::string sign;
  if (!mantissa.empty() && mantissa[0] == '-') {
    sign = "-";
    mantissa.erase(0, 1);
  }
  std::string digits;
  for (char c : mantissa)
    if (c != '.')
      digits += c;

  if (exponent < -4 || exponent >= 16) {
    std::string out = sign + digits.substr(0, 1);
    if (digits.size() > 1)
      out += "." + digits.substr(1);
    out += exponent < 0 ? "e-" : "e+";
    int magnitude = std::abs(exponent);
    if (magnitude < 10)
      out += "0";
    out += std::to_string(magnitude);
    return out;
  }
  // Fixed notation: the point goes after digit number exponent + 1.
  int point = exponent + 1;
  std::string intPart, fracPart;
  if (point <= 0) {
    intPart = "0";
    fracPart = std::string(static_cast<size_t>(-point), '0') + digits;
  } else if (static_cast<size_t>(point) >= digits.size()) {
    intPart = digits + std::string(point - digits.size(), '0');
  } else {
    intPart = digits.substr(0, point);
    fracPart = digits.substr(point);
  }
  if (fracPart.empty())
    fracPart = "0";
  return sign + intPart + "." + fracPart;
}

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
                              int64_t nestedBlocksize, float offset) {
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
  json += "], \"nested_blocksize\": ";
  json += std::to_string(nestedBlocksize);
  // The nested 8-bit step always runs on fp32 absmax values.
  json += ", \"nested_dtype\": \"float32\", \"nested_offset\": ";
  json += pythonFloatRepr(static_cast<double>(offset));
  json += "}";
  return json;
}

bool isLinearWeightName(std::string_view name) {
  constexpr std::string_view suffix = "_proj.weight";
  return name.size() >= suffix.size() &&
         name.substr(name.size() - suffix.size()) == suffix;
}

bool quantizeCheckpoint(const std::string &inputPath,
                        const std::string &outputPath, QuantizeSummary &summary,
                        std::string &error) {
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

  summary = {};
  for (const format::TensorView &view : input->tensors()) {
    if (!isLinearWeightName(view.name)) {
      outputs.push_back({view.name, view.dtype, view.shape, view.bytes});
      ++summary.copied;
      continue;
    }
    std::string where =
        inputPath + ": tensor '" + format::escapeForMessage(view.name) + "': ";
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
    std::vector<float> values = widenToF32(view);
    std::string problem;
    std::optional<format::Nf4Quantized> nf4 =
        format::quantizeNf4(values, format::kNf4DefaultBlocksize, problem);
    if (!nf4) {
      error = where + problem;
      return false;
    }
    std::optional<format::DoubleQuantized> nested = format::doubleQuantize(
        nf4->absmax, format::kNf4NestedBlocksize, problem);
    if (!nested) {
      error = where + problem;
      return false;
    }
    format::DoubleQuantized &dq = *nested;
    int64_t packedBytes = static_cast<int64_t>(nf4->packed.size());
    int64_t blocks = static_cast<int64_t>(dq.codes.size());
    int64_t nestedBlocks = static_cast<int64_t>(dq.nestedAbsmax.size());
    std::string json =
        bnbQuantStateJson(torchDtype, view.shape, format::kNf4DefaultBlocksize,
                          format::kNf4NestedBlocksize, dq.offset);

    add(view.name, DType::U8, {packedBytes, 1}, std::move(nf4->packed));
    add(view.name + ".absmax", DType::U8, {blocks}, std::move(dq.codes));
    add(view.name + ".quant_map", DType::F32, {16}, quantMap);
    add(view.name + ".nested_absmax", DType::F32, {nestedBlocks},
        toBytes(std::span<const float>(dq.nestedAbsmax)));
    add(view.name + ".nested_quant_map", DType::F32,
        {static_cast<int64_t>(dynamicMap.size())}, nestedQuantMap);
    add(view.name + ".quant_state.bitsandbytes__nf4", DType::U8,
        {static_cast<int64_t>(json.size())},
        std::vector<uint8_t>(json.begin(), json.end()));
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

  std::map<std::string, std::string> metadata = input->metadata();
  metadata.try_emplace("format", "pt");
  return format::writeSafetensors(outputPath, outputs, metadata, error);
}

} // namespace qlora::quantize
