//===- QloraAttrs.cpp - qlora attribute verifiers -------------------------===//
#include "dialects/qlora/QloraDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>

using namespace mlir;
using namespace mlir::qlora;

#include "dialects/qlora/QloraEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/qlora/QloraAttrs.cpp.inc"

void QloraDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/qlora/QloraAttrs.cpp.inc"
      >();
}

LogicalResult
RopeScalingAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                        APFloat factorValue, APFloat lowFreqFactorValue,
                        APFloat highFreqFactorValue,
                        int64_t originalMaxPositionEmbeddings) {
  double factor = factorValue.convertToDouble();
  double lowFreqFactor = lowFreqFactorValue.convertToDouble();
  double highFreqFactor = highFreqFactorValue.convertToDouble();
  if (!(factor > 0))
    return emitError() << "rope scaling factor must be positive, got "
                       << factor;
  if (!(lowFreqFactor > 0) || !(highFreqFactor > lowFreqFactor))
    return emitError() << "expected 0 < low_freq_factor < high_freq_factor, "
                          "got low_freq_factor = "
                       << lowFreqFactor
                       << ", high_freq_factor = " << highFreqFactor;
  if (originalMaxPositionEmbeddings <= 0)
    return emitError() << "original_max_position_embeddings must be "
                          "positive, got "
                       << originalMaxPositionEmbeddings;
  return success();
}

LogicalResult ModelConfigAttr::verify(
    function_ref<InFlightDiagnostic()> emitError, StringRef architecture,
    StringRef nameOrPath, int64_t vocabSize, int64_t hiddenSize,
    int64_t intermediateSize, int64_t numHiddenLayers,
    int64_t numAttentionHeads, int64_t numKeyValueHeads, int64_t headDim,
    APFloat rmsNormEpsValue, APFloat ropeThetaValue, bool tieWordEmbeddings) {
  double rmsNormEps = rmsNormEpsValue.convertToDouble();
  double ropeTheta = ropeThetaValue.convertToDouble();
  for (auto [name, value] :
       {std::pair<StringRef, int64_t>{"vocab_size", vocabSize},
        {"hidden_size", hiddenSize},
        {"intermediate_size", intermediateSize},
        {"num_hidden_layers", numHiddenLayers},
        {"num_attention_heads", numAttentionHeads},
        {"num_key_value_heads", numKeyValueHeads},
        {"head_dim", headDim}})
    if (value <= 0)
      return emitError() << name << " must be positive, got " << value;
  if (numAttentionHeads % numKeyValueHeads != 0)
    return emitError() << "num_attention_heads (" << numAttentionHeads
                       << ") must be a multiple of num_key_value_heads ("
                       << numKeyValueHeads << ")";
  if (headDim % 2 != 0)
    return emitError() << "head_dim must be even for RoPE, got " << headDim;
  if (!(rmsNormEps > 0) || !(ropeTheta > 0))
    return emitError() << "rms_norm_eps and rope_theta must be positive, got "
                       << rmsNormEps << " and " << ropeTheta;
  return success();
}

LogicalResult
LoraConfigAttr::verify(function_ref<InFlightDiagnostic()> emitError, int64_t r,
                       APFloat alphaValue, APFloat dropoutValue, bool useRslora,
                       ArrayAttr targets, int64_t seed) {
  double alpha = alphaValue.convertToDouble();
  double dropout = dropoutValue.convertToDouble();
  if (r <= 0)
    return emitError() << "LoRA rank r must be positive, got " << r;
  if (!(alpha > 0))
    return emitError() << "lora_alpha must be positive, got " << alpha;
  if (!(dropout >= 0 && dropout < 1))
    return emitError() << "lora_dropout must be in [0, 1), got " << dropout;
  if (targets.empty())
    return emitError() << "LoRA needs at least one target module";
  for (Attribute target : targets)
    if (!isa<StringAttr>(target))
      return emitError() << "LoRA target modules must be strings, got "
                         << target;
  return success();
}

double LoraConfigAttr::getScaling() const {
  double alpha = getAlpha().convertToDouble();
  return getUseRslora() ? alpha / std::sqrt(double(getR()))
                        : alpha / double(getR());
}
