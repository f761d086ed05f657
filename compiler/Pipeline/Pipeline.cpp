//===- Pipeline.cpp - The qloracc pass pipeline, built in one place -------===//
#include "compiler/Pipeline/Pipeline.h"

#include "passes/Passes.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"

void qloracc::buildQloraccPipeline(mlir::OpPassManager &pm,
                                   const PipelineOptions &options) {
  // Graph cleanup: folds reshape chains and identity casts, merges
  // duplicate parameter reads.
  pm.addPass(mlir::createCanonicalizerPass());
  pm.addPass(mlir::createCSEPass());
  if (options.printSummary)
    pm.addPass(mlir::qlora::createQloraGraphSummaryPass());
}
