//===- AdapterLoad.cpp - Reads PEFT adapter directories -------------------===//
//
// Everything is checked before the first buffer is written, so a refused
// adapter leaves the caller's LoRA weights as they were.
//
//===----------------------------------------------------------------------===//
#include "runtime/adapter/AdapterFiles.h"

#include "runtime/format/Json.h"
#include "runtime/format/Safetensors.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

namespace qlora::adapter {
namespace {

using format::DType;
using format::TensorView;

/// Maps PEFT's in-memory key "<module>.lora_A.<adapter>.weight" to the
/// saved form "<module>.lora_A.weight"; other names are returned unchanged.
std::string canonicalKey(const std::string &name) {
  constexpr std::string_view kWeight = ".weight";
  for (std::string_view marker : {".lora_A.", ".lora_B."}) {
    size_t at = name.rfind(marker);
    if (at == std::string::npos)
      continue;
    std::string_view rest = std::string_view(name).substr(at + marker.size());
    size_t dot = rest.find('.');
    if (dot != std::string_view::npos && rest.substr(dot) == kWeight)
      return name.substr(0, at + marker.size()) + "weight";
  }
  return name;
}

float halfToFloat(uint16_t half) {
  float sign = (half & 0x8000) ? -1.0f : 1.0f;
  uint32_t exponent = (half >> 10) & 0x1f;
  uint32_t mantissa = half & 0x3ff;
  if (exponent == 0x1f) {
    // Inf and NaN keep their payload bits.
    uint32_t bits = ((half & 0x8000u) << 16) | 0x7f800000u | (mantissa << 13);
    float value;
    std::memcpy(&value, &bits, sizeof(value));
    return value;
  }
  // Subnormals are mantissa * 2^-24; every half is exact in fp32.
  if (exponent == 0)
    return sign * std::ldexp(static_cast<float>(mantissa), -24);
  return sign * std::ldexp(static_cast<float>(mantissa | 0x400),
                           static_cast<int>(exponent) - 25);
}

/// Widens `view` (F32, BF16 or F16, little-endian, possibly unaligned) to
/// fp32.
void widenToFloat(const TensorView &view, float *out) {
  const uint8_t *bytes = view.bytes.data();
  size_t count = view.bytes.size() / format::dtypeSize(view.dtype);
  for (size_t i = 0; i < count; ++i) {
    if (view.dtype == DType::F32) {
      uint32_t bits = 0;
      for (size_t b = 4; b-- > 0;)
        bits = (bits << 8) | bytes[4 * i + b];
      std::memcpy(&out[i], &bits, sizeof(float));
      continue;
    }
    uint16_t half = static_cast<uint16_t>(bytes[2 * i] | bytes[2 * i + 1] << 8);
    if (view.dtype == DType::BF16) {
      uint32_t bits = uint32_t{half} << 16;
      std::memcpy(&out[i], &bits, sizeof(float));
    } else {
      out[i] = halfToFloat(half);
    }
  }
}

/// One tensor the caller expects and the buffer it goes to.
struct Expected {
  std::string key;
  std::vector<int64_t> shape;
  float *buffer;
  const TensorView *found = nullptr;
};

std::string quotedList(const std::vector<std::string> &names) {
  constexpr size_t kShown = 3;
  std::string text;
  for (size_t i = 0; i < names.size() && i < kShown; ++i)
    text += (i ? ", '" : "'") + names[i] + "'";
  if (names.size() > kShown)
    text += " and " + std::to_string(names.size() - kShown) + " more";
  return text;
}

/// Matches the file's tensors with `expected` and checks names, dtypes and
/// shapes; fills Expected::found.
bool matchTensors(const format::SafetensorsFile &file,
                  std::vector<Expected> &expected, int64_t r,
                  std::string &error) {
  const std::string &path = file.path();
  std::map<std::string, const TensorView *> byKey;
  for (const TensorView &view : file.tensors()) {
    auto [it, inserted] = byKey.emplace(canonicalKey(view.name), &view);
    if (!inserted) {
      error = path + ": tensors '" + it->second->name + "' and '" + view.name +
              "' are both " + it->first + ", expected one tensor per key";
      return false;
    }
  }

  std::vector<std::string> missing;
  for (Expected &tensor : expected) {
    auto it = byKey.find(tensor.key);
    if (it == byKey.end()) {
      missing.push_back(tensor.key);
      continue;
    }
    tensor.found = it->second;
    byKey.erase(it);
  }
  if (!missing.empty()) {
    error = path + ": " + std::to_string(missing.size()) +
            " LoRA tensors that train.bin expects are missing: " +
            quotedList(missing);
    return false;
  }
  if (!byKey.empty()) {
    std::vector<std::string> extra;
    for (const auto &[key, view] : byKey)
      extra.push_back(view->name);
    error = path + ": " + std::to_string(extra.size()) +
            " tensors that train.bin has no LoRA parameter for: " +
            quotedList(extra);
    return false;
  }

  for (const Expected &tensor : expected) {
    const TensorView &view = *tensor.found;
    if (view.dtype != DType::F32 && view.dtype != DType::BF16 &&
        view.dtype != DType::F16) {
      error = path + ": " + view.name + " has dtype " +
              std::string(format::dtypeName(view.dtype)) +
              ", expected F32, BF16 or F16";
      return false;
    }
    if (view.shape != tensor.shape) {
      error = path + ": " + view.name + " has shape " +
              format::formatShape(view.shape) + ", but train.bin expects " +
              format::formatShape(tensor.shape) + " (r=" + std::to_string(r) +
              ")";
      return false;
    }
  }
  return true;
}

} // namespace

bool loadAdapter(const std::string &dir, const AdapterConfig &expected,
                 std::span<const LoraTensorRef> into, std::string &error) {
  namespace fs = std::filesystem;
  std::string weightsPath = (fs::path(dir) / kAdapterWeightsFile).string();
  std::string configPath = (fs::path(dir) / kAdapterConfigFile).string();
  if (!detail::checkTensorRefs(weightsPath, into, expected.r, error))
    return false;

  std::error_code ec;
  if (!fs::exists(weightsPath, ec)) {
    fs::path pickled = fs::path(dir) / "adapter_model.bin";
    if (fs::exists(pickled, ec)) {
      error = pickled.string() +
              ": only adapter_model.safetensors adapters are supported, "
              "found a pickled adapter_model.bin (save with "
              "safe_serialization=True)";
      return false;
    }
  }

  std::optional<nlohmann::json> config =
      format::readJsonFile(configPath, error);
  if (!config || !detail::checkAdapterConfig(
                     configPath, *config, expected,
                     detail::targetModulesFor(expected, into), error))
    return false;

  std::unique_ptr<format::SafetensorsFile> file =
      format::SafetensorsFile::open(weightsPath, error);
  if (!file)
    return false;
  std::vector<Expected> tensors;
  tensors.reserve(2 * into.size());
  for (const LoraTensorRef &ref : into) {
    tensors.push_back({adapterTensorKey(ref.module, /*isB=*/false),
                       {ref.rank, ref.inFeatures},
                       ref.loraA});
    tensors.push_back({adapterTensorKey(ref.module, /*isB=*/true),
                       {ref.outFeatures, ref.rank},
                       ref.loraB});
  }
  if (!matchTensors(*file, tensors, expected.r, error))
    return false;
  for (const Expected &tensor : tensors)
    widenToFloat(*tensor.found, tensor.buffer);
  return true;
}

} // namespace qlora::adapter
