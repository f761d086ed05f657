//===- QloraInterfaces.td - qlora op interfaces ------------*- tablegen -*-===//
#ifndef QLORA_INTERFACES_TD
#define QLORA_INTERFACES_TD

include "mlir/IR/OpBase.td"

def Qlora_DifferentiableOpInterface
    : OpInterface<"DifferentiableOpInterface"> {
  let cppNamespace = "::mlir::qlora";
  let description = [{
    An op that can build its vector-Jacobian product. Reverse-mode autodiff
    (`--qlora-build-training-step`) walks the forward graph backwards and
    asks each op on a path from a LoRA parameter to the loss for the
    gradients of its operands; it never inspects op names.
  }];
  let methods = [
    InterfaceMethod<[{
        Builds, at the builder's insertion point, the gradients of the loss
        with respect to this op's operands, given `resultGrads` (one per
        result; null for a result the loss does not depend on). Returns one
        value per operand: the gradient where `needGrad[i]` is set, null
        elsewhere. An op may return null for an operand that has no
        gradient (integer tokens); autodiff reports it if one was needed.
      }],
      "::llvm::SmallVector<::mlir::Value>", "buildVjp",
      (ins "::mlir::OpBuilder &":$builder,
           "::mlir::ValueRange":$resultGrads,
           "::llvm::ArrayRef<bool>":$needGrad)>
  ];
}

#endif // QLORA_INTERFACES_TD
