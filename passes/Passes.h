//===- Passes.h - qloracc pass declarations ---------------------*- C++ -*-===//
#ifndef QLORACC_PASSES_PASSES_H
#define QLORACC_PASSES_PASSES_H

#include "dialects/qlora/QloraDialect.h"
#include "mlir/Pass/Pass.h"

namespace mlir::qlora {

/// --qlora-lower-to-qrt's nf4-gemm: how a linear reads an NF4 weight.
enum class Nf4Gemm {
  /// The GEMM dequantizes each weight tile it loads.
  fused,
  /// A dequantize_nf4 launch fills a dense workspace that the GEMM reads.
  dequantize,
};

#define GEN_PASS_DECL
#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

/// --nf4-quantize-frozen that writes its `report` to `report` instead of
/// standard output (qloracc prints it after the memory report).
std::unique_ptr<Pass>
createNf4QuantizeFrozenPass(const Nf4QuantizeFrozenPassOptions &options,
                            llvm::raw_ostream &report);

/// --qlora-remat that writes its `report` to `report`.
std::unique_ptr<Pass> createQloraRematPass(const QloraRematPassOptions &options,
                                           llvm::raw_ostream &report);

} // namespace mlir::qlora

#endif // QLORACC_PASSES_PASSES_H
