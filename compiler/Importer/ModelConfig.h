//===- ModelConfig.h - Shapes and hyper-parameters of a model ---*- C++ -*-===//
//
// What the importer needs to know about a LLaMA-family model, read from a
// Hugging Face config.json or taken from a built-in preset.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_COMPILER_IMPORTER_MODELCONFIG_H
#define QLORACC_COMPILER_IMPORTER_MODELCONFIG_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace qloracc::importer {

/// LLaMA-3's RoPE frequency adjustment (`rope_type: "llama3"`).
struct Llama3RopeScaling {
  double factor = 8.0;
  double lowFreqFactor = 1.0;
  double highFreqFactor = 4.0;
  int64_t originalMaxPositionEmbeddings = 8192;
};

struct ModelConfig {
  std::string architecture; // LlamaForCausalLM or MistralForCausalLM
  std::string nameOrPath;   // preset name or checkpoint directory
  int64_t vocabSize = 0;
  int64_t hiddenSize = 0;
  int64_t intermediateSize = 0;
  int64_t numHiddenLayers = 0;
  int64_t numAttentionHeads = 0;
  int64_t numKeyValueHeads = 0;
  int64_t headDim = 0;
  int64_t maxPositionEmbeddings = 0;
  double rmsNormEps = 1e-5;
  double ropeTheta = 10000.0;
  std::optional<Llama3RopeScaling> ropeScaling;
  /// Mistral's sliding attention window; sequences longer than it are
  /// rejected since the attention op is plain causal.
  std::optional<int64_t> slidingWindow;
  bool tieWordEmbeddings = false;
};

/// A frozen tensor of the model, named as transformers names it.
struct FrozenTensor {
  std::string name;
  std::vector<int64_t> shape;
  /// The weight of a linear layer (a projection or lm_head): the tensors
  /// bitsandbytes may store in 4 bits.
  bool linear = false;
};

/// Every frozen tensor the architecture needs, in checkpoint order: the
/// embedding, each layer's norms and projections, the final norm, and
/// lm_head unless tied.
std::vector<FrozenTensor> frozenTensors(const ModelConfig &config);

/// Parses a Hugging Face `config.json` (transformers 4.x `rope_theta` +
/// `rope_scaling`, or 5.x `rope_parameters`). Errors name the file and key.
llvm::Expected<ModelConfig> readHfConfig(llvm::StringRef configPath);

/// The built-in presets: `tiny` and the real models' shapes.
llvm::ArrayRef<llvm::StringRef> presetNames();
std::optional<ModelConfig> getPreset(llvm::StringRef name);

} // namespace qloracc::importer

#endif // QLORACC_COMPILER_IMPORTER_MODELCONFIG_H
