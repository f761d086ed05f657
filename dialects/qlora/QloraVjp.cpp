//===- QloraVjp.cpp - Vector-Jacobian products of the model ops -----------===//
//
// One buildVjp per forward op (DifferentiableOpInterface). Frozen weights
// never get a gradient: their slot is always null, and autodiff never asks
// for one because no LoRA parameter flows into a weight.
//
//===----------------------------------------------------------------------===//
#include "dialects/qlora/QloraDialect.h"

#include "mlir/IR/Builders.h"

using namespace mlir;
using namespace mlir::qlora;

/// The gradient list for `op`: null everywhere until filled.
static SmallVector<Value> noGrads(Operation *op) {
  return SmallVector<Value>(op->getNumOperands(), Value());
}

SmallVector<Value> EmbeddingOp::buildVjp(OpBuilder &, ValueRange,
                                         ArrayRef<bool>) {
  // Tokens are integers and the table is frozen.
  return noGrads(*this);
}

SmallVector<Value> CastOp::buildVjp(OpBuilder &b, ValueRange resultGrads,
                                    ArrayRef<bool> needGrad) {
  SmallVector<Value> grads = noGrads(*this);
  if (needGrad[0]) {
    Type from = getInput().getType().getElementType();
    grads[0] = CastOp::create(b, getLoc(), resultGrads[0], TypeAttr::get(from));
  }
  return grads;
}

SmallVector<Value> RmsNormOp::buildVjp(OpBuilder &b, ValueRange resultGrads,
                                       ArrayRef<bool> needGrad) {
  SmallVector<Value> grads = noGrads(*this);
  if (needGrad[0])
    grads[0] = RmsNormGradOp::create(b, getLoc(), resultGrads[0], getInput(),
                                     getWeight(), getEpsAttr());
  return grads;
}

SmallVector<Value> LinearOp::buildVjp(OpBuilder &b, ValueRange resultGrads,
                                      ArrayRef<bool> needGrad) {
  SmallVector<Value> grads = noGrads(*this);
  Value dy = resultGrads[0];
  enum { kInput = 0, kLoraA = 2, kLoraB = 3 };
  // Both gradients recompute the forward's dropout mask from its stream.
  if (needGrad[kInput])
    grads[kInput] = LinearGradInputOp::create(
        b, getLoc(), getInput().getType(), dy, getWeight(), getLoraA(),
        getLoraB(), getScalingAttr(), getDropoutAttr(), getDropoutStreamAttr());
  if (hasLora() && (needGrad[kLoraA] || needGrad[kLoraB])) {
    auto loraGrads = LoraGradOp::create(
        b, getLoc(), dy, getInput(), getLoraA(), getLoraB(), getScalingAttr(),
        getDropoutAttr(), getDropoutStreamAttr());
    grads[kLoraA] = loraGrads.getGradA();
    grads[kLoraB] = loraGrads.getGradB();
  }
  return grads;
}

SmallVector<Value> RopeOp::buildVjp(OpBuilder &b, ValueRange resultGrads,
                                    ArrayRef<bool> needGrad) {
  SmallVector<Value> grads = noGrads(*this);
  if (needGrad[0])
    grads[0] = RopeGradOp::create(b, getLoc(), resultGrads[0], getThetaAttr(),
                                  getScalingAttr());
  return grads;
}

SmallVector<Value> AttentionOp::buildVjp(OpBuilder &b, ValueRange resultGrads,
                                         ArrayRef<bool> needGrad) {
  SmallVector<Value> grads = noGrads(*this);
  if (llvm::none_of(needGrad, [](bool need) { return need; }))
    return grads;
  auto attentionGrads = AttentionGradOp::create(
      b, getLoc(), resultGrads[0], getQuery(), getKey(), getValue(),
      getResult(), getScaleAttr(), getCausalAttr());
  for (auto [i, grad] : llvm::enumerate(attentionGrads.getResults()))
    if (needGrad[i])
      grads[i] = grad;
  return grads;
}

SmallVector<Value> SiluOp::buildVjp(OpBuilder &b, ValueRange resultGrads,
                                    ArrayRef<bool> needGrad) {
  SmallVector<Value> grads = noGrads(*this);
  if (needGrad[0])
    grads[0] = SiluGradOp::create(b, getLoc(), resultGrads[0], getInput());
  return grads;
}

SmallVector<Value> AddOp::buildVjp(OpBuilder &, ValueRange resultGrads,
                                   ArrayRef<bool> needGrad) {
  SmallVector<Value> grads = noGrads(*this);
  for (unsigned i = 0; i < 2; ++i)
    if (needGrad[i])
      grads[i] = resultGrads[0];
  return grads;
}

SmallVector<Value> MulOp::buildVjp(OpBuilder &b, ValueRange resultGrads,
                                   ArrayRef<bool> needGrad) {
  SmallVector<Value> grads = noGrads(*this);
  if (needGrad[0])
    grads[0] = MulOp::create(b, getLoc(), resultGrads[0], getRhs());
  if (needGrad[1])
    grads[1] = MulOp::create(b, getLoc(), resultGrads[0], getLhs());
  return grads;
}

SmallVector<Value> ReshapeOp::buildVjp(OpBuilder &b, ValueRange resultGrads,
                                       ArrayRef<bool> needGrad) {
  SmallVector<Value> grads = noGrads(*this);
  if (needGrad[0])
    grads[0] = ReshapeOp::create(b, getLoc(), resultGrads[0],
                                 getInput().getType().getShape());
  return grads;
}

SmallVector<Value> CrossEntropyOp::buildVjp(OpBuilder &b,
                                            ValueRange resultGrads,
                                            ArrayRef<bool> needGrad) {
  SmallVector<Value> grads = noGrads(*this);
  if (needGrad[0])
    grads[0] = CrossEntropyGradOp::create(b, getLoc(), getLogits(), getLabels(),
                                          resultGrads[0], getNormalizer(),
                                          getIgnoreIndex());
  return grads;
}
