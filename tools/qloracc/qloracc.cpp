//===- qloracc.cpp - The compiler driver ----------------------------------===//
//
//   qloracc model.mlir [--emit-mlir out.mlir] [--no-summary]
//
// Parses and verifies a qlora graph, runs the pipeline that exists and
// prints what the graph needs. Serialization to train.bin joins it with the
// training pipeline.
//
//===----------------------------------------------------------------------===//
#include "compiler/Pipeline/Pipeline.h"
#include "compiler/Registration/InitQloracc.h"

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
    emitMlir("emit-mlir", cl::desc("Write the IR after the pipeline here"),
             cl::value_desc("file"), cl::cat(category));
static cl::opt<bool> noSummary("no-summary",
                               cl::desc("Do not print the graph summary"),
                               cl::cat(category));

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
  // Parse and verifier diagnostics print with file:line:col.
  mlir::SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context);
  mlir::OwningOpRef<mlir::ModuleOp> module =
      mlir::parseSourceFile<mlir::ModuleOp>(sourceMgr, &context);
  if (!module)
    return fail(inputFile + ": not a valid qlora graph (see above)");

  mlir::PassManager pm(&context);
  if (failed(mlir::applyPassManagerCLOptions(pm)))
    return fail("bad pass manager options");
  qloracc::PipelineOptions options;
  options.printSummary = !noSummary;
  qloracc::buildQloraccPipeline(pm, options);
  if (failed(pm.run(*module)))
    return fail(inputFile + ": the pipeline failed (see above)");

  if (!emitMlir.empty())
    if (Error err = writeToOutput(emitMlir, [&](raw_ostream &os) {
          module->print(os);
          return Error::success();
        }))
      return fail(emitMlir + ": " + toString(std::move(err)));
  return 0;
}
