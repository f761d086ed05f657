//===- AdapterSave.cpp - Writes PEFT adapter directories ------------------===//
#include "runtime/adapter/AdapterFiles.h"

#include "runtime/format/AtomicFile.h"
#include "runtime/format/SafetensorsWriter.h"

#include <bit>
#include <filesystem>
#include <system_error>

namespace qlora::adapter {

static_assert(std::endian::native == std::endian::little,
              "fp32 buffers are written as safetensors' little-endian bytes");

std::string adapterTensorKey(std::string_view module, bool isB) {
  return "base_model.model." + std::string(module) +
         (isB ? ".lora_B.weight" : ".lora_A.weight");
}

bool saveAdapterTensors(const std::string &path,
                        std::span<const LoraTensorRef> tensors,
                        std::string &error) {
  std::vector<format::TensorToWrite> toWrite;
  toWrite.reserve(2 * tensors.size());
  auto bytesOf = [](const float *data, int64_t rows, int64_t cols) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t *>(data),
                                    static_cast<size_t>(rows * cols) *
                                        sizeof(float));
  };
  for (const LoraTensorRef &tensor : tensors) {
    toWrite.push_back({adapterTensorKey(tensor.module, /*isB=*/false),
                       format::DType::F32,
                       {tensor.rank, tensor.inFeatures},
                       bytesOf(tensor.loraA, tensor.rank, tensor.inFeatures)});
    toWrite.push_back({adapterTensorKey(tensor.module, /*isB=*/true),
                       format::DType::F32,
                       {tensor.outFeatures, tensor.rank},
                       bytesOf(tensor.loraB, tensor.outFeatures, tensor.rank)});
  }
  return format::writeSafetensors(path, toWrite, {{"format", "pt"}}, error);
}

bool saveAdapter(const std::string &dir, const AdapterConfig &config,
                 std::span<const LoraTensorRef> tensors, std::string &error) {
  namespace fs = std::filesystem;
  std::string weightsPath = (fs::path(dir) / kAdapterWeightsFile).string();
  std::string configPath = (fs::path(dir) / kAdapterConfigFile).string();
  if (config.r < 1) {
    error = configPath + ": r is " + std::to_string(config.r) +
            ", expected a positive LoRA rank";
    return false;
  }
  if (!detail::checkTensorRefs(weightsPath, tensors, config.r, error))
    return false;
  std::string configText, problem;
  if (!detail::adapterConfigText(config,
                                 detail::targetModulesFor(config, tensors),
                                 configText, problem)) {
    error = configPath + ": " + problem;
    return false;
  }

  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    error = dir + ": cannot create the adapter directory: " + ec.message();
    return false;
  }
  if (!fs::is_directory(dir, ec)) {
    error = dir + ": exists and is not a directory, expected a directory for "
                  "the adapter";
    return false;
  }

  // Each file is replaced atomically; the pair is not, so a crash between
  // the two renames leaves new weights beside the previous config.
  return saveAdapterTensors(weightsPath, tensors, error) &&
         format::writeFileAtomically(configPath, configText, error);
}

} // namespace qlora::adapter
