//===- QloraTrainingOps.cpp - Verifiers of backward and optimizer ops -----===//
#include "dialects/qlora/QloraDialect.h"
#include "dialects/qlora/QloraVerifiers.h"

using namespace mlir;
using namespace mlir::qlora;

#include "dialects/qlora/QloraInterfaces.cpp.inc"

//===----------------------------------------------------------------------===//
// Verifiers
//===----------------------------------------------------------------------===//

/// `[..., n]` with `dy`'s leading dimensions.
static RankedTensorType withLastDim(RankedTensorType type, int64_t n) {
  SmallVector<int64_t> shape(type.getShape());
  shape.back() = n;
  return type.clone(shape);
}

/// A and B of `out x in` weight: `A: [r, in]`, `B: [out, r]`.
static LogicalResult verifyLoraPair(Operation *op, RankedTensorType weight,
                                    RankedTensorType a, RankedTensorType b) {
  int64_t out = weight.getDimSize(0), in = weight.getDimSize(1);
  if (a.getRank() != 2 || a.getDimSize(1) != in)
    return op->emitOpError("lora_a must be [r, ") << in << "], got " << a;
  if (b.getRank() != 2 || b.getDimSize(0) != out ||
      b.getDimSize(1) != a.getDimSize(0))
    return op->emitOpError("lora_b must be [")
           << out << ", " << a.getDimSize(0) << "], got " << b;
  return success();
}

LogicalResult LinearGradInputOp::verify() {
  RankedTensorType dy = getGradOutput().getType();
  RankedTensorType weight = getWeight().getType();
  if (weight.getRank() != 2)
    return emitOpError("weight must be [out, in], got ") << weight;
  if (dy.getRank() < 1 || dy.getShape().back() != weight.getDimSize(0))
    return emitOpError("grad_output must end in the weight's ")
           << weight.getDimSize(0) << " output features, got " << dy;
  if (getLoraA() && failed(verifyLoraPair(*this, weight, getLoraA().getType(),
                                          getLoraB().getType())))
    return failure();
  if (failed(verifyLoraDropout(*this, getDropout().convertToDouble(),
                               getLoraA() != nullptr, getDropoutStreamAttr())))
    return failure();
  RankedTensorType expected = withLastDim(dy, weight.getDimSize(1));
  if (getType() != expected)
    return emitOpError("result must be ")
           << expected << " (grad_output's shape with the weight's "
           << weight.getDimSize(1) << " input features), got " << getType();
  return success();
}

LogicalResult LoraGradOp::verify() {
  RankedTensorType dy = getGradOutput().getType();
  RankedTensorType x = getInput().getType();
  RankedTensorType a = getLoraA().getType();
  if (dy.getRank() < 1 || x.getRank() != dy.getRank() ||
      x.getShape().drop_back() != dy.getShape().drop_back())
    return emitOpError("input ") << x << " and grad_output " << dy
                                 << " must have the same leading dimensions";
  if (failed(verifyLoraDropout(*this, getDropout().convertToDouble(),
                               /*hasLora=*/true, getDropoutStreamAttr())))
    return failure();
  auto weight = RankedTensorType::get(
      {dy.getShape().back(), x.getShape().back()}, a.getElementType());
  return verifyLoraPair(*this, weight, a, getLoraB().getType());
}

LogicalResult CrossEntropyGradOp::verify() {
  return verifyLogitsAndLabels(*this, getLogits().getType(),
                               getLabels().getType());
}

LogicalResult AdamWOp::verify() {
  if (!getParam().getDefiningOp<LoraParamOp>()) {
    InFlightDiagnostic diag = emitOpError(
        "param must be a qlora.lora_param (the value it updates in place), "
        "got ");
    if (Operation *producer = getParam().getDefiningOp())
      return diag << "a result of '" << producer->getName() << "'";
    return diag << "a block argument";
  }
  double beta1 = getBeta1().convertToDouble();
  double beta2 = getBeta2().convertToDouble();
  if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
    return emitOpError("betas must be in [0, 1), got (")
           << beta1 << ", " << beta2 << ")";
  if (!(getEpsilon().convertToDouble() > 0))
    return emitOpError("epsilon must be positive, got ")
           << getEpsilon().convertToDouble();
  return success();
}
