//===- Pipeline.h - The qloracc pass pipeline, built in one place -*- C++ -*-//
//
// DESIGN.md "Pass pipeline": every stage `qloracc` runs, one function per
// stage, each ending in a verifier that states what the next stage may rely
// on (IREE's verify-lowering passes). `qlora-opt` runs the same passes one
// at a time.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_COMPILER_PIPELINE_PIPELINE_H
#define QLORACC_COMPILER_PIPELINE_PIPELINE_H

#include "passes/Passes.h"

#include <memory>
#include <optional>

namespace mlir {
class OpPassManager;
class PassManager;
class Pass;
} // namespace mlir

namespace llvm {
class raw_ostream;
} // namespace llvm

namespace qloracc {

struct PipelineOptions {
  /// Print the graph summary (--qlora-graph-summary) of the imported graph.
  bool printSummary = true;
  /// --qlora-build-training-step: gradient accumulation and AdamW (the
  /// defaults are the pass's).
  mlir::qlora::QloraBuildTrainingStepPassOptions trainingStep;
  /// --nf4-quantize-frozen, or no quantization (frozen weights keep their
  /// dtype) when empty.
  std::optional<mlir::qlora::Nf4QuantizeFrozenPassOptions> quantize =
      mlir::qlora::Nf4QuantizeFrozenPassOptions();
  /// Where the quantization report goes when quantize->report is set
  /// (standard output when null).
  llvm::raw_ostream *quantizeReport = nullptr;
  /// --qlora-remat (per-layer by default, as gradient checkpointing), or
  /// none at all when empty.
  std::optional<mlir::qlora::QloraRematPassOptions> remat =
      mlir::qlora::QloraRematPassOptions();
  /// Where the remat report goes when remat->report is set (standard
  /// output when null).
  llvm::raw_ostream *rematReport = nullptr;
  /// --qlora-lower-to-qrt.
  mlir::qlora::QloraLowerToQrtPassOptions lowering;
  /// --qrt-plan-memory.
  mlir::qlora::QrtPlanMemoryPassOptions memoryPlan;
  /// --qrt-codegen-cuda (its activation type is the lowering's), or no
  /// kernel images (a CPU-only train.bin) when empty.
  std::optional<mlir::qlora::QrtCodegenCudaPassOptions> cuda;
};

/// Appends every stage of the compiler, in order, to `pm`: graph cleanup
/// (and the summary), the training step, NF4 quantization,
/// rematerialization, lowering to qrt, memory planning and, when asked,
/// CUDA code generation.
/// The module that comes out is what translateToTrainBin takes.
void buildQloraccPipeline(mlir::OpPassManager &pm,
                          const PipelineOptions &options);

/// Stage 0: canonicalize and CSE the imported graph (folds reshape chains
/// and identity casts, merges duplicate parameter reads).
void buildGraphCleanupPipeline(mlir::OpPassManager &pm);

/// The graph cleanup followed by --qlora-graph-summary, for printing the
/// summary of a graph on its own.
void buildGraphSummaryPipeline(mlir::OpPassManager &pm);

/// Stage 1: --qlora-build-training-step, cleanup, and a check that
/// @train_step carries what later stages read.
void buildTrainingStepPipeline(mlir::OpPassManager &pm,
                               const PipelineOptions &options);

/// Stage 2: --nf4-quantize-frozen (when options.quantize is set).
void buildQuantizePipeline(mlir::OpPassManager &pm,
                           const PipelineOptions &options);

/// Stage 3: --qlora-remat (when options.remat is set), evaluated with the
/// lowering's activation type and NF4 GEMM form.
void buildRematPipeline(mlir::OpPassManager &pm,
                        const PipelineOptions &options);

/// Stage 4: --qlora-lower-to-qrt and a check that everything in
/// @train_step is qrt now.
void buildLowerToQrtPipeline(mlir::OpPassManager &pm,
                             const PipelineOptions &options);

/// Stage 5: --qrt-plan-memory and a check that every device buffer has an
/// offset and the module its qrt.memory_plan.
void buildMemoryPlanPipeline(mlir::OpPassManager &pm,
                             const PipelineOptions &options);

/// Stage 6: --qrt-codegen-cuda (when options.cuda is set) with the
/// lowering's activation type.
void buildCudaCodegenPipeline(mlir::OpPassManager &pm,
                              const PipelineOptions &options);

/// The verifiers between stages (qlora-verify-training-step,
/// qrt-verify-lowering, qrt-verify-memory-plan). They change nothing.
std::unique_ptr<mlir::Pass> createVerifyTrainingStepPass();
std::unique_ptr<mlir::Pass> createVerifyLoweringToQrtPass();
std::unique_ptr<mlir::Pass> createVerifyMemoryPlanPass();

/// Registers the verifiers, so that textual pipelines and crash
/// reproducers can name them.
void registerPipelineVerifierPasses();

/// Prints "<pass>: <seconds> s" to `os` after every pass that ran longer
/// than `thresholdSeconds`, so that a long compile says where it is.
void reportSlowPasses(mlir::PassManager &pm, llvm::raw_ostream &os,
                      double thresholdSeconds);

} // namespace qloracc

#endif // QLORACC_COMPILER_PIPELINE_PIPELINE_H
