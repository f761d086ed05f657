//===- Importer.cpp - Model + LoRA configuration to a qlora graph ---------===//
#include "compiler/Importer/Importer.h"

#include "compiler/Importer/Checkpoint.h"
#include "compiler/Importer/QuantizedCheckpoint.h"
#include "dialects/qlora/QloraDialect.h"
#include "runtime/format/CounterRng.h"
#include "runtime/format/Nf4.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Path.h"

#include <cmath>

using namespace mlir;
using namespace qloracc::importer;
using ::qlora::format::DType;

namespace {

llvm::Error importError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

Type elementTypeOf(MLIRContext &context, DType dtype) {
  switch (dtype) {
  case DType::F32:
    return Float32Type::get(&context);
  case DType::F16:
    return Float16Type::get(&context);
  case DType::BF16:
    return BFloat16Type::get(&context);
  default:
    return {}; // Checkpoint::open admits float tensors only.
  }
}

/// The `tiny` preset's weights: norms are ones (as transformers initialises
/// them), every matrix is uniform with standard deviation 1/sqrt(columns),
/// drawn from the counter-based generator keyed by the seed and the tensor's
/// name. That is the scale of a trained model's weights rather than LLaMA's
/// 0.02 initialisation: behind a final RMSNorm, a frozen 0.02 lm_head caps
/// the logits near ±1.3, and no LoRA could then bring the loss below ~4.
ElementsAttr randomWeight(Builder &b, const FrozenTensor &tensor,
                          uint64_t seed) {
  int64_t count = 1;
  for (int64_t dim : tensor.shape)
    count *= dim;
  std::vector<float> values(count, 1.0f);
  bool isNorm = tensor.shape.size() == 1;
  if (!isNorm) {
    ::qlora::format::CounterRng rng(seed, tensor.name);
    float std = 1.0f / std::sqrt(float(tensor.shape.back()));
    const float bound = std * std::sqrt(3.0f);
    for (int64_t i = 0; i < count; ++i)
      values[i] = rng.uniform(i, -bound, bound);
  }
  auto type = RankedTensorType::get(tensor.shape, b.getF32Type());
  return DenseResourceElementsAttr::get(
      type, tensor.name,
      HeapAsmResourceBlob::allocateAndCopyInferAlign(llvm::ArrayRef(values)));
}

std::string absolutePath(llvm::StringRef path) {
  llvm::SmallString<256> real;
  if (llvm::sys::fs::real_path(path, real))
    return path.str();
  return real.str().str();
}

std::string configPathOf(llvm::StringRef directory) {
  llvm::SmallString<256> path(directory);
  llvm::sys::path::append(path, "config.json");
  return path.str().str();
}

llvm::Expected<ModelConfig> resolveConfig(const ImportRequest &request) {
  if (!request.preset.empty()) {
    std::optional<ModelConfig> config = getPreset(request.preset);
    if (!config)
      return importError(
          "unknown preset '" + request.preset +
          "' (expected one of: " + llvm::join(presetNames(), ", ") + ")");
    return *config;
  }
  if (!llvm::sys::fs::is_directory(request.modelDirectory))
    return importError(request.modelDirectory +
                       ": not a directory (expected a Hugging Face model "
                       "directory with config.json and *.safetensors)");
  std::string configPath = configPathOf(request.modelDirectory);
  if (!llvm::sys::fs::exists(configPath))
    return importError(configPath + ": not found");
  llvm::Expected<ModelConfig> config = readHfConfig(configPath);
  if (config)
    config->nameOrPath = absolutePath(request.modelDirectory);
  return config;
}

llvm::Error checkShape(const ModelConfig &config, GraphShape shape) {
  if (shape.batch <= 0 || shape.seq <= 1)
    return importError(llvm::formatv("--batch must be positive and --seq at "
                                     "least 2, got batch {0}, seq {1}",
                                     shape.batch, shape.seq)
                           .str());
  if (config.slidingWindow && shape.seq > *config.slidingWindow)
    return importError(llvm::formatv("--seq {0} exceeds the model's "
                                     "sliding_window {1}; sliding-window "
                                     "attention is not supported",
                                     shape.seq, *config.slidingWindow)
                           .str());
  return llvm::Error::success();
}

/// Sets `config`'s layer count to `numLayers` (--num-layers). A preset takes
/// any positive count; a checkpoint directory at most its own, and the names
/// of the frozen tensors of its layers past `numLayers` (with the quant-state
/// tensors a 4-bit checkpoint stores beside them) are returned, for the
/// checkpoint check to ignore.
llvm::Expected<std::vector<std::string>>
truncateLayers(ModelConfig &config, int64_t numLayers,
               llvm::StringRef modelDirectory) {
  if (numLayers <= 0)
    return importError(
        llvm::formatv("--num-layers must be positive, got {0}", numLayers)
            .str());
  std::vector<std::string> unused;
  if (modelDirectory.empty()) {
    config.numHiddenLayers = numLayers;
    return unused;
  }
  if (numLayers > config.numHiddenLayers)
    return importError(llvm::formatv("{0}: --num-layers {1} exceeds the "
                                     "checkpoint's num_hidden_layers {2}",
                                     configPathOf(modelDirectory), numLayers,
                                     config.numHiddenLayers)
                           .str());
  std::vector<FrozenTensor> all = frozenTensors(config);
  config.numHiddenLayers = numLayers;
  llvm::StringSet<> used;
  for (const FrozenTensor &tensor : frozenTensors(config))
    used.insert(tensor.name);
  for (const FrozenTensor &tensor : all) {
    if (used.contains(tensor.name))
      continue;
    unused.push_back(tensor.name);
    if (tensor.linear)
      for (std::string_view suffix : ::qlora::format::kBnbNf4CompanionSuffixes)
        unused.push_back(tensor.name + std::string(suffix));
  }
  return unused;
}

} // namespace

llvm::Expected<OwningOpRef<ModuleOp>>
qloracc::importer::importModel(MLIRContext &context,
                               const ImportRequest &request) {
  if (request.preset.empty() == request.modelDirectory.empty())
    return importError("give either a model directory or --preset, not both");
  llvm::Expected<ModelConfig> config = resolveConfig(request);
  if (!config)
    return config.takeError();
  // The layers of a checkpoint beyond --num-layers: present, but not used.
  std::vector<std::string> unusedLayerTensors;
  if (request.numLayers) {
    llvm::Expected<std::vector<std::string>> unused =
        truncateLayers(*config, *request.numLayers, request.modelDirectory);
    if (!unused)
      return unused.takeError();
    unusedLayerTensors = std::move(*unused);
  }

  bool isTiny = request.preset == "tiny";
  GraphShape shape;
  shape.batch = request.batch.value_or(1);
  shape.seq = request.seq.value_or(isTiny                   ? 64
                                   : request.preset.empty() ? 512
                                                            : 2048);
  if (llvm::Error err = checkShape(*config, shape))
    return std::move(err);

  std::optional<BnbQuantizationConfig> quantization;
  if (!request.modelDirectory.empty()) {
    llvm::Expected<std::optional<BnbQuantizationConfig>> read =
        readBnbQuantizationConfig(configPathOf(request.modelDirectory));
    if (!read)
      return read.takeError();
    quantization = std::move(*read);
  }

  Builder b(&context);
  std::vector<FrozenTensor> tensors = frozenTensors(*config);
  bool shapeOnly = request.noWeights || (!request.preset.empty() && !isTiny);

  if (shapeOnly || isTiny) {
    Type storage = isTiny ? b.getF32Type() : b.getBF16Type();
    auto bind = [&](const FrozenTensor &tensor) -> WeightBinding {
      if (!shapeOnly)
        return {storage, nullptr, randomWeight(b, tensor, request.weightSeed)};
      // Without a checkpoint, bitsandbytes' defaults give the NF4 layout.
      if (quantization && isQuantizedOnLoad(*quantization, tensor))
        return {storage, nullptr, nullptr,
                getNf4Type(context, tensor.shape,
                           ::qlora::format::kNf4DefaultBlocksize,
                           quantization->doubleQuant
                               ? ::qlora::format::kNf4NestedBlocksize
                               : 0)};
      return {storage, nullptr, nullptr};
    };
    return buildLossGraph(context, *config, request.lora, shape, bind);
  }

  // A tied checkpoint may still carry lm_head.weight; transformers ignores it.
  std::vector<std::string> ignorable = std::move(unusedLayerTensors);
  if (config->tieWordEmbeddings)
    ignorable.push_back("lm_head.weight");
  llvm::Expected<std::unique_ptr<Checkpoint>> checkpoint =
      Checkpoint::open(request.modelDirectory, tensors, ignorable,
                       /*acceptBnb4Bit=*/quantization.has_value());
  if (!checkpoint)
    return checkpoint.takeError();
  auto bind = [&](const FrozenTensor &tensor) -> WeightBinding {
    const TensorLocation *location = (*checkpoint)->find(tensor.name);
    auto source = mlir::qlora::SourceAttr::get(
        &context, absolutePath(location->file->path()), tensor.name);
    if (const std::optional<::qlora::format::BnbNf4Tensor> &nf4 = location->nf4)
      return {elementTypeOf(context, nf4->dtype), source, nullptr,
              getNf4Type(context, nf4->shape, nf4->blocksize,
                         nf4->nestedBlocksize)};
    return {elementTypeOf(context, location->tensor->dtype), source, nullptr};
  };
  return buildLossGraph(context, *config, request.lora, shape, bind);
}
