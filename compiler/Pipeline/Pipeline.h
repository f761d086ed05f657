//===- Pipeline.h - The qloracc pass pipeline, built in one place -*- C++
//-*-===//
#ifndef QLORACC_COMPILER_PIPELINE_PIPELINE_H
#define QLORACC_COMPILER_PIPELINE_PIPELINE_H

namespace mlir {
class OpPassManager;
} // namespace mlir

namespace qloracc {

struct PipelineOptions {
  /// Print the graph summary (--qlora-graph-summary) after the pipeline.
  bool printSummary = true;
};

/// Appends every stage of the compiler, in order, to `pm`. Stages arrive
/// with their issues (DESIGN.md "Pass pipeline"); today: graph cleanup
/// (canonicalize, CSE) and the summary.
void buildQloraccPipeline(mlir::OpPassManager &pm,
                          const PipelineOptions &options);

} // namespace qloracc

#endif // QLORACC_COMPILER_PIPELINE_PIPELINE_H
