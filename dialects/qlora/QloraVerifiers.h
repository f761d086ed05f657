//===- QloraVerifiers.h - Checks shared by forward and backward ops -*- C++
//-*-===//
#ifndef QLORACC_DIALECTS_QLORA_QLORAVERIFIERS_H
#define QLORACC_DIALECTS_QLORA_QLORAVERIFIERS_H

#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Operation.h"

namespace mlir::qlora {

/// `logits: [batch, seq, vocab]` and `labels: [batch, seq]`.
LogicalResult verifyLogitsAndLabels(Operation *op, RankedTensorType logits,
                                    RankedTensorType labels);

/// LoRA dropout of a linear or its gradients: `dropout` in [0, 1), above 0
/// only with a LoRA path, and `stream`, when given, not empty.
LogicalResult verifyLoraDropout(Operation *op, double dropout, bool hasLora,
                                StringAttr stream);

} // namespace mlir::qlora

#endif // QLORACC_DIALECTS_QLORA_QLORAVERIFIERS_H
