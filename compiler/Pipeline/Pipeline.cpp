//===- Pipeline.cpp - The qloracc pass pipeline, built in one place -------===//
#include "compiler/Pipeline/Pipeline.h"

#include "mlir/Pass/PassInstrumentation.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <mutex>

using namespace mlir;

void qloracc::buildGraphCleanupPipeline(OpPassManager &pm) {
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

void qloracc::buildGraphSummaryPipeline(OpPassManager &pm) {
  buildGraphCleanupPipeline(pm);
  pm.addPass(qlora::createQloraGraphSummaryPass());
}

void qloracc::buildTrainingStepPipeline(OpPassManager &pm,
                                        const PipelineOptions &options) {
  pm.addPass(qlora::createQloraBuildTrainingStepPass(options.trainingStep));
  // Autodiff leaves duplicate reads and foldable reshapes of its own.
  buildGraphCleanupPipeline(pm);
  pm.addPass(createVerifyTrainingStepPass());
}

void qloracc::buildQuantizePipeline(OpPassManager &pm,
                                    const PipelineOptions &options) {
  if (!options.quantize)
    return;
  pm.addPass(options.quantizeReport
                 ? qlora::createNf4QuantizeFrozenPass(*options.quantize,
                                                      *options.quantizeReport)
                 : qlora::createNf4QuantizeFrozenPass(*options.quantize));
}

void qloracc::buildRematPipeline(OpPassManager &pm,
                                 const PipelineOptions &options) {
  if (!options.remat)
    return;
  qlora::QloraRematPassOptions remat = *options.remat;
  remat.activationType = options.lowering.activationType;
  remat.nf4Gemm = options.lowering.nf4Gemm;
  pm.addPass(options.rematReport
                 ? qlora::createQloraRematPass(remat, *options.rematReport)
                 : qlora::createQloraRematPass(remat));
}

void qloracc::buildLowerToQrtPipeline(OpPassManager &pm,
                                      const PipelineOptions &options) {
  pm.addPass(qlora::createQloraLowerToQrtPass(options.lowering));
  pm.addPass(createVerifyLoweringToQrtPass());
}

void qloracc::buildMemoryPlanPipeline(OpPassManager &pm,
                                      const PipelineOptions &options) {
  pm.addPass(qlora::createQrtPlanMemoryPass(options.memoryPlan));
  pm.addPass(createVerifyMemoryPlanPass());
}

void qloracc::buildCudaCodegenPipeline(OpPassManager &pm,
                                       const PipelineOptions &options) {
  if (!options.cuda)
    return;
  qlora::QrtCodegenCudaPassOptions cuda = *options.cuda;
  cuda.activationType = options.lowering.activationType;
  pm.addPass(qlora::createQrtCodegenCudaPass(cuda));
}

void qloracc::buildQloraccPipeline(OpPassManager &pm,
                                   const PipelineOptions &options) {
  if (options.printSummary)
    buildGraphSummaryPipeline(pm);
  else
    buildGraphCleanupPipeline(pm);
  buildTrainingStepPipeline(pm, options);
  buildQuantizePipeline(pm, options);
  buildRematPipeline(pm, options);
  buildLowerToQrtPipeline(pm, options);
  buildMemoryPlanPipeline(pm, options);
  buildCudaCodegenPipeline(pm, options);
}

namespace {

/// Times every pass and reports those slower than a threshold.
class SlowPassReporter : public PassInstrumentation {
public:
  SlowPassReporter(llvm::raw_ostream &os, double thresholdSeconds)
      : os(os), thresholdSeconds(thresholdSeconds) {}

  void runBeforePass(Pass *pass, Operation *) override {
    std::lock_guard<std::mutex> lock(mutex);
    started[pass] = Clock::now();
  }
  void runAfterPass(Pass *pass, Operation *) override { finish(pass); }
  void runAfterPassFailed(Pass *pass, Operation *) override { finish(pass); }

private:
  using Clock = std::chrono::steady_clock;

  void finish(Pass *pass) {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = started.find(pass);
    if (it == started.end())
      return;
    double seconds =
        std::chrono::duration<double>(Clock::now() - it->second).count();
    started.erase(it);
    if (seconds < thresholdSeconds)
      return;
    StringRef name = pass->getArgument();
    os << (name.empty() ? pass->getName() : name)
       << llvm::format(": %.1f s\n", seconds);
    os.flush();
  }

  llvm::raw_ostream &os;
  double thresholdSeconds;
  std::mutex mutex;
  llvm::DenseMap<Pass *, Clock::time_point> started;
};

} // namespace

void qloracc::reportSlowPasses(PassManager &pm, llvm::raw_ostream &os,
                               double thresholdSeconds) {
  pm.addInstrumentation(
      std::make_unique<SlowPassReporter>(os, thresholdSeconds));
}
