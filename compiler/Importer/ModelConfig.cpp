//===- ModelConfig.cpp - Reading a Hugging Face config.json ---------------===//
#include "compiler/Importer/ModelConfig.h"

#include "runtime/format/Json.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FormatVariadic.h"

using namespace qloracc::importer;
using nlohmann::json;

namespace {

constexpr llvm::StringRef kSupportedArchitectures[] = {"LlamaForCausalLM",
                                                       "MistralForCausalLM"};

/// Typed access to one JSON object; the first failure is kept as an error
/// naming the file and the key.
class FieldReader {
public:
  FieldReader(const json &object, llvm::StringRef file, llvm::StringRef scope)
      : object(object), file(file), scope(scope) {}

  std::optional<int64_t> integer(llvm::StringRef key, bool required = true) {
    return typed<int64_t>(key, required, &json::is_number_integer,
                          "an integer");
  }

  std::optional<double> number(llvm::StringRef key, bool required = true) {
    return typed<double>(key, required, &json::is_number, "a number");
  }

  std::optional<bool> boolean(llvm::StringRef key) {
    return typed<bool>(key, /*required=*/false, &json::is_boolean,
                       "true or false");
  }

  std::optional<std::string> string(llvm::StringRef key, bool required = true) {
    return typed<std::string>(key, required, &json::is_string, "a string");
  }

  /// The member `key` when it is present and not null.
  const json *find(llvm::StringRef key, bool required) {
    auto it = object.find(key.str());
    if (it == object.end() || it->is_null()) {
      if (required && !error)
        error = llvm::formatv("{0}: missing required key '{1}{2}'", file, scope,
                              key)
                    .str();
      return nullptr;
    }
    return &*it;
  }

  void fail(llvm::StringRef key, llvm::StringRef expected, const json &found) {
    if (!error)
      error = llvm::formatv("{0}: key '{1}{2}': expected {3}, found {4}", file,
                            scope, key, expected, found.dump())
                  .str();
  }

  std::optional<std::string> error;

private:
  /// The member `key` as a T when `isExpectedType` holds for it.
  template <typename T>
  std::optional<T> typed(llvm::StringRef key, bool required,
                         bool (json::*isExpectedType)() const noexcept,
                         llvm::StringRef expected) {
    const json *value = find(key, required);
    if (!value)
      return std::nullopt;
    if (!(value->*isExpectedType)()) {
      fail(key, expected, *value);
      return std::nullopt;
    }
    return value->get<T>();
  }

  const json &object;
  llvm::StringRef file, scope;
};

llvm::Error configError(const std::string &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

/// Reads LLaMA-3 frequency scaling from a `rope_scaling` (4.x) or
/// `rope_parameters` (5.x) object. Other rope types are rejected rather than
/// silently computed wrong.
llvm::Error readRopeParameters(const json &rope, llvm::StringRef file,
                               llvm::StringRef scope, ModelConfig &config) {
  FieldReader fields(rope, file, scope);
  std::optional<std::string> type = fields.string("rope_type", false);
  if (!type)
    type = fields.string("type", false);
  if (std::optional<double> theta = fields.number("rope_theta", false))
    config.ropeTheta = *theta;
  if (!type || *type == "default") {
    if (fields.error)
      return configError(*fields.error);
    return llvm::Error::success();
  }
  if (*type != "llama3")
    return configError(llvm::formatv("{0}: key '{1}rope_type': unsupported "
                                     "RoPE type '{2}' (expected 'default' or "
                                     "'llama3')",
                                     file, scope, *type)
                           .str());
  Llama3RopeScaling scaling;
  scaling.factor = fields.number("factor").value_or(0);
  scaling.lowFreqFactor = fields.number("low_freq_factor").value_or(0);
  scaling.highFreqFactor = fields.number("high_freq_factor").value_or(0);
  scaling.originalMaxPositionEmbeddings =
      fields.integer("original_max_position_embeddings").value_or(0);
  if (fields.error)
    return configError(*fields.error);
  config.ropeScaling = scaling;
  return llvm::Error::success();
}

} // namespace

std::vector<FrozenTensor>
qloracc::importer::frozenTensors(const ModelConfig &config) {
  int64_t hidden = config.hiddenSize, inter = config.intermediateSize;
  int64_t qDim = config.numAttentionHeads * config.headDim;
  int64_t kvDim = config.numKeyValueHeads * config.headDim;
  std::vector<FrozenTensor> tensors;
  auto linear = [&](std::string name, int64_t out, int64_t in) {
    tensors.push_back({std::move(name), {out, in}, /*linear=*/true});
  };
  tensors.push_back({"model.embed_tokens.weight", {config.vocabSize, hidden}});
  for (int64_t i = 0; i < config.numHiddenLayers; ++i) {
    std::string prefix = "model.layers." + std::to_string(i) + ".";
    tensors.push_back({prefix + "input_layernorm.weight", {hidden}});
    linear(prefix + "self_attn.q_proj.weight", qDim, hidden);
    linear(prefix + "self_attn.k_proj.weight", kvDim, hidden);
    linear(prefix + "self_attn.v_proj.weight", kvDim, hidden);
    linear(prefix + "self_attn.o_proj.weight", hidden, qDim);
    tensors.push_back({prefix + "post_attention_layernorm.weight", {hidden}});
    linear(prefix + "mlp.gate_proj.weight", inter, hidden);
    linear(prefix + "mlp.up_proj.weight", inter, hidden);
    linear(prefix + "mlp.down_proj.weight", hidden, inter);
  }
  tensors.push_back({"model.norm.weight", {hidden}});
  if (!config.tieWordEmbeddings)
    linear("lm_head.weight", config.vocabSize, hidden);
  return tensors;
}

llvm::Expected<ModelConfig>
qloracc::importer::readHfConfig(llvm::StringRef configPath) {
  std::string error;
  std::optional<json> root =
      qlora::format::readJsonFile(configPath.str(), error);
  if (!root)
    return configError(error);
  if (!root->is_object())
    return configError(llvm::formatv("{0}: expected a JSON object, found {1}",
                                     configPath, root->type_name())
                           .str());
  FieldReader fields(*root, configPath, "");

  ModelConfig config;
  const json *architectures = fields.find("architectures", true);
  if (!architectures)
    return configError(*fields.error);
  if (!architectures->is_array() || architectures->size() != 1 ||
      !(*architectures)[0].is_string())
    return configError(llvm::formatv("{0}: key 'architectures': expected one "
                                     "architecture name, found {1}",
                                     configPath, architectures->dump())
                           .str());
  config.architecture = (*architectures)[0].get<std::string>();
  if (!llvm::is_contained(kSupportedArchitectures, config.architecture))
    return configError(
        llvm::formatv("{0}: unsupported architecture '{1}' (expected one of: "
                      "{2})",
                      configPath, config.architecture,
                      llvm::join(llvm::ArrayRef(kSupportedArchitectures), ", "))
            .str());

  config.vocabSize = fields.integer("vocab_size").value_or(0);
  config.hiddenSize = fields.integer("hidden_size").value_or(0);
  config.intermediateSize = fields.integer("intermediate_size").value_or(0);
  config.numHiddenLayers = fields.integer("num_hidden_layers").value_or(0);
  config.numAttentionHeads = fields.integer("num_attention_heads").value_or(0);
  config.numKeyValueHeads = fields.integer("num_key_value_heads", false)
                                .value_or(config.numAttentionHeads);
  config.rmsNormEps = fields.number("rms_norm_eps").value_or(0);
  config.maxPositionEmbeddings =
      fields.integer("max_position_embeddings", false).value_or(0);
  config.tieWordEmbeddings =
      fields.boolean("tie_word_embeddings").value_or(false);
  config.slidingWindow = fields.integer("sliding_window", false);
  std::optional<int64_t> headDim = fields.integer("head_dim", false);
  if (std::optional<double> theta = fields.number("rope_theta", false))
    config.ropeTheta = *theta;
  if (std::optional<std::string> act = fields.string("hidden_act", false);
      act && *act != "silu")
    fields.fail("hidden_act", "\"silu\"", json(*act));
  for (llvm::StringRef biasKey : {"attention_bias", "mlp_bias"})
    if (fields.boolean(biasKey).value_or(false))
      fields.fail(biasKey, "false (biases are not supported)", json(true));
  if (fields.error)
    return configError(*fields.error);

  for (llvm::StringRef ropeKey : {"rope_scaling", "rope_parameters"}) {
    const json *rope = fields.find(ropeKey, /*required=*/false);
    if (!rope)
      continue;
    if (!rope->is_object())
      return configError(llvm::formatv("{0}: key '{1}': expected an object, "
                                       "found {2}",
                                       configPath, ropeKey, rope->dump())
                             .str());
    if (llvm::Error err = readRopeParameters(*rope, configPath,
                                             (ropeKey + ".").str(), config))
      return std::move(err);
  }

  for (auto [key, value] :
       {std::pair<llvm::StringRef, int64_t>{"vocab_size", config.vocabSize},
        {"hidden_size", config.hiddenSize},
        {"intermediate_size", config.intermediateSize},
        {"num_hidden_layers", config.numHiddenLayers},
        {"num_attention_heads", config.numAttentionHeads},
        {"num_key_value_heads", config.numKeyValueHeads}})
    if (value <= 0)
      return configError(llvm::formatv("{0}: key '{1}': expected a positive "
                                       "integer, found {2}",
                                       configPath, key, value)
                             .str());
  if (config.numAttentionHeads % config.numKeyValueHeads != 0)
    return configError(
        llvm::formatv("{0}: num_attention_heads ({1}) is not a multiple of "
                      "num_key_value_heads ({2})",
                      configPath, config.numAttentionHeads,
                      config.numKeyValueHeads)
            .str());
  config.headDim =
      headDim.value_or(config.hiddenSize / config.numAttentionHeads);
  return config;
}
