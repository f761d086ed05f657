//===- Presets.cpp - Built-in model shapes --------------------------------===//
//
// The shapes of the models our users fine-tune, as their config.json files on
// the Hugging Face hub give them, plus `tiny` for tests.
//
//===----------------------------------------------------------------------===//
#include "compiler/Importer/ModelConfig.h"

#include <vector>

using namespace qloracc::importer;

namespace {
struct Preset {
  llvm::StringRef name;
  llvm::StringRef hubId;
  llvm::StringRef architecture;
  int64_t vocab, hidden, intermediate, layers, heads, kvHeads, maxPositions;
  double rmsNormEps, ropeTheta;
  bool llama3Rope;
  int64_t slidingWindow; // 0: none
};

// name, hub id, architecture, vocab, hidden, intermediate, layers, heads,
// kv heads, max positions, rms_norm_eps, rope_theta, llama3 rope scaling,
// sliding window
constexpr Preset kPresets[] = {
    {"tiny", "qloracc/tiny", "LlamaForCausalLM", 256, 64, 128, 2, 4, 2, 256,
     1e-5, 10000.0, false, 0},
    {"llama2-7b", "meta-llama/Llama-2-7b-hf", "LlamaForCausalLM", 32000, 4096,
     11008, 32, 32, 32, 4096, 1e-5, 10000.0, false, 0},
    {"llama2-13b", "meta-llama/Llama-2-13b-hf", "LlamaForCausalLM", 32000, 5120,
     13824, 40, 40, 40, 4096, 1e-5, 10000.0, false, 0},
    {"llama2-70b", "meta-llama/Llama-2-70b-hf", "LlamaForCausalLM", 32000, 8192,
     28672, 80, 64, 8, 4096, 1e-5, 10000.0, false, 0},
    {"llama3-8b", "meta-llama/Llama-3.1-8B", "LlamaForCausalLM", 128256, 4096,
     14336, 32, 32, 8, 131072, 1e-5, 500000.0, true, 0},
    {"mistral-7b", "mistralai/Mistral-7B-v0.1", "MistralForCausalLM", 32000,
     4096, 14336, 32, 32, 8, 32768, 1e-5, 10000.0, false, 4096},
};
} // namespace

llvm::ArrayRef<llvm::StringRef> qloracc::importer::presetNames() {
  static const std::vector<llvm::StringRef> names = [] {
    std::vector<llvm::StringRef> result;
    for (const Preset &preset : kPresets)
      result.push_back(preset.name);
    return result;
  }();
  return names;
}

std::optional<ModelConfig> qloracc::importer::getPreset(llvm::StringRef name) {
  for (const Preset &preset : kPresets) {
    if (preset.name != name)
      continue;
    ModelConfig config;
    config.architecture = preset.architecture.str();
    config.nameOrPath = preset.hubId.str();
    config.vocabSize = preset.vocab;
    config.hiddenSize = preset.hidden;
    config.intermediateSize = preset.intermediate;
    config.numHiddenLayers = preset.layers;
    config.numAttentionHeads = preset.heads;
    config.numKeyValueHeads = preset.kvHeads;
    config.headDim = preset.hidden / preset.heads;
    config.maxPositionEmbeddings = preset.maxPositions;
    config.rmsNormEps = preset.rmsNormEps;
    config.ropeTheta = preset.ropeTheta;
    if (preset.llama3Rope)
      config.ropeScaling = Llama3RopeScaling{};
    if (preset.slidingWindow)
      config.slidingWindow = preset.slidingWindow;
    return config;
  }
  return std::nullopt;
}
