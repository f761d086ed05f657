//===- QloraVerifiers.h - Checks shared by forward and backward ops -*- C++ -*-===//
#ifndef QLORACC_DIALECTS_QLORA_QLORAVERIFIERS_H
#define QLORACC_DIALECTS_QLORA_QLORAVERIFIERS_H

#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Operation.h"

namespace mlir::qlora {

/// `logits: [batch, seq, vocab]` and `labels: [batch, seq]`.
LogicalResult verifyLogitsAndLabels(Operation *op, RankedTensorType logits,
                                    RankedTensorType labels);

} // namespace mlir::qlora

#endif // QLORACC_DIALECTS_QLORA_QLORAVERIFIERS_H
