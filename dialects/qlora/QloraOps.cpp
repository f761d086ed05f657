//===- QloraOps.cpp - qlora op verifiers, type inference, folders ---------===//
//
// Type inference doubles as the shape verifier: every diagnostic names the
// operand and gives the expected and the actual type.
//
//===----------------------------------------------------------------------===//
#include "dialects/qlora/QloraDialect.h"
#include "dialects/qlora/QloraVerifiers.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Diagnostics.h"

#include <cmath>

using namespace mlir;
using namespace mlir::qlora;

static RankedTensorType rankedType(Value value) {
  return cast<RankedTensorType>(value.getType());
}

/// Emits "<op>: <operand> ..." at `loc`; all inference errors go through here
/// so that they read alike.
template <typename... Args>
static LogicalResult inferError(std::optional<Location> loc, StringRef opName,
                                Args &&...args) {
  return emitOptionalError(loc, "'", opName, "' ", std::forward<Args>(args)...);
}

//===----------------------------------------------------------------------===//
// WeightOp / LoraParamOp
//===----------------------------------------------------------------------===//

LogicalResult WeightOp::verify() {
  if (getName().empty())
    return emitOpError("needs a non-empty parameter name");
  if (getSource() && getValue())
    return emitOpError("has both a source and an inline value for '")
           << getName() << "'; expected at most one";
  if (isQuantized()) {
    if (getValue())
      return emitOpError("'") << getName()
                              << "' is NF4 and cannot have an inline value; "
                                 "expected a source or no bytes";
    return success();
  }
  if (auto value = getValue(); value && value->getType() != getType())
    return emitOpError("inline value of '")
           << getName() << "' has type " << value->getType() << ", expected "
           << getType();
  if (!getTensorType().hasStaticShape())
    return emitOpError("'")
           << getName() << "' must have a static shape, got " << getType();
  return success();
}

LogicalResult LoraParamOp::verify() {
  RankedTensorType type = getType();
  if (type.getRank() != 2 || !type.hasStaticShape())
    return emitOpError("'")
           << getName() << "' must be a static 2-D matrix, got " << type;
  if (!type.getElementType().isF32())
    return emitOpError("'") << getName()
                            << "' is a trainable master weight and must be "
                               "f32, got "
                            << type.getElementType();
  return success();
}

//===----------------------------------------------------------------------===//
// EmbeddingOp
//===----------------------------------------------------------------------===//

LogicalResult EmbeddingOp::inferReturnTypes(MLIRContext *,
                                            std::optional<Location> loc,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &results) {
  RankedTensorType table = rankedType(adaptor.getTable());
  RankedTensorType tokens = rankedType(adaptor.getTokens());
  if (table.getRank() != 2)
    return inferError(loc, getOperationName(),
                      "table must be [vocab, hidden], got ", table);
  SmallVector<int64_t> shape(tokens.getShape());
  shape.push_back(table.getDimSize(1));
  results.push_back(RankedTensorType::get(shape, table.getElementType()));
  return success();
}

//===----------------------------------------------------------------------===//
// CastOp
//===----------------------------------------------------------------------===//

LogicalResult CastOp::inferReturnTypes(MLIRContext *, std::optional<Location>,
                                       Adaptor adaptor,
                                       SmallVectorImpl<Type> &results) {
  results.push_back(rankedType(adaptor.getInput()).clone(adaptor.getTo()));
  return success();
}

OpFoldResult CastOp::fold(FoldAdaptor) {
  if (getInput().getType() == getType())
    return getInput();
  return {};
}

//===----------------------------------------------------------------------===//
// RmsNormOp
//===----------------------------------------------------------------------===//

LogicalResult RmsNormOp::inferReturnTypes(MLIRContext *,
                                          std::optional<Location> loc,
                                          Adaptor adaptor,
                                          SmallVectorImpl<Type> &results) {
  RankedTensorType input = rankedType(adaptor.getInput());
  RankedTensorType weight = rankedType(adaptor.getWeight());
  if (input.getRank() < 1)
    return inferError(loc, getOperationName(),
                      "input must have at least one dimension, got ", input);
  int64_t features = input.getShape().back();
  if (weight.getRank() != 1 || weight.getDimSize(0) != features)
    return inferError(loc, getOperationName(), "weight must be [", features,
                      "] to match the input's last dimension, got ", weight);
  results.push_back(input);
  return success();
}

LogicalResult RmsNormOp::verify() {
  if (!(getEps().convertToDouble() > 0))
    return emitOpError("eps must be positive, got ")
           << getEps().convertToDouble();
  return success();
}

//===----------------------------------------------------------------------===//
// LinearOp
//===----------------------------------------------------------------------===//

LogicalResult LinearOp::inferReturnTypes(MLIRContext *,
                                         std::optional<Location> loc,
                                         Adaptor adaptor,
                                         SmallVectorImpl<Type> &results) {
  StringRef op = getOperationName();
  RankedTensorType input = rankedType(adaptor.getInput());
  RankedTensorType weight = rankedType(adaptor.getWeight());
  if (input.getRank() < 1)
    return inferError(loc, op, "input must have at least one dimension, got ",
                      input);
  if (weight.getRank() != 2)
    return inferError(loc, op, "weight must be [out, in], got ", weight);
  int64_t in = input.getShape().back(), out = weight.getDimSize(0);
  if (weight.getDimSize(1) != in)
    return inferError(loc, op, "weight must be [", out, ", ", in,
                      "] to match the input's ", in, " features, got ", weight);
  if (Value loraA = adaptor.getLoraA()) {
    RankedTensorType a = rankedType(loraA);
    RankedTensorType b = rankedType(adaptor.getLoraB());
    if (a.getRank() != 2 || a.getDimSize(1) != in)
      return inferError(loc, op, "lora_a must be [r, ", in, "], got ", a);
    int64_t r = a.getDimSize(0);
    if (b.getRank() != 2 || b.getDimSize(0) != out || b.getDimSize(1) != r)
      return inferError(loc, op, "lora_b must be [", out, ", ", r,
                        "] to match the weight and lora_a, got ", b);
  }
  SmallVector<int64_t> shape(input.getShape());
  shape.back() = out;
  results.push_back(input.clone(shape));
  return success();
}

LogicalResult mlir::qlora::verifyLoraDropout(Operation *op, double dropout,
                                             bool hasLora, StringAttr stream) {
  if (!(dropout >= 0 && dropout < 1))
    return op->emitOpError("dropout must be in [0, 1), got ") << dropout;
  if (dropout > 0 && !hasLora)
    return op->emitOpError("dropout applies to the LoRA path; this op has "
                           "none");
  if (stream && stream.getValue().empty())
    return op->emitOpError("dropout_stream must not be empty");
  return success();
}

LogicalResult LinearOp::verify() {
  double dropout = getDropout().convertToDouble();
  if (!hasLora() && (getScaling().convertToDouble() != 1.0 || dropout != 0.0))
    return emitOpError("scaling and dropout apply to the LoRA path; this "
                       "linear has none");
  return verifyLoraDropout(*this, dropout, hasLora(), getDropoutStreamAttr());
}

//===----------------------------------------------------------------------===//
// RopeOp
//===----------------------------------------------------------------------===//

LogicalResult RopeOp::inferReturnTypes(MLIRContext *,
                                       std::optional<Location> loc,
                                       Adaptor adaptor,
                                       SmallVectorImpl<Type> &results) {
  RankedTensorType input = rankedType(adaptor.getInput());
  if (input.getRank() != 4 || input.getShape().back() % 2 != 0)
    return inferError(loc, getOperationName(),
                      "input must be [batch, seq, heads, head_dim] with an "
                      "even head_dim, got ",
                      input);
  results.push_back(input);
  return success();
}

LogicalResult RopeOp::verify() {
  if (!(getTheta().convertToDouble() > 0))
    return emitOpError("theta must be positive, got ")
           << getTheta().convertToDouble();
  return success();
}

//===----------------------------------------------------------------------===//
// AttentionOp
//===----------------------------------------------------------------------===//

LogicalResult AttentionOp::inferReturnTypes(MLIRContext *,
                                            std::optional<Location> loc,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &results) {
  StringRef op = getOperationName();
  RankedTensorType q = rankedType(adaptor.getQuery());
  RankedTensorType k = rankedType(adaptor.getKey());
  RankedTensorType v = rankedType(adaptor.getValue());
  if (q.getRank() != 4)
    return inferError(loc, op,
                      "query must be [batch, seq, heads, head_dim], got ", q);
  if (k.getRank() != 4 || k.getDimSize(0) != q.getDimSize(0) ||
      k.getDimSize(1) != q.getDimSize(1) || k.getDimSize(3) != q.getDimSize(3))
    return inferError(loc, op, "key must be [", q.getDimSize(0), ", ",
                      q.getDimSize(1), ", kv_heads, ", q.getDimSize(3),
                      "] to match the query, got ", k);
  if (v != k)
    return inferError(loc, op, "value must have the key's type ", k, ", got ",
                      v);
  if (q.getDimSize(2) % k.getDimSize(2) != 0)
    return inferError(loc, op, "query heads (", q.getDimSize(2),
                      ") must be a multiple of key/value heads (",
                      k.getDimSize(2), ")");
  results.push_back(q);
  return success();
}

double mlir::qlora::getAttentionScale(std::optional<APFloat> scale,
                                      ShapedType query) {
  if (scale)
    return scale->convertToDouble();
  return 1.0 / std::sqrt(double(query.getDimSize(3)));
}

//===----------------------------------------------------------------------===//
// ReshapeOp
//===----------------------------------------------------------------------===//

LogicalResult ReshapeOp::inferReturnTypes(MLIRContext *,
                                          std::optional<Location> loc,
                                          Adaptor adaptor,
                                          SmallVectorImpl<Type> &results) {
  RankedTensorType input = rankedType(adaptor.getInput());
  ArrayRef<int64_t> shape = adaptor.getShape();
  if (llvm::any_of(shape, [](int64_t d) { return d <= 0; }))
    return inferError(loc, getOperationName(),
                      "target shape must be static and positive");
  auto result = RankedTensorType::get(shape, input.getElementType());
  if (!input.hasStaticShape() ||
      input.getNumElements() != result.getNumElements())
    return inferError(loc, getOperationName(), "cannot reshape ", input, " to ",
                      result, ": element counts differ");
  results.push_back(result);
  return success();
}

OpFoldResult ReshapeOp::fold(FoldAdaptor) {
  if (getInput().getType() == getType())
    return getInput();
  // reshape(reshape(x)) views x directly.
  if (auto producer = getInput().getDefiningOp<ReshapeOp>()) {
    getInputMutable().assign(producer.getInput());
    return getResult();
  }
  return {};
}

//===----------------------------------------------------------------------===//
// CrossEntropyOp
//===----------------------------------------------------------------------===//

LogicalResult mlir::qlora::verifyLogitsAndLabels(Operation *op,
                                                 RankedTensorType logits,
                                                 RankedTensorType labels) {
  if (logits.getRank() != 3)
    return op->emitOpError("logits must be [batch, seq, vocab], got ")
           << logits;
  if (labels.getShape() != logits.getShape().drop_back())
    return op->emitOpError("labels must be [")
           << logits.getDimSize(0) << ", " << logits.getDimSize(1)
           << "] to match the logits, got " << labels;
  return success();
}

LogicalResult CrossEntropyOp::verify() {
  return verifyLogitsAndLabels(*this, getLogits().getType(),
                               getLabels().getType());
}

#define GET_OP_CLASSES
#include "dialects/qlora/QloraOps.cpp.inc"
