//===- AdapterConfig.cpp - adapter_config.json ----------------------------===//
//
// Writes the fields of PEFT's LoraConfig (and its PeftConfig base) that
// every PEFT release since LoRA gained use_rslora and use_dora (0.9) knows,
// each with the value PEFT writes for a plain LoRA adapter. Newer fields
// such as peft_version are left out: older PEFT releases refuse keys they
// do not know, and PEFT fills absent fields with their defaults.
//
//===----------------------------------------------------------------------===//
#include "runtime/adapter/AdapterFiles.h"

#include "runtime/format/Safetensors.h"

#include <algorithm>
#include <cmath>
#include <set>

namespace qlora::adapter::detail {
namespace {

using Json = nlohmann::json;

/// lora_alpha is an int in PEFT's LoraConfig; an integral alpha is written
/// as one so that the file reads as PEFT's does.
Json alphaJson(double alpha) {
  if (std::isfinite(alpha) && alpha == std::trunc(alpha) &&
      std::fabs(alpha) < 0x1p53)
    return static_cast<int64_t>(alpha);
  return alpha;
}

std::string dumpForMessage(const Json &value) {
  return value.dump(-1, ' ', /*ensure_ascii=*/true,
                    Json::error_handler_t::replace);
}

/// Reports `field` of `path` as found, against what train.bin expects.
bool mismatch(const std::string &path, std::string_view field,
              const Json &found, const Json &expected, std::string &error) {
  error = path + ": \"" + std::string(field) + "\" is " +
          dumpForMessage(found) + ", but train.bin expects " +
          dumpForMessage(expected);
  return false;
}

} // namespace

std::vector<std::string>
targetModulesFor(const AdapterConfig &config,
                 std::span<const LoraTensorRef> tensors) {
  std::set<std::string> names(config.targetModules.begin(),
                              config.targetModules.end());
  if (names.empty())
    for (const LoraTensorRef &tensor : tensors) {
      size_t dot = tensor.module.rfind('.');
      names.insert(dot == std::string::npos ? tensor.module
                                            : tensor.module.substr(dot + 1));
    }
  return {names.begin(), names.end()};
}

bool adapterConfigText(const AdapterConfig &config,
                       const std::vector<std::string> &targetModules,
                       std::string &text, std::string &problem) {
  for (const std::string &name : targetModules)
    if (!format::isValidUtf8(name)) {
      problem =
          "target module '" + format::escapeForMessage(name) + "' is not UTF-8";
      return false;
    }
  if (!format::isValidUtf8(config.baseModelNameOrPath)) {
    problem = "base_model_name_or_path '" +
              format::escapeForMessage(config.baseModelNameOrPath) +
              "' is not UTF-8";
    return false;
  }
  // nlohmann::json keeps keys sorted, as PEFT's json.dumps(sort_keys=True).
  Json json = Json::object();
  json["alpha_pattern"] = Json::object();
  json["auto_mapping"] = nullptr;
  json["base_model_name_or_path"] = config.baseModelNameOrPath.empty()
                                        ? Json(nullptr)
                                        : Json(config.baseModelNameOrPath);
  json["bias"] = "none";
  json["fan_in_fan_out"] = false;
  json["inference_mode"] = true;
  json["init_lora_weights"] = true;
  json["layers_pattern"] = nullptr;
  json["layers_to_transform"] = nullptr;
  json["lora_alpha"] = alphaJson(config.alpha);
  json["lora_dropout"] = config.dropout;
  json["modules_to_save"] = nullptr;
  json["peft_type"] = "LORA";
  json["r"] = config.r;
  json["rank_pattern"] = Json::object();
  json["revision"] = nullptr;
  json["target_modules"] = targetModules;
  json["task_type"] = "CAUSAL_LM";
  json["use_dora"] = false;
  json["use_rslora"] = config.useRslora;
  text = json.dump(2, ' ', /*ensure_ascii=*/true);
  return true;
}

bool checkAdapterConfig(const std::string &path, const Json &config,
                        const AdapterConfig &expected,
                        const std::vector<std::string> &targetModules,
                        std::string &error) {
  if (!config.is_object()) {
    error = path + ": found " + std::string(config.type_name()) +
            ", expected a JSON object (a PEFT LoraConfig)";
    return false;
  }
  auto field = [&](std::string_view name) -> const Json * {
    auto it = config.find(name);
    return it == config.end() ? nullptr : &*it;
  };
  auto missing = [&](std::string_view name, std::string_view what) {
    error = path + ": no \"" + std::string(name) + "\" key, expected " +
            std::string(what);
    return false;
  };

  const Json *peftType = field("peft_type");
  if (!peftType)
    return missing("peft_type", "\"LORA\"");
  if (*peftType != "LORA")
    return mismatch(path, "peft_type", *peftType, "LORA", error);

  const Json *r = field("r");
  if (!r)
    return missing("r", "the LoRA rank " + std::to_string(expected.r));
  if (!r->is_number_integer() || r->get<int64_t>() != expected.r)
    return mismatch(path, "r", *r, expected.r, error);

  const Json *alpha = field("lora_alpha");
  if (!alpha)
    return missing("lora_alpha", dumpForMessage(alphaJson(expected.alpha)));
  if (!alpha->is_number() || alpha->get<double>() != expected.alpha)
    return mismatch(path, "lora_alpha", *alpha, alphaJson(expected.alpha),
                    error);

  // Absent in files from PEFT releases before rsLoRA/DoRA: the defaults.
  const Json *rslora = field("use_rslora");
  if (rslora ? *rslora != expected.useRslora : expected.useRslora)
    return mismatch(path, "use_rslora", rslora ? *rslora : Json(false),
                    expected.useRslora, error);
  if (const Json *dora = field("use_dora"); dora && *dora != false)
    return mismatch(path, "use_dora", *dora, false, error);

  // A regex string or null cannot be compared with module names; the tensor
  // keys are checked one by one afterwards anyway.
  if (const Json *targets = field("target_modules");
      targets && targets->is_array()) {
    std::set<Json> found(targets->begin(), targets->end());
    std::set<Json> wanted(targetModules.begin(), targetModules.end());
    if (found != wanted)
      return mismatch(path, "target_modules", *targets, targetModules, error);
  }
  return true;
}

bool checkTensorRefs(const std::string &path,
                     std::span<const LoraTensorRef> tensors, int64_t r,
                     std::string &error) {
  for (const LoraTensorRef &tensor : tensors) {
    std::string where = path + ": module '" + tensor.module + "': ";
    if (tensor.module.empty()) {
      error = path + ": a LoRA module has an empty name";
      return false;
    }
    if (tensor.rank != r) {
      error = where + "rank " + std::to_string(tensor.rank) +
              ", expected r = " + std::to_string(r) + " as in the config";
      return false;
    }
    if (tensor.inFeatures <= 0 || tensor.outFeatures <= 0) {
      error = where + "in_features " + std::to_string(tensor.inFeatures) +
              " and out_features " + std::to_string(tensor.outFeatures) +
              ", expected both positive";
      return false;
    }
    if (!tensor.loraA || !tensor.loraB) {
      error = where + "no buffer for lora_A or lora_B";
      return false;
    }
  }
  return true;
}

} // namespace qlora::adapter::detail
