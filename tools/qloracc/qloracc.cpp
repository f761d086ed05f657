//===- qloracc.cpp - The compiler driver ----------------------------------===//
//
//   qloracc model.mlir [-o train.bin] [--memory-report]
//           [--memory-timeline FILE.csv] [--emit-mlir FILE]
//           [--grad-accum N] [--beta1 B] [--beta2 B] [--epsilon E]
//           [--weight-decay W] [--max-grad-norm G] [--no-summary]
//           [--quantize nf4|none] [--block-size N] [--no-double-quant]
//           [--quantize-lm-head] [--quant-report] [--nf4-gemm fused|dequantize]
//           [--cuda [--cuda-archs sm_80,sm_90] [--no-cuda-ptx]]
//           [--dump-kernels DIR]
//
// Parses and verifies a qlora graph, prints its summary, runs the pipeline
// (training step, NF4 quantization of the frozen linear weights, lowering to
// qrt, memory planning and, with --cuda, CUDA code generation), prints the
// memory plan and the quantization report and writes the bytes live per
// instruction when asked, and writes train.bin with -o. On any error: a
// message, exit status 1 and no output file.
//
//===----------------------------------------------------------------------===//
#include "compiler/Pipeline/DumpKernels.h"
#include "compiler/Pipeline/Pipeline.h"
#include "compiler/Registration/InitQloracc.h"
#include "compiler/TrainBinWriter/TrainBinWriter.h"
#include "runtime/exec/MemoryReport.h"
#include "runtime/train/TextFormat.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

using namespace llvm;

static cl::OptionCategory category("qloracc options");
static cl::opt<std::string> inputFile(cl::Positional, cl::Required,
                                      cl::desc("<model.mlir>"),
                                      cl::cat(category));
static cl::opt<std::string>
    outputFile("o", cl::desc("Write the training program (train.bin) here"),
               cl::value_desc("train.bin"), cl::cat(category));
static cl::opt<bool> memoryReport(
    "memory-report",
    cl::desc("Print the planned device memory: the peak on the first line, "
             "then bytes at the peak and allocated per buffer class"),
    cl::cat(category));
static cl::opt<std::string> memoryTimeline(
    "memory-timeline",
    cl::desc("Write the bytes live at every instruction of the step, per "
             "buffer class, as CSV (index,op,kernel,live_bytes,<class>...)"),
    cl::value_desc("file.csv"), cl::cat(category));
static cl::opt<std::string>
    emitMlir("emit-mlir", cl::desc("Write the IR after the pipeline here"),
             cl::value_desc("file"), cl::cat(category));
static cl::opt<bool> randomWeights(
    "random-weights",
    cl::desc("Let qlora-run draw frozen weights that have no bytes (shape-"
             "only presets: std 0.02, NF4 absmax 0.04) and the LoRA A "
             "initialisation at load time, so that the train.bin of a 7B-70B "
             "shape holds no weights (for benchmarks)"),
    cl::cat(category));
static cl::opt<bool> noSummary("no-summary",
                               cl::desc("Do not print the graph summary"),
                               cl::cat(category));

// The training step's options; their defaults are the pass's.
static const mlir::qlora::QloraBuildTrainingStepPassOptions kStepDefaults;
static cl::opt<int64_t>
    gradAccum("grad-accum",
              cl::desc("Micro-batches per optimizer step (the runtime reads "
                       "grad-accum x batch sequences per step)"),
              cl::init(kStepDefaults.gradAccum), cl::cat(category));
static cl::opt<double> beta1("beta1", cl::desc("AdamW beta1"),
                             cl::init(kStepDefaults.beta1), cl::cat(category));
static cl::opt<double> beta2("beta2", cl::desc("AdamW beta2"),
                             cl::init(kStepDefaults.beta2), cl::cat(category));
static cl::opt<double> epsilon("epsilon", cl::desc("AdamW epsilon"),
                               cl::init(kStepDefaults.epsilon),
                               cl::cat(category));
static cl::opt<double>
    weightDecay("weight-decay",
                cl::desc("AdamW decoupled weight decay (qlora-run's default)"),
                cl::init(kStepDefaults.weightDecay), cl::cat(category));
static cl::opt<double> maxGradNorm(
    "max-grad-norm",
    cl::desc("Gradient clipping threshold, 0 = off (qlora-run's default)"),
    cl::init(kStepDefaults.maxGradNorm), cl::cat(category));

// NF4 quantization (--nf4-quantize-frozen); QLoRA's defaults.
static const mlir::qlora::Nf4QuantizeFrozenPassOptions kQuantizeDefaults;
enum class Quantization { nf4, none };
static cl::opt<Quantization> quantize(
    "quantize", cl::desc("How frozen linear weights are stored"),
    cl::values(clEnumValN(Quantization::nf4, "nf4",
                          "NF4 with bitsandbytes' layout (QLoRA, default)"),
               clEnumValN(Quantization::none, "none",
                          "in the checkpoint's dtype (plain LoRA)")),
    cl::init(Quantization::nf4), cl::cat(category));
static cl::opt<int64_t> blockSize("block-size",
                                  cl::desc("NF4 elements per absmax"),
                                  cl::init(kQuantizeDefaults.blockSize),
                                  cl::cat(category));
static cl::opt<bool>
    noDoubleQuant("no-double-quant",
                  cl::desc("Keep the NF4 absmax in fp32 (no nested 8-bit "
                           "quantization)"),
                  cl::cat(category));
static cl::opt<bool> quantizeLmHead("quantize-lm-head",
                                    cl::desc("Quantize the LM head to NF4 too"),
                                    cl::cat(category));
static cl::opt<bool> quantReport(
    "quant-report",
    cl::desc("Print per tensor the NF4 quantization error (RMSE, max abs), "
             "the bytes before and after and the bits per parameter"),
    cl::cat(category));

// How linears read NF4 weights (--qlora-lower-to-qrt's nf4-gemm).
using mlir::qlora::Nf4Gemm;
static cl::opt<Nf4Gemm> nf4Gemm(
    "nf4-gemm", cl::desc("How a linear reads its NF4 weight"),
    cl::values(clEnumValN(Nf4Gemm::fused, "fused",
                          "the GEMM dequantizes each weight tile it loads "
                          "(default; no weight-sized workspace)"),
               clEnumValN(Nf4Gemm::dequantize, "dequantize",
                          "a dequantize_nf4 launch writes the weight to a "
                          "workspace in the activation type, which a dense "
                          "GEMM reads (one decode per weight, not per row "
                          "tile; bitsandbytes' way)")),
    cl::init(Nf4Gemm::fused), cl::cat(category));

// Rematerialization (--qlora-remat) and the activation type it plans for.
enum class Remat { none, perLayer, selective, budget };
static cl::opt<Remat>
    remat("remat",
          cl::desc("Which saved activations the backward pass recomputes"),
          cl::values(
              clEnumValN(Remat::none, "none", "keep every saved activation"),
              clEnumValN(Remat::perLayer, "per-layer",
                         "keep each decoder layer's input, recompute the layer "
                         "(gradient checkpointing; default)"),
              clEnumValN(Remat::selective, "selective",
                         "recompute norms, elementwise ops and RoPE only"),
              clEnumValN(Remat::budget, "budget",
                         "the least recompute that fits --remat-budget")),
          cl::init(Remat::perLayer), cl::cat(category));
static cl::opt<std::string>
    rematBudget("remat-budget",
                cl::desc("With --remat budget: the planned peak to fit, e.g. "
                         "24GiB, 512MiB, 48GB or bytes"),
                cl::value_desc("SIZE"), cl::cat(category));
static cl::opt<bool>
    rematReport("remat-report",
                cl::desc("Print what --remat recomputed and what it costs"),
                cl::cat(category));
static cl::opt<std::string> activationType(
    "activation-type",
    cl::desc("Element type of activations and gradients: f32 (default; "
             "what the CPU backend runs), bf16 (the CUDA kernels of --cuda) "
             "or f16 (memory planning only)"),
    cl::init("f32"), cl::cat(category));

// CUDA code generation (--qrt-codegen-cuda) and the generated sources.
static cl::opt<bool>
    cuda("cuda",
         cl::desc("Compile every kernel with NVRTC (CUBINs per --cuda-archs, "
                  "PTX) into train.bin, for qlora-run --device cuda"),
         cl::cat(category));
static cl::list<std::string>
    cudaArchs("cuda-archs",
              cl::desc("With --cuda: the CUBIN architectures (default "
                       "sm_80,sm_90)"),
              cl::value_desc("sm_NN,..."), cl::CommaSeparated,
              cl::cat(category));
static cl::opt<bool>
    noCudaPtx("no-cuda-ptx",
              cl::desc("With --cuda: no compute_80 PTX for the driver's JIT"),
              cl::cat(category));
static cl::opt<std::string> dumpKernels(
    "dump-kernels",
    cl::desc("Write the CUDA source of every kernel instantiation "
             "(<entry>.cu) and the kernels/ templates to this directory"),
    cl::value_desc("dir"), cl::cat(category));

/// Checkpoint reads below this size are quick enough to go unannounced.
static constexpr uint64_t kAnnouncedWeightBytes = uint64_t(1) << 30;
/// Passes that take longer than this many seconds are reported on stderr.
static constexpr double kSlowPassSeconds = 5.0;

static int fail(const Twine &message) {
  WithColor::error(errs(), "qloracc") << message << "\n";
  return 1;
}

int main(int argc, char **argv) {
  InitLLVM initLLVM(argc, argv);
  mlir::registerPassManagerCLOptions();
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(argc, argv,
                              "qloracc: compiles a qlora training graph\n");

  mlir::DialectRegistry registry;
  qloracc::registerQloraccDialects(registry);
  mlir::MLIRContext context(registry);

  std::string error;
  std::unique_ptr<MemoryBuffer> input = mlir::openInputFile(inputFile, &error);
  if (!input)
    return fail(error);
  SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(std::move(input), SMLoc());
  // Parse, verifier, pass and writer diagnostics print with file:line:col.
  mlir::SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context);
  mlir::OwningOpRef<mlir::ModuleOp> module =
      mlir::parseSourceFile<mlir::ModuleOp>(sourceMgr, &context);
  if (!module)
    return fail(inputFile + ": not a valid qlora graph (see above)");

  qloracc::PipelineOptions options;
  options.trainingStep.gradAccum = gradAccum;
  options.trainingStep.beta1 = beta1;
  options.trainingStep.beta2 = beta2;
  options.trainingStep.epsilon = epsilon;
  options.trainingStep.weightDecay = weightDecay;
  options.trainingStep.maxGradNorm = maxGradNorm;
  if (quantize == Quantization::none) {
    if (quantReport)
      return fail("--quant-report needs --quantize nf4");
    options.quantize.reset();
  } else {
    options.quantize->blockSize = blockSize;
    options.quantize->doubleQuant = !noDoubleQuant;
    options.quantize->quantizeLmHead = quantizeLmHead;
    options.quantize->report = quantReport;
  }
  options.lowering.activationType = activationType;
  options.lowering.nf4Gemm = nf4Gemm;
  if (remat == Remat::none) {
    options.remat.reset();
  } else {
    static constexpr const char *kPolicies[] = {"none", "per-layer",
                                                "selective", "budget"};
    options.remat->policy = kPolicies[int(remat.getValue())];
    options.remat->report = rematReport;
  }
  if (!rematBudget.empty()) {
    std::optional<uint64_t> bytes = qlora::train::parseBytes(rematBudget);
    if (!bytes || *bytes == 0)
      return fail("--remat-budget: expected a size such as 24GiB, 512MiB, "
                  "48GB or a number of bytes, got '" +
                  rematBudget + "'");
    if (remat != Remat::budget)
      return fail("--remat-budget needs --remat budget");
    options.remat->budget = int64_t(*bytes);
  } else if (remat == Remat::budget) {
    return fail("--remat budget needs --remat-budget SIZE");
  }
  // Printed after the memory report, whose first line is the peak.
  std::string quantReportText;
  raw_string_ostream quantReportStream(quantReportText);
  options.quantizeReport = &quantReportStream;
  options.rematReport = &quantReportStream;
  // The report's first line is the peak, so with --memory-report the
  // summary of the imported graph (a copy of it) comes after the report.
  bool printSummary = !noSummary;
  mlir::OwningOpRef<mlir::ModuleOp> summaryModule;
  if (printSummary && memoryReport)
    summaryModule = module->clone();
  options.printSummary = printSummary && !summaryModule;

  options.memoryPlan.timeline = memoryTimeline;
  if (cuda) {
    options.cuda.emplace();
    options.cuda->archs.assign(cudaArchs.begin(), cudaArchs.end());
    options.cuda->ptx = !noCudaPtx;
  } else if (!cudaArchs.empty() || noCudaPtx) {
    return fail("--cuda-archs and --no-cuda-ptx need --cuda");
  }

  mlir::PassManager pm(&context);
  if (failed(mlir::applyPassManagerCLOptions(pm)))
    return fail("bad pass manager options");
  qloracc::reportSlowPasses(pm, errs(), kSlowPassSeconds);
  qloracc::buildQloraccPipeline(pm, options);
  if (failed(pm.run(*module)))
    return fail(inputFile + ": the pipeline failed (see above)");

  if (!dumpKernels.empty()) {
    if (failed(qloracc::dumpCudaKernels(*module, dumpKernels, activationType,
                                        errs())))
      return fail(dumpKernels + ": kernel sources not written (see above)");
  }

  if (!emitMlir.empty())
    if (Error err = writeToOutput(emitMlir, [&](raw_ostream &os) {
          module->print(os);
          return Error::success();
        }))
      return fail(emitMlir + ": " + toString(std::move(err)));

  if (memoryReport) {
    FailureOr<qlora::format::TrainBinMemoryPlan> plan =
        qloracc::readMemoryPlan(*module);
    if (failed(plan))
      return fail(inputFile + ": no memory plan to report (see above)");
    outs() << qlora::exec::renderMemoryReport(*plan);
    outs().flush();
  }
  outs() << quantReportText;
  outs().flush();
  if (summaryModule) {
    mlir::PassManager summaryPm(&context);
    qloracc::buildGraphSummaryPipeline(summaryPm);
    if (failed(summaryPm.run(*summaryModule)))
      return fail(inputFile + ": the graph summary failed (see above)");
  }
  if (outputFile.empty())
    return 0;

  FailureOr<qloracc::TrainBinContents> contents =
      qloracc::translateToTrainBin(*module, {/*randomWeights=*/randomWeights});
  if (failed(contents))
    return fail(outputFile + ": not written (see above)");
  if (contents->checkpointBytes >= kAnnouncedWeightBytes) {
    errs() << "reading weights: "
           << qlora::train::formatBytes(contents->checkpointBytes) << " from "
           << contents->checkpoints.size()
           << (contents->checkpoints.size() == 1 ? " file\n" : " files\n");
    errs().flush();
  }
  if (!qlora::format::writeTrainBin(outputFile, contents->desc, error))
    return fail(error);
  return 0;
}
