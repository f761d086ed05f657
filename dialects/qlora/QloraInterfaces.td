//===- QloraInterfaces.td - qlora op interfaces ------------*- tablegen -*-===//
#ifndef QLORA_INTERFACES_TD
#define QLORA_INTERFACES_TD

include "mlir/IR/EnumAttr.td"
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

def Qlora_StepPhase : I32EnumAttr<"StepPhase",
    "the part of a training step an op belongs to", [
    I32EnumAttrCase<"Forward", 0, "forward">,
    I32EnumAttrCase<"Backward", 1, "backward">,
    I32EnumAttrCase<"Optimizer", 2, "optimizer">]> {
  let cppNamespace = "::mlir::qlora";
  let genSpecializedAttr = 0;
}

def Qlora_CostModelOpInterface : OpInterface<"CostModelOpInterface"> {
  let cppNamespace = "::mlir::qlora";
  let description = [{
    The work of one execution of an op, from its static shapes alone:
    what rematerialization (`--qlora-remat`) pays to recompute a value
    instead of keeping it, and what `--qlora-graph-summary` adds up per
    step. Every qlora op implements it (parameters and `reshape` cost 0),
    and so do `nf4.constant`, `nf4.quantize` and `nf4.dequantize`, through
    external models the qlora dialect attaches when it is loaded.

    FLOPs count one per floating-point add, subtract, multiply, divide,
    compare, exp, sqrt or rsqrt, and 2 per multiply-add of a matrix
    product; conversions, copies, gathers and integer work count 0. The
    formulas live in QloraCost.cpp, one comment per op family saying what
    each counts.

    Bytes count every operand read once and every result written once, at
    the size of its type: `ceil(elements * bit width / 8)` for a tensor or
    scalar, the storage (codes and scales) for an `!nf4.tensor`. An NF4
    weight reaches a matmul through `nf4.dequantize`, so the matmul counts
    the dequantized float tensor it is given, and the dequantize counts the
    NF4 storage it reads plus that float tensor. Ops that touch less or
    more than their operands and results say so (embedding reads only the
    gathered rows, reshape is a view, adamw also reads and writes its two
    moments).
  }];
  let methods = [
    InterfaceMethod<[{
        Floating-point operations of one execution (a multiply-add is 2).
      }],
      "double", "getFlops">,
    InterfaceMethod<[{
        Bytes read plus bytes written by one execution.
      }],
      "int64_t", "getBytesAccessed">,
    InterfaceMethod<[{
        The part of the training step the op belongs to: the forward pass
        (model ops, the loss and its normaliser, parameters), the backward
        pass (vector-Jacobian products) or the optimizer update.
      }],
      "::mlir::qlora::StepPhase", "getStepPhase", (ins), [{}], [{
        return ::mlir::qlora::StepPhase::Forward;
      }]>
  ];
}

#endif // QLORA_INTERFACES_TD
