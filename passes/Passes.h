//===- Passes.h - qloracc pass declarations ---------------------*- C++ -*-===//
#ifndef QLORACC_PASSES_PASSES_H
#define QLORACC_PASSES_PASSES_H

#include "dialects/qlora/QloraDialect.h"
#include "mlir/Pass/Pass.h"

namespace mlir::qlora {

#define GEN_PASS_DECL
#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

} // namespace mlir::qlora

#endif // QLORACC_PASSES_PASSES_H
