//===- QuantizeDirectory.cpp - HF model directory to 4-bit ----------------===//
#include "tools/qloracc-quantize/QuantizeDirectory.h"

#include "tools/qloracc-quantize/PythonJson.h"

#include "runtime/format/AtomicFile.h"
#include "runtime/format/Json.h"
#include "runtime/format/Safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <unistd.h>
#include <vector>

namespace qlora::quantize {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kConfigName = "config.json";
constexpr std::string_view kWeightsName = "model.safetensors";
constexpr std::string_view kIndexName = "model.safetensors.index.json";

std::string joinPath(const fs::path &dir, std::string_view name) {
  return (dir / name).string();
}

/// `path` without trailing separators, so that its parent is the directory
/// that holds it.
fs::path withoutTrailingSlash(std::string path) {
  while (path.size() > 1 && path.back() == '/')
    path.pop_back();
  return fs::path(path);
}

/// mkdtemp of "<dir>/.<name>.<tag>-XXXXXX": a fresh empty directory beside
/// the output (same file system, so the final rename is atomic).
std::optional<fs::path> makeSiblingDirectory(const fs::path &target,
                                             std::string_view tag,
                                             std::string &error) {
  fs::path parent = target.parent_path();
  if (parent.empty())
    parent = ".";
  std::string pattern =
      joinPath(parent, "." + target.filename().string() + "." +
                           std::string(tag) + "-XXXXXX");
  if (!::mkdtemp(pattern.data())) {
    error = target.string() + ": cannot create a temporary directory in '" +
            parent.string() + "': " + std::generic_category().message(errno);
    return std::nullopt;
  }
  return fs::path(pattern);
}

/// A directory removed with its contents when the object dies, unless
/// release()d: every failure path leaves nothing behind.
class ScratchDirectory {
public:
  explicit ScratchDirectory(fs::path path) : path_(std::move(path)) {}
  ~ScratchDirectory() {
    if (path_.empty())
      return;
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  ScratchDirectory(const ScratchDirectory &) = delete;
  ScratchDirectory &operator=(const ScratchDirectory &) = delete;

  const fs::path &path() const { return path_; }
  void release() { path_.clear(); }

private:
  fs::path path_;
};

std::string jsonTypeName(const nlohmann::json &value) {
  return value.type_name();
}

/// The shard file names of an index, checked to be plain names inside the
/// directory, and the tensors each is said to hold.
bool readWeightMap(const std::string &indexPath, const nlohmann::json &index,
                   std::map<std::string, std::vector<std::string>> &byShard,
                   std::string &error) {
  if (!index.is_object() || !index.contains("weight_map") ||
      !index["weight_map"].is_object()) {
    error = indexPath +
            ": expected an object with a \"weight_map\" object, "
            "found " +
            (index.is_object() && index.contains("weight_map")
                 ? "a weight_map that is " + jsonTypeName(index["weight_map"])
                 : "none");
    return false;
  }
  for (const auto &[tensor, shard] : index["weight_map"].items()) {
    std::string where =
        indexPath + ": tensor '" + format::escapeForMessage(tensor) + "': ";
    if (!shard.is_string()) {
      error =
          where + "expected a shard file name, found " + jsonTypeName(shard);
      return false;
    }
    const std::string &name = shard.get_ref<const std::string &>();
    if (name.empty() || name == "." || name == ".." ||
        name.find('/') != std::string::npos) {
      error = where + "shard '" + format::escapeForMessage(name) +
              "' is not a file name inside the model directory";
      return false;
    }
    byShard[name].push_back(tensor);
  }
  if (byShard.empty()) {
    error = indexPath + ": the weight_map lists no tensors";
    return false;
  }
  return true;
}

/// The quantization_config block transformers 5.x writes for
/// BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
/// bnb_4bit_use_double_quant=..., bnb_4bit_compute_dtype=...): its to_dict(),
/// every other field at its default.
nlohmann::json bnbQuantizationConfig(const std::string &computeDtype,
                                     bool doubleQuant) {
  nlohmann::json config = nlohmann::json::object();
  config["_load_in_4bit"] = true;
  config["_load_in_8bit"] = false;
  config["bnb_4bit_compute_dtype"] = computeDtype;
  config["bnb_4bit_quant_storage"] = "uint8";
  config["bnb_4bit_quant_type"] = "nf4";
  config["bnb_4bit_use_double_quant"] = doubleQuant;
  config["llm_int8_enable_fp32_cpu_offload"] = false;
  config["llm_int8_has_fp16_weight"] = false;
  config["llm_int8_skip_modules"] = nullptr;
  config["llm_int8_threshold"] = 6.0;
  config["load_in_4bit"] = true;
  config["load_in_8bit"] = false;
  config["quant_method"] = "bitsandbytes";
  return config;
}

/// The model's dtype as the config names it ("dtype", or "torch_dtype"
/// before transformers 4.56), when it is one that bitsandbytes computes in.
std::string configDtype(const nlohmann::json &config) {
  for (const char *key : {"dtype", "torch_dtype"}) {
    auto it = config.find(key);
    if (it == config.end() || !it->is_string())
      continue;
    const std::string &name = it->get_ref<const std::string &>();
    if (name == "float32" || name == "float16" || name == "bfloat16")
      return name;
  }
  return {};
}

/// True when `path` is `ancestor` or lies inside it (both canonical).
bool isWithin(const fs::path &path, const fs::path &ancestor) {
  auto [a, p] =
      std::mismatch(ancestor.begin(), ancestor.end(), path.begin(), path.end());
  return a == ancestor.end();
}

bool writeJson(const fs::path &dir, std::string_view name,
               const nlohmann::json &value, std::string &error) {
  return format::writeFileAtomically(joinPath(dir, name),
                                     dumpJsonLikePython(value) + "\n", error);
}

/// Copies every entry of `inputDir` not in `handled` into `scratch`,
/// following symbolic links (a Hugging Face cache snapshot is made of them);
/// hidden directories (.git, .cache) and the output itself are left out.
bool copyOtherFiles(const fs::path &inputDir,
                    const std::set<std::string> &handled,
                    const fs::path &output, const fs::path &scratch,
                    int64_t &copied, std::string &error) {
  std::error_code ec;
  std::vector<fs::directory_entry> entries;
  for (fs::directory_iterator it(inputDir, ec), end; !ec && it != end;
       it.increment(ec))
    entries.push_back(*it);
  if (ec) {
    error = inputDir.string() + ": cannot list the directory: " + ec.message();
    return false;
  }
  std::sort(entries.begin(), entries.end());
  for (const fs::directory_entry &entry : entries) {
    std::string name = entry.path().filename().string();
    if (handled.count(name))
      continue;
    std::error_code ignored;
    if (fs::equivalent(entry.path(), output, ignored) ||
        fs::equivalent(entry.path(), scratch, ignored))
      continue;
    fs::path target = scratch / name;
    if (entry.is_directory(ignored)) {
      if (name.front() == '.')
        continue;
      fs::copy(entry.path(), target, fs::copy_options::recursive, ec);
    } else if (entry.is_regular_file(ignored)) {
      fs::copy_file(entry.path(), target, ec);
    } else {
      continue; // a socket, a dangling link: nothing transformers reads
    }
    if (ec) {
      error = entry.path().string() + ": cannot copy to '" + target.string() +
              "': " + ec.message();
      return false;
    }
    ++copied;
  }
  return true;
}

/// Renames `scratch` to `output`. An existing `output` (empty, or replaced
/// under --force) is first moved aside, and put back if the rename fails.
bool installOutput(const fs::path &scratch, const fs::path &output,
                   bool outputExists, std::string &error) {
  std::error_code ec;
  if (!outputExists) {
    fs::rename(scratch, output, ec);
    if (ec)
      error = output.string() + ": cannot rename '" + scratch.string() +
              "' to it: " + ec.message();
    return !ec;
  }
  std::optional<fs::path> aside =
      makeSiblingDirectory(output, "qloracc-old", error);
  if (!aside)
    return false;
  ScratchDirectory old(*aside);
  fs::rename(output, old.path(), ec);
  if (ec) {
    error = output.string() +
            ": cannot move the existing directory aside: " + ec.message();
    return false;
  }
  fs::rename(scratch, output, ec);
  if (ec) {
    error = output.string() + ": cannot rename '" + scratch.string() +
            "' to it: " + ec.message();
    std::error_code ignored;
    fs::rename(old.path(), output, ignored);
    old.release();
    return false;
  }
  return true; // `old` removes the replaced directory
}

} // namespace

bool isDirectory(const std::string &path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}

bool quantizeDirectory(const std::string &inputDir,
                       const std::string &outputDir,
                       const DirectoryOptions &options,
                       const ProgressFn &progress, DirectorySummary &summary,
                       std::string &error) {
  summary = {};
  const fs::path input = withoutTrailingSlash(inputDir);
  const fs::path output = withoutTrailingSlash(outputDir);

  // config.json: present, an object, not already quantized.
  const std::string configPath = joinPath(input, kConfigName);
  std::optional<nlohmann::json> config =
      format::readJsonFile(configPath, error);
  if (!config)
    return false;
  if (!config->is_object()) {
    error =
        configPath + ": expected a JSON object, found " + jsonTypeName(*config);
    return false;
  }
  if (auto it = config->find("quantization_config"); it != config->end()) {
    std::string method = it->is_object() && it->contains("quant_method") &&
                                 (*it)["quant_method"].is_string()
                             ? (*it)["quant_method"].get<std::string>()
                             : "unknown";
    error = configPath +
            ": the model is already quantized (it has a "
            "quantization_config, quant_method '" +
            format::escapeForMessage(method) +
            "'); qloracc-quantize needs the original weights";
    return false;
  }

  // The weights: one file, or an index and its shards.
  std::error_code ec;
  const std::string weightsPath = joinPath(input, kWeightsName);
  const std::string indexPath = joinPath(input, kIndexName);
  bool haveWeights = fs::exists(weightsPath, ec);
  bool haveIndex = fs::exists(indexPath, ec);
  if (haveWeights && haveIndex) {
    error = input.string() + ": has both " + std::string(kWeightsName) +
            " and " + std::string(kIndexName) +
            "; remove the checkpoint transformers should not load";
    return false;
  }
  if (!haveWeights && !haveIndex) {
    error = input.string() + ": no " + std::string(kWeightsName) + " or " +
            std::string(kIndexName) +
            " (only safetensors checkpoints are quantized)";
    return false;
  }
  std::optional<nlohmann::json> index;
  std::map<std::string, std::vector<std::string>> byShard;
  if (haveIndex) {
    index = format::readJsonFile(indexPath, error);
    if (!index || !readWeightMap(indexPath, *index, byShard, error))
      return false;
  } else {
    byShard[std::string(kWeightsName)];
  }

  // The output: not the input, not holding it, empty unless --force.
  std::error_code inputEc, outputEc;
  fs::path canonicalInput = fs::weakly_canonical(input, inputEc);
  fs::path canonicalOutput = fs::weakly_canonical(output, outputEc);
  if (!inputEc && !outputEc && isWithin(canonicalInput, canonicalOutput)) {
    error = output.string() + ": is (or contains) the input directory '" +
            input.string() + "'; choose another output directory";
    return false;
  }
  bool outputExists = fs::exists(fs::symlink_status(output, ec));
  if (outputExists) {
    if (!fs::is_directory(output, ec)) {
      error = output.string() + ": exists and is not a directory";
      return false;
    }
    if (!fs::is_empty(output, ec) && !options.force) {
      error = output.string() +
              ": exists and is not empty (pass --force to replace it)";
      return false;
    }
  }

  std::optional<fs::path> scratchPath =
      makeSiblingDirectory(output, "qloracc-tmp", error);
  if (!scratchPath)
    return false;
  ScratchDirectory scratch(*scratchPath);

  // Every shard, quantized under its own name.
  nlohmann::json weightMap = nlohmann::json::object();
  uint64_t totalSize = 0;
  int64_t extraParameters = 0;
  std::string weightDtype;
  std::set<std::string> handled = {std::string(kConfigName)};
  int64_t shardNumber = 0;
  for (const auto &[shard, listed] : byShard) {
    ++shardNumber;
    handled.insert(shard);
    auto start = std::chrono::steady_clock::now();
    const std::string shardPath = joinPath(input, shard);
    QuantizeSummary shardSummary;
    if (!quantizeCheckpoint(shardPath, joinPath(scratch.path(), shard),
                            options.quantize, shardSummary, error))
      return false;

    std::set<std::string> written(shardSummary.tensorNames.begin(),
                                  shardSummary.tensorNames.end());
    for (const std::string &tensor : listed) {
      if (!written.count(tensor)) {
        error = indexPath + ": tensor '" + format::escapeForMessage(tensor) +
                "': listed in shard '" + format::escapeForMessage(shard) +
                "', which has no such tensor";
        return false;
      }
    }
    for (const std::string &tensor : shardSummary.tensorNames) {
      if (weightMap.contains(tensor)) {
        error = shardPath + ": tensor '" + format::escapeForMessage(tensor) +
                "': also in shard '" + weightMap[tensor].get<std::string>() +
                "'";
        return false;
      }
      weightMap[tensor] = shard;
    }
    totalSize += shardSummary.tensorBytes;
    extraParameters += shardSummary.extraParameters;
    if (weightDtype.empty())
      weightDtype = shardSummary.weightDtype;
    summary.quantized += shardSummary.quantized;
    summary.copied += shardSummary.copied;
    ++summary.shards;
    if (progress) {
      double seconds = std::chrono::duration<double>(
                           std::chrono::steady_clock::now() - start)
                           .count();
      char timing[32];
      std::snprintf(timing, sizeof(timing), "%.1f", seconds);
      progress("[" + std::to_string(shardNumber) + "/" +
               std::to_string(byShard.size()) + "] " + shard + ": " +
               std::to_string(shardSummary.quantized) +
               " linear weights quantized, " +
               std::to_string(shardSummary.copied) + " tensors copied (" +
               timing + " s)");
    }
  }

  // The index, as save_pretrained writes it for the 4-bit model.
  if (index) {
    handled.insert(std::string(kIndexName));
    nlohmann::json &metadata = (*index)["metadata"];
    if (!metadata.is_object())
      metadata = nlohmann::json::object();
    if (auto it = metadata.find("total_parameters");
        it != metadata.end() && it->is_number_integer())
      *it = it->get<int64_t>() + extraParameters;
    metadata["total_size"] = totalSize;
    (*index)["weight_map"] = std::move(weightMap);
    if (!writeJson(scratch.path(), kIndexName, *index, error))
      return false;
  }

  // config.json with its quantization_config.
  summary.computeDtype = options.computeDtype;
  if (summary.computeDtype.empty())
    summary.computeDtype = configDtype(*config);
  if (summary.computeDtype.empty())
    summary.computeDtype = weightDtype.empty() ? "float32" : weightDtype;
  (*config)["quantization_config"] =
      bnbQuantizationConfig(summary.computeDtype, options.quantize.doubleQuant);
  if (!writeJson(scratch.path(), kConfigName, *config, error))
    return false;

  if (!copyOtherFiles(input, handled, output, scratch.path(),
                      summary.otherFiles, error))
    return false;
  if (!installOutput(scratch.path(), output, outputExists, error))
    return false;
  scratch.release();
  return true;
}

} // namespace qlora::quantize
