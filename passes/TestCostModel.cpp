//===- TestCostModel.cpp - --qlora-test-cost-model ------------------------===//
//
// Shows what CostModelOpInterface answers for every op, as remarks that lit
// tests check with -verify-diagnostics. Not part of any pipeline.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"

namespace mlir::qlora {
#define GEN_PASS_DEF_QLORATESTCOSTMODELPASS
#include "passes/Passes.h.inc"

namespace {

struct TestCostModelPass : impl::QloraTestCostModelPassBase<TestCostModelPass> {
  void runOnOperation() override {
    WalkResult result = getOperation().walk([](Operation *op) {
      if (auto cost = dyn_cast<CostModelOpInterface>(op)) {
        std::string text;
        llvm::raw_string_ostream os(text);
        os << llvm::format("flops=%.0f", cost.getFlops())
           << " bytes=" << cost.getBytesAccessed()
           << " phase=" << stringifyStepPhase(cost.getStepPhase());
        op->emitRemark(text);
        return WalkResult::advance();
      }
      if (isa<QloraDialect, nf4::Nf4Dialect>(op->getDialect())) {
        op->emitOpError("has no CostModelOpInterface");
        return WalkResult::interrupt();
      }
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      return signalPassFailure();
    markAllAnalysesPreserved();
  }
};

} // namespace
} // namespace mlir::qlora
