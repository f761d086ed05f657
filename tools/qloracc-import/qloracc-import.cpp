//===- qloracc-import.cpp - HF checkpoint or preset to model.mlir ---------===//
//
//   qloracc-import <hf-model-dir | --preset NAME> [--lora SPEC]
//                  [--num-layers N] -o model.mlir
//
//===----------------------------------------------------------------------===//
#include "compiler/Importer/Importer.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

using namespace llvm;
using namespace qloracc::importer;

static cl::OptionCategory category("qloracc-import options");

static cl::opt<std::string> modelDirectory(cl::Positional,
                                           cl::desc("<hf-model-dir>"),
                                           cl::cat(category));
static cl::opt<std::string>
    preset("preset",
           cl::desc("Built-in model instead of a directory: tiny (random "
                    "weights inline) or a shape-only real model: "
                    "llama2-7b, llama2-13b, llama2-70b, llama3-8b, "
                    "mistral-7b"),
           cl::value_desc("name"), cl::cat(category));
static cl::opt<bool>
    noWeights("no-weights",
              cl::desc("Shape-only graph: weights carry no bytes (for "
                       "compile-time and memory-planning work)"),
              cl::cat(category));
static cl::opt<std::string> loraSpec(
    "lora",
    cl::desc("LoRA configuration, e.g. r=16,alpha=32,dropout=0.05,"
             "targets=q_proj,v_proj or targets=all-linear (targets last)"),
    cl::init("r=16,alpha=32,dropout=0,targets=q_proj,v_proj"),
    cl::value_desc("spec"), cl::cat(category));
static cl::opt<bool> rslora("rslora",
                            cl::desc("Scale LoRA by alpha/sqrt(r) (rsLoRA)"),
                            cl::cat(category));
static cl::opt<int64_t> batchSize("batch", cl::desc("Batch size (default 1)"),
                                  cl::cat(category));
static cl::opt<int64_t> seqLength(
    "seq",
    cl::desc("Sequence length (default: 64 for tiny, 2048 for the other "
             "presets, 512 for a directory)"),
    cl::cat(category));
static cl::opt<int64_t> numLayers(
    "num-layers",
    cl::desc("Override num_hidden_layers: any positive count for a preset "
             "(tiny draws weights for every layer); for a model directory at "
             "most config.json's, whose first N layers' weights are used and "
             "the rest of the checkpoint ignored"),
    cl::value_desc("N"), cl::cat(category));
static cl::opt<int64_t> seed("seed", cl::desc("Seed of the LoRA init"),
                             cl::init(0), cl::cat(category));
static cl::opt<uint64_t>
    weightSeed("weight-seed",
               cl::desc("Seed of the tiny preset's random frozen weights"),
               cl::init(0), cl::cat(category));
static cl::opt<std::string> outputFile("o", cl::desc("Output file"),
                                       cl::value_desc("model.mlir"),
                                       cl::init("-"), cl::cat(category));

static int fail(const Twine &message) {
  WithColor::error(errs(), "qloracc-import") << message << "\n";
  return 1;
}

int main(int argc, char **argv) {
  InitLLVM initLLVM(argc, argv);
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(
      argc, argv,
      "qloracc-import: a LLaMA-family model plus a LoRA configuration to a "
      "qlora training graph (model.mlir)\n");

  ImportRequest request;
  request.modelDirectory = modelDirectory;
  request.preset = preset;
  request.noWeights = noWeights;
  Expected<LoraOptions> lora = parseLoraSpec(loraSpec);
  if (!lora)
    return fail(toString(lora.takeError()));
  request.lora = *lora;
  request.lora.useRslora |= rslora;
  if (seed.getNumOccurrences())
    request.lora.seed = seed;
  if (batchSize.getNumOccurrences())
    request.batch = batchSize;
  if (seqLength.getNumOccurrences())
    request.seq = seqLength;
  if (numLayers.getNumOccurrences())
    request.numLayers = numLayers;
  request.weightSeed = weightSeed;

  mlir::MLIRContext context;
  Expected<mlir::OwningOpRef<mlir::ModuleOp>> module =
      importModel(context, request);
  if (!module)
    return fail(toString(module.takeError()));
  if (mlir::failed(mlir::verify(**module)))
    return fail("internal error: the imported graph does not verify");

  // Written through a temporary file and renamed: no partial model.mlir.
  if (Error err = writeToOutput(outputFile, [&](raw_ostream &os) {
        (*module)->print(os);
        return Error::success();
      }))
    return fail(outputFile + ": " + toString(std::move(err)));
  return 0;
}
