//===- StageVerifiers.cpp - What each pipeline stage promises the next ----===//
//
// Checks between the stages of buildQloraccPipeline. Each states, as an
// error on the offending op, a property the following stages and the
// train.bin writer rely on, so that a pass that breaks it is caught where
// it ran rather than three stages later. They change nothing.
//
//===----------------------------------------------------------------------===//
#include "compiler/Pipeline/Pipeline.h"

#include "dialects/qrt/QrtDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassRegistry.h"

using namespace mlir;

namespace {

constexpr StringLiteral kStepFunction = "train_step";
constexpr StringLiteral kGradAccumAttr = "qlora.grad_accum";
constexpr StringLiteral kOptimizerAttr = "qlora.optimizer";
constexpr StringLiteral kMemoryPlanAttr = "qrt.memory_plan";

/// A module pass that only reads the module; `verify` reports through
/// diagnostics and fails the pipeline when it returns failure.
template <typename Derived>
struct StageVerifierPass
    : public PassWrapper<Derived, OperationPass<ModuleOp>> {
  void runOnOperation() override {
    if (failed(static_cast<Derived *>(this)->verify(this->getOperation())))
      return this->signalPassFailure();
    this->markAllAnalysesPreserved();
  }
};

struct VerifyTrainingStepPass : StageVerifierPass<VerifyTrainingStepPass> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(VerifyTrainingStepPass)

  StringRef getArgument() const override {
    return "qlora-verify-training-step";
  }
  StringRef getDescription() const override {
    return "Check that the module has a @train_step with qlora.grad_accum "
           "and qlora.optimizer";
  }

  LogicalResult verify(ModuleOp module) {
    auto step = module.lookupSymbol<func::FuncOp>(kStepFunction);
    if (!step)
      return module.emitError("the module has no @")
             << kStepFunction << " after --qlora-build-training-step";
    auto gradAccum = step->getAttrOfType<IntegerAttr>(kGradAccumAttr);
    if (!gradAccum || gradAccum.getInt() < 1)
      return step.emitOpError("needs a positive integer '")
             << kGradAccumAttr << "'";
    if (!step->getAttrOfType<DictionaryAttr>(kOptimizerAttr))
      return step.emitOpError("needs the AdamW hyper-parameters in '")
             << kOptimizerAttr << "'";
    return success();
  }
};

struct VerifyLoweringToQrtPass : StageVerifierPass<VerifyLoweringToQrtPass> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(VerifyLoweringToQrtPass)

  StringRef getArgument() const override { return "qrt-verify-lowering"; }
  StringRef getDescription() const override {
    return "Check that the module holds only qrt.kernel and a @train_step "
           "of qrt ops without arguments or results";
  }

  /// True for the ops a lowered module may hold besides qrt's.
  static bool isStructural(Operation *op) {
    if (isa<ModuleOp, func::ReturnOp>(op))
      return true;
    auto func = dyn_cast<func::FuncOp>(op);
    return func && func.getSymName() == kStepFunction;
  }

  LogicalResult verify(ModuleOp module) {
    Operation *first = nullptr;
    unsigned unlowered = 0;
    Dialect *qrt = module.getContext()->getLoadedDialect<qrt::QrtDialect>();
    module.walk([&](Operation *op) {
      if (op->getDialect() == qrt || isStructural(op))
        return;
      if (!first)
        first = op;
      ++unlowered;
    });
    if (first) {
      InFlightDiagnostic diag =
          first->emitOpError("is not lowered to qrt: after "
                             "--qlora-lower-to-qrt the module holds only "
                             "qrt.kernel ops and @")
          << kStepFunction << " of qrt ops";
      if (unlowered > 1)
        diag.attachNote() << unlowered - 1 << " more op(s) are not lowered";
      return failure();
    }
    auto step = module.lookupSymbol<func::FuncOp>(kStepFunction);
    if (!step)
      return module.emitError("the module has no @")
             << kStepFunction << " after --qlora-lower-to-qrt";
    if (step.getNumArguments() != 0 || step.getNumResults() != 0)
      return step.emitOpError("must have no arguments or results after "
                              "--qlora-lower-to-qrt (inputs and outputs are "
                              "io buffers)");
    for (func::ReturnOp ret : step.getOps<func::ReturnOp>())
      if (ret.getNumOperands() != 0)
        return ret.emitOpError("must return nothing after "
                               "--qlora-lower-to-qrt");
    return success();
  }
};

struct VerifyMemoryPlanPass : StageVerifierPass<VerifyMemoryPlanPass> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(VerifyMemoryPlanPass)

  StringRef getArgument() const override { return "qrt-verify-memory-plan"; }
  StringRef getDescription() const override {
    return "Check that every device buffer has an arena offset and the "
           "module its qrt.memory_plan";
  }

  LogicalResult verify(ModuleOp module) {
    auto plan = module->getAttrOfType<DictionaryAttr>(kMemoryPlanAttr);
    if (!plan)
      return module.emitError("the module has no '")
             << kMemoryPlanAttr << "' after --qrt-plan-memory";
    for (StringRef key : {"arena_size", "peak_bytes"})
      if (!plan.getAs<IntegerAttr>(key))
        return module.emitError("'")
               << kMemoryPlanAttr << "' has no integer '" << key << "'";
    for (StringRef key : {"peak_by_class", "total_by_class"})
      if (!plan.getAs<DictionaryAttr>(key))
        return module.emitError("'")
               << kMemoryPlanAttr << "' has no dictionary '" << key << "'";
    WalkResult result = module.walk([&](qrt::BufferOp buffer) {
      if (buffer.getPlacement() != qrt::Placement::device || buffer.getOffset())
        return WalkResult::advance();
      buffer.emitOpError("is a device buffer without an arena offset after "
                         "--qrt-plan-memory");
      return WalkResult::interrupt();
    });
    return failure(result.wasInterrupted());
  }
};

} // namespace

std::unique_ptr<Pass> qloracc::createVerifyTrainingStepPass() {
  return std::make_unique<VerifyTrainingStepPass>();
}

std::unique_ptr<Pass> qloracc::createVerifyLoweringToQrtPass() {
  return std::make_unique<VerifyLoweringToQrtPass>();
}

std::unique_ptr<Pass> qloracc::createVerifyMemoryPlanPass() {
  return std::make_unique<VerifyMemoryPlanPass>();
}

void qloracc::registerPipelineVerifierPasses() {
  PassRegistration<VerifyTrainingStepPass>();
  PassRegistration<VerifyLoweringToQrtPass>();
  PassRegistration<VerifyMemoryPlanPass>();
}
