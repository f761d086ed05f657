//===- QloraDialect.h - The qlora dialect -----------------------*- C++ -*-===//
#ifndef QLORACC_DIALECTS_QLORA_QLORADIALECT_H
#define QLORACC_DIALECTS_QLORA_QLORADIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/nf4/Nf4Dialect.h"

#include "dialects/qlora/QloraDialect.h.inc"
#include "dialects/qlora/QloraEnums.h.inc"
#include "dialects/qlora/QloraInterfaces.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/qlora/QloraAttrs.h.inc"

namespace mlir::qlora {
/// The softmax scale of attention and its gradient over `query` [B, S, H,
/// D]: `scale` when the op sets one, else 1/sqrt(D).
double getAttentionScale(std::optional<APFloat> scale, ShapedType query);
} // namespace mlir::qlora

#define GET_OP_CLASSES
#include "dialects/qlora/QloraOps.h.inc"

#endif // QLORACC_DIALECTS_QLORA_QLORADIALECT_H
