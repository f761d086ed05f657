//===- Autodiff.cpp - Reverse-mode autodiff over DifferentiableOpInterface ===//
#include "passes/Autodiff.h"

#include "dialects/qlora/QloraDialect.h"

#include "mlir/IR/TypeUtilities.h"

namespace mlir::qlora {

/// Gradients exist for floating-point scalars and tensors only: tokens,
/// labels and counts never carry one.
static bool isDifferentiable(Value value) {
  return isa<FloatType>(getElementTypeOrSelf(value.getType()));
}

Autodiff::Autodiff(ArrayRef<Operation *> ops, ValueRange params, Value loss)
    : ops(ops), params(params), loss(loss) {
  // Forward: the values that depend on a parameter.
  llvm::DenseSet<Value> varied(params.begin(), params.end());
  for (Operation *op : ops)
    if (llvm::any_of(op->getOperands(),
                     [&](Value operand) { return varied.contains(operand); }))
      varied.insert(op->result_begin(), op->result_end());

  // Backward: the values the loss depends on. A value is active when it is
  // both (and is a float): the loss depends on it through a parameter.
  llvm::DenseSet<Value> useful{loss};
  for (Operation *op : llvm::reverse(ops))
    if (llvm::any_of(op->getResults(),
                     [&](Value result) { return useful.contains(result); }))
      useful.insert(op->operand_begin(), op->operand_end());
  for (Value value : useful)
    if (varied.contains(value) && isDifferentiable(value))
      active.insert(value);
}

void Autodiff::accumulate(OpBuilder &builder, Location loc, Value value,
                          Value grad) {
  Value &adjoint = adjoints[value];
  adjoint = adjoint ? AddOp::create(builder, loc, adjoint, grad) : grad;
}

FailureOr<SmallVector<Value>> Autodiff::buildGradients(OpBuilder &builder,
                                                       Value seed) {
  adjoints.clear();
  if (isActive(loss))
    adjoints[loss] = seed;
  for (Operation *op : llvm::reverse(ops)) {
    if (llvm::none_of(op->getResults(),
                      [&](Value result) { return isActive(result); }))
      continue;
    auto differentiable = dyn_cast<DifferentiableOpInterface>(op);
    if (!differentiable)
      return op->emitError()
             << "'" << op->getName()
             << "' is on a path from a LoRA parameter to the loss but has no "
                "gradient rule (DifferentiableOpInterface)";

    SmallVector<Value> resultGrads =
        llvm::map_to_vector(op->getResults(), [&](Value result) {
          return adjoints.lookup(result);
        });
    SmallVector<bool> needGrad = llvm::map_to_vector(
        op->getOperands(), [&](Value operand) { return isActive(operand); });
    SmallVector<Value> grads =
        differentiable.buildVjp(builder, resultGrads, needGrad);
    if (grads.size() != op->getNumOperands())
      return op->emitOpError("gradient rule returned ")
             << grads.size() << " gradients for " << op->getNumOperands()
             << " operands";

    for (auto [index, operand, grad] :
         llvm::enumerate(op->getOperands(), grads)) {
      if (!needGrad[index])
        continue;
      if (!grad)
        return op->emitOpError(
                   "gradient rule returned no gradient for operand #")
               << index << ", which depends on a LoRA parameter and reaches "
               << "the loss";
      if (grad.getType() != operand.getType())
        return op->emitOpError("gradient rule returned ")
               << grad.getType() << " for operand #" << index << " of type "
               << operand.getType();
      accumulate(builder, op->getLoc(), operand, grad);
    }
  }
  return llvm::map_to_vector(
      params, [&](Value param) { return adjoints.lookup(param); });
}

} // namespace mlir::qlora
