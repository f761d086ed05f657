//===- GraphBuilder.cpp - The LLaMA forward and loss in qlora ops ---------===//
//
// Mirrors transformers' LlamaForCausalLM.forward, one qlora op per step, so a
// reader can hold the two side by side.
//
//===----------------------------------------------------------------------===//
#include "compiler/Importer/GraphBuilder.h"

#include "dialects/nf4/Nf4Dialect.h"
#include "dialects/qlora/QloraDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/STLExtras.h"

using namespace mlir;
using namespace qloracc::importer;

namespace {

class LossGraphBuilder {
public:
  LossGraphBuilder(OpBuilder &builder, const ModelConfig &config,
                   const LoraOptions &lora, double loraScaling,
                   GraphShape shape, WeightBinder bind)
      : b(builder), loc(builder.getUnknownLoc()), config(config), lora(lora),
        loraScaling(loraScaling), shape(shape), bind(bind),
        f32(builder.getF32Type()) {
    for (const FrozenTensor &tensor : frozenTensors(config))
      shapes[tensor.name] = tensor;
  }

  void build(func::FuncOp func) {
    Block *entry = func.addEntryBlock();
    b.setInsertionPointToStart(entry);
    Value tokens = entry->getArgument(0), labels = entry->getArgument(1);

    setScope("model.embed_tokens");
    Value embedTable = weight("model.embed_tokens.weight");
    Value hidden =
        toCompute(qlora::EmbeddingOp::create(b, loc, embedTable, tokens));
    for (int64_t i = 0; i < config.numHiddenLayers; ++i) {
      std::string layer = "model.layers." + std::to_string(i);
      setScope(layer);
      hidden = decoderLayer(hidden, layer + ".");
    }
    setScope("model.norm");
    hidden = rmsNorm(hidden, "model.norm.weight");
    setScope("lm_head");
    Value head =
        config.tieWordEmbeddings ? embedTable : weight("lm_head.weight");
    Value logits =
        qlora::LinearOp::create(b, loc, hidden, head, Value(), Value(), nullptr,
                                nullptr, /*dropout_stream=*/nullptr);
    setScope("loss");
    Value loss = qlora::CrossEntropyOp::create(b, loc, logits, labels,
                                               /*normalizer=*/Value());
    func::ReturnOp::create(b, loc, loss);
  }

private:
  /// Ops created from here on are located at the module they belong to
  /// (`model.layers.3`, ...), so that diagnostics on the in-memory graph
  /// name it (model.mlir is printed without locations).
  void setScope(StringRef module) {
    loc = NameLoc::get(b.getStringAttr(module));
  }

  Value decoderLayer(Value hidden, const std::string &prefix) {
    int64_t heads = config.numAttentionHeads, kvHeads = config.numKeyValueHeads;
    Value normed = rmsNorm(hidden, prefix + "input_layernorm.weight");
    Value q =
        splitHeads(projection(normed, prefix + "self_attn.", "q_proj"), heads);
    Value k = splitHeads(projection(normed, prefix + "self_attn.", "k_proj"),
                         kvHeads);
    Value v = splitHeads(projection(normed, prefix + "self_attn.", "v_proj"),
                         kvHeads);
    Value qRotated = rope(q);
    Value kRotated = rope(k);
    Value attention = qlora::AttentionOp::create(b, loc, qRotated, kRotated, v,
                                                 /*scale=*/nullptr,
                                                 /*causal=*/nullptr);
    Value merged =
        reshape(attention, {shape.batch, shape.seq, heads * config.headDim});
    Value attnOut = projection(merged, prefix + "self_attn.", "o_proj");
    hidden = qlora::AddOp::create(b, loc, hidden, attnOut);

    normed = rmsNorm(hidden, prefix + "post_attention_layernorm.weight");
    Value gate = projection(normed, prefix + "mlp.", "gate_proj");
    Value up = projection(normed, prefix + "mlp.", "up_proj");
    Value gateActivated = qlora::SiluOp::create(b, loc, gate);
    Value activated = qlora::MulOp::create(b, loc, gateActivated, up);
    Value mlpOut = projection(activated, prefix + "mlp.", "down_proj");
    return qlora::AddOp::create(b, loc, hidden, mlpOut);
  }

  /// A linear layer `<scope><module>`, with LoRA when `module` is a target.
  Value projection(Value input, const std::string &scope, StringRef module) {
    std::string path = scope + module.str();
    Value w = weight(path + ".weight");
    if (!llvm::is_contained(lora.targets, module))
      return qlora::LinearOp::create(b, loc, input, w, Value(), Value(),
                                     nullptr, nullptr,
                                     /*dropout_stream=*/nullptr);
    auto wType = cast<RankedTensorType>(w.getType());
    int64_t out = wType.getDimSize(0), in = wType.getDimSize(1);
    Value a = loraParam(path + ".lora_A.weight", {lora.r, in},
                        qlora::LoraInit::kaiming_uniform);
    Value bMat = loraParam(path + ".lora_B.weight", {out, lora.r},
                           qlora::LoraInit::zeros);
    // BuildTrainingStep names the dropout mask stream per micro-batch.
    return qlora::LinearOp::create(
        b, loc, input, w, a, bMat, b.getF64FloatAttr(loraScaling),
        b.getF64FloatAttr(lora.dropout), /*dropout_stream=*/nullptr);
  }

  Value rmsNorm(Value input, const std::string &name) {
    return qlora::RmsNormOp::create(b, loc, input, weight(name),
                                    b.getF64FloatAttr(config.rmsNormEps));
  }

  Value rope(Value input) {
    qlora::RopeScalingAttr scaling;
    if (const std::optional<Llama3RopeScaling> &s = config.ropeScaling)
      scaling = qlora::RopeScalingAttr::get(
          b.getContext(), APFloat(s->factor), APFloat(s->lowFreqFactor),
          APFloat(s->highFreqFactor), s->originalMaxPositionEmbeddings);
    return qlora::RopeOp::create(b, loc, input,
                                 b.getF64FloatAttr(config.ropeTheta), scaling);
  }

  Value splitHeads(Value input, int64_t heads) {
    return reshape(input, {shape.batch, shape.seq, heads, config.headDim});
  }

  Value reshape(Value input, ArrayRef<int64_t> dims) {
    return qlora::ReshapeOp::create(b, loc, input, dims);
  }

  /// Casts to the compute type when the stored type differs.
  Value toCompute(Value value) {
    auto type = cast<RankedTensorType>(value.getType());
    if (type.getElementType() == f32)
      return value;
    return qlora::CastOp::create(b, loc, value, TypeAttr::get(f32));
  }

  Value weight(const std::string &name) {
    const FrozenTensor &tensor = shapes.at(name);
    WeightBinding binding = bind(tensor);
    auto type = RankedTensorType::get(tensor.shape, binding.elementType);
    Value stored = qlora::WeightOp::create(
        b, loc, binding.quantized ? binding.quantized : type,
        b.getStringAttr(name),
        llvm::cast_if_present<qlora::SourceAttr>(binding.source),
        binding.value);
    if (!binding.quantized)
      return stored;
    return nf4::DequantizeOp::create(b, loc, type, stored);
  }

  Value loraParam(const std::string &name, ArrayRef<int64_t> dims,
                  qlora::LoraInit init) {
    auto type = RankedTensorType::get(dims, f32);
    return qlora::LoraParamOp::create(
        b, loc, type, b.getStringAttr(name),
        qlora::LoraInitAttr::get(b.getContext(), init),
        b.getI64IntegerAttr(lora.seed));
  }

  OpBuilder &b;
  Location loc;
  const ModelConfig &config;
  const LoraOptions &lora;
  double loraScaling;
  GraphShape shape;
  WeightBinder bind;
  Type f32;
  std::map<std::string, FrozenTensor> shapes;
};

Attribute modelConfigAttr(MLIRContext &context, const ModelConfig &config) {
  return qlora::ModelConfigAttr::get(
      &context, config.architecture, config.nameOrPath, config.vocabSize,
      config.hiddenSize, config.intermediateSize, config.numHiddenLayers,
      config.numAttentionHeads, config.numKeyValueHeads, config.headDim,
      APFloat(config.rmsNormEps), APFloat(config.ropeTheta),
      config.tieWordEmbeddings);
}

qlora::LoraConfigAttr loraConfigAttr(Builder &b, const LoraOptions &lora) {
  SmallVector<Attribute> targets;
  for (const std::string &target : lora.targets)
    targets.push_back(b.getStringAttr(target));
  return qlora::LoraConfigAttr::get(b.getContext(), lora.r, APFloat(lora.alpha),
                                    APFloat(lora.dropout), lora.useRslora,
                                    b.getArrayAttr(targets), lora.seed);
}

} // namespace

OwningOpRef<ModuleOp> qloracc::importer::buildLossGraph(
    MLIRContext &context, const ModelConfig &config, const LoraOptions &lora,
    GraphShape shape, WeightBinder bind) {
  // QloraDialect loads nf4, the dialect of quantized weights.
  context.loadDialect<qlora::QloraDialect, func::FuncDialect>();
  OpBuilder b(&context);
  Location loc = b.getUnknownLoc();
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  module->getOperation()->setAttr(qlora::QloraDialect::kModelAttrName,
                                  modelConfigAttr(context, config));
  qlora::LoraConfigAttr loraConfig = loraConfigAttr(b, lora);
  module->getOperation()->setAttr(qlora::QloraDialect::kLoraAttrName,
                                  loraConfig);

  auto ids = RankedTensorType::get({shape.batch, shape.seq}, b.getI32Type());
  b.setInsertionPointToEnd(module->getBody());
  auto func = func::FuncOp::create(
      b, loc, "loss", b.getFunctionType({ids, ids}, {b.getF32Type()}));
  // The attribute owns the alpha/r (or rsLoRA) formula.
  LossGraphBuilder(b, config, lora, loraConfig.getScaling(), shape, bind)
      .build(func);
  return module;
}
