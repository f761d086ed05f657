//===- Autodiff.h - Reverse-mode autodiff over op interfaces ----*- C++ -*-===//
//
// Reverse-mode automatic differentiation of a straight-line list of ops with
// respect to a few parameters. It knows no op by name: every op on a path
// from a parameter to the loss builds its own vector-Jacobian product
// through DifferentiableOpInterface.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_PASSES_AUTODIFF_H
#define QLORACC_PASSES_AUTODIFF_H

#include "mlir/IR/Builders.h"
#include "mlir/IR/Operation.h"
#include "mlir/IR/Value.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/SmallVector.h"

namespace mlir::qlora {

class Autodiff {
public:
  /// Runs the activity analysis of `ops` (in program order) for the scalar
  /// `loss` with respect to `params`. Parameters are usually defined outside
  /// `ops`; only the ops of the list are differentiated.
  Autodiff(ArrayRef<Operation *> ops, ValueRange params, Value loss);

  /// A value is active when it depends on a parameter and the loss depends
  /// on it: exactly the values whose gradient the backward pass needs. Only
  /// floating-point values (scalars and tensors) can be active.
  bool isActive(Value value) const { return active.contains(value); }

  /// Whether the loss depends on `param`, i.e. it gets a gradient.
  bool reachesLoss(Value param) const { return isActive(param); }

  /// Builds the backward pass at the builder's insertion point, seeded with
  /// `seed` = d loss, walking the ops in reverse. Returns one gradient per
  /// parameter, in the order given, null for a parameter that does not
  /// reach the loss. Fails, with an error at the offending op, when an
  /// active op has no gradient rule or its rule leaves out a gradient that
  /// was needed.
  FailureOr<SmallVector<Value>> buildGradients(OpBuilder &builder, Value seed);

private:
  /// Adds `grad` to the adjoint of `value`: the first contribution is the
  /// adjoint, later ones are summed with qlora.add in the order they come.
  void accumulate(OpBuilder &builder, Location loc, Value value, Value grad);

  SmallVector<Operation *> ops;
  SmallVector<Value> params;
  Value loss;
  llvm::DenseSet<Value> active;
  llvm::DenseMap<Value, Value> adjoints;
};

} // namespace mlir::qlora

#endif // QLORACC_PASSES_AUTODIFF_H
