//===- QrtCodegenCuda.cpp - --qrt-codegen-cuda ----------------------------===//
//
// Ahead-of-time CUDA code generation: every qrt.kernel is instantiated from
// its kernels/ template (CudaKernelSource.h) and compiled with NVRTC
// (NvrtcCompiler.h) per architecture. Instantiation is cheap and runs in
// order, so its errors come out in program order; the NVRTC compiles run in
// parallel and their errors are emitted afterwards, in kernel order.
//
//===----------------------------------------------------------------------===//
#include "passes/QrtCodegenCuda.h"

#include "kernels/NvrtcCompiler.h"
#include "passes/Passes.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/Threading.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringMap.h"

namespace mlir::qlora {
#define GEN_PASS_DEF_QRTCODEGENCUDAPASS
#include "passes/Passes.h.inc"

namespace cuda = ::qlora::cuda;
namespace format = ::qlora::format;

/// The PTX image's target and the key train.bin gives it.
static constexpr StringLiteral kPtxTarget = "compute_80";
static constexpr StringLiteral kPtxKey = "ptx";
/// Lines of an NVRTC log that an error quotes.
static constexpr unsigned kLogLines = 8;

bool hasCudaKernel(StringRef templateName) {
  return llvm::is_contained(cuda::cudaKernelNames(),
                            std::string_view(templateName));
}

FailureOr<cuda::CudaKernelSource>
instantiateQrtKernel(qrt::KernelOp kernel, StringRef activationType) {
  StringRef templateName = kernel.getTemplateName();
  if (!hasCudaKernel(templateName))
    return kernel.emitOpError("@")
           << kernel.getSymName() << ": no CUDA kernel for template '"
           << templateName << "' in kernels/";
  FailureOr<format::KernelParams> params = qrt::getKernelParams(kernel);
  if (failed(params))
    return failure();
  std::string error;
  std::optional<cuda::CudaKernelSource> source =
      cuda::instantiateCudaKernel(templateName, *params, activationType, error);
  if (!source)
    return kernel.emitOpError("@") << kernel.getSymName() << ": " << error;
  return std::move(*source);
}

/// The first `kLogLines` lines of `log`, and how many were left out.
static std::string firstLines(StringRef log) {
  SmallVector<StringRef> lines;
  log.trim().split(lines, '\n');
  std::string result;
  for (StringRef line : ArrayRef(lines).take_front(kLogLines))
    result += ("\n  " + line).str();
  if (lines.size() > kLogLines)
    result +=
        "\n  ... (" + std::to_string(lines.size() - kLogLines) + " more lines)";
  return result;
}

namespace {

/// One kernel on its way through NVRTC.
struct KernelCompile {
  qrt::KernelOp op;
  cuda::CudaKernelSource source;
  std::vector<cuda::NvrtcImage> images;
  std::string error;
};

class QrtCodegenCudaPass
    : public impl::QrtCodegenCudaPassBase<QrtCodegenCudaPass> {
public:
  using Base::Base;

  void runOnOperation() override;

private:
  /// Compiles `kernel.source` for `targets`; sets `kernel.error` on failure
  /// or a spill. Runs on a worker thread: no diagnostics here.
  static void compile(KernelCompile &kernel,
                      std::span<const std::string> targets);
  /// Attaches the images and renames the kernel to its entry.
  void attachImages(KernelCompile &kernel);
};

} // namespace

void QrtCodegenCudaPass::compile(KernelCompile &kernel,
                                 std::span<const std::string> targets) {
  std::string error;
  std::optional<std::vector<cuda::NvrtcImage>> images = cuda::compileCudaKernel(
      kernel.source.source, kernel.source.entry, targets, error);
  if (!images) {
    kernel.error = "NVRTC failed:" + firstLines(error);
    return;
  }
  for (const cuda::NvrtcImage &image : *images)
    for (const cuda::PtxasFunctionInfo &function : image.functions)
      if (function.spillStoreBytes > 0 || function.spillLoadBytes > 0) {
        kernel.error = "spills registers on " + image.arch + " (" +
                       std::to_string(function.spillStoreBytes) +
                       " bytes stored, " +
                       std::to_string(function.spillLoadBytes) +
                       " loaded):" + firstLines(image.log);
        return;
      }
  kernel.images = std::move(*images);
}

void QrtCodegenCudaPass::attachImages(KernelCompile &kernel) {
  MLIRContext *context = &getContext();
  auto byteType = IntegerType::get(context, 8, IntegerType::Unsigned);
  SmallVector<NamedAttribute> images, defines;
  for (const cuda::NvrtcImage &image : kernel.images) {
    StringRef key = image.isPtx ? StringRef(kPtxKey) : StringRef(image.arch);
    if (image.withoutSm90MinBlocks)
      defines.push_back(NamedAttribute(
          StringAttr::get(context, key),
          ArrayAttr::get(
              context,
              {StringAttr::get(context, cuda::kNoSm90MinBlocksDefine)})));
    ArrayRef<char> bytes(image.bytes.data(), image.bytes.size());
    auto type = RankedTensorType::get({int64_t(bytes.size())}, byteType);
    auto blob = DenseResourceElementsAttr::get(
        type, kernel.source.entry + "_" + key.str(),
        HeapAsmResourceBlob::allocateAndCopyInferAlign(bytes));
    images.push_back(NamedAttribute(StringAttr::get(context, key), blob));
  }
  kernel.op->setAttr(kCudaImagesAttr, DictionaryAttr::get(context, images));
  if (!defines.empty())
    kernel.op->setAttr(kCudaDefinesAttr, DictionaryAttr::get(context, defines));
  if (kernel.source.then.empty())
    return;
  Builder b(context);
  SmallVector<Attribute> phases;
  for (const cuda::CudaKernelPhase &phase : kernel.source.then)
    phases.push_back(b.getDictionaryAttr(
        {b.getNamedAttr("entry", b.getStringAttr(phase.entry)),
         b.getNamedAttr("grid",
                        b.getDenseI64ArrayAttr(
                            {phase.grid[0], phase.grid[1], phase.grid[2]})),
         b.getNamedAttr("block",
                        b.getDenseI64ArrayAttr({phase.blockThreads, 1, 1}))}));
  kernel.op->setAttr(kCudaThenAttr, b.getArrayAttr(phases));
}

void QrtCodegenCudaPass::runOnOperation() {
  ModuleOp module = getOperation();
  if (!cuda::nvrtcAvailable()) {
    module.emitError("--qrt-codegen-cuda: built without NVRTC (no CUDA "
                     "toolkit was found at configure time)");
    return signalPassFailure();
  }
  std::vector<std::string> targets(archs.begin(), archs.end());
  if (targets.empty())
    targets = {"sm_80", "sm_90"};
  for (const std::string &arch : targets)
    if (!StringRef(arch).starts_with("sm_")) {
      module.emitError("--qrt-codegen-cuda: archs must be sm_NN CUBIN "
                       "targets (PTX comes with ptx=true), found '")
          << arch << "'";
      return signalPassFailure();
    }
  if (ptx)
    targets.push_back(kPtxTarget.str());

  // Instantiate in program order; identical instantiations share a kernel.
  std::vector<KernelCompile> kernels;
  llvm::StringMap<qrt::KernelOp> kernelByEntry;
  llvm::DenseMap<StringAttr, qrt::KernelOp> renamed;
  bool ok = true;
  for (qrt::KernelOp op : module.getOps<qrt::KernelOp>()) {
    FailureOr<cuda::CudaKernelSource> source =
        instantiateQrtKernel(op, activationType);
    if (failed(source)) {
      ok = false;
      continue;
    }
    auto [it, inserted] = kernelByEntry.try_emplace(source->entry, op);
    renamed[op.getSymNameAttr()] = it->second;
    if (inserted)
      kernels.push_back({op, std::move(*source), {}, {}});
  }
  if (!ok)
    return signalPassFailure();

  if (failed(failableParallelForEach(&getContext(), kernels,
                                     [&](KernelCompile &kernel) {
                                       compile(kernel, targets);
                                       return success();
                                     })))
    return signalPassFailure();
  for (KernelCompile &kernel : kernels)
    if (!kernel.error.empty()) {
      kernel.op.emitOpError("@")
          << kernel.op.getSymName() << " (template '"
          << kernel.op.getTemplateName() << "'): " << kernel.error;
      ok = false;
    }
  if (!ok)
    return signalPassFailure();

  // Launches follow their kernel to its entry and get its launch shape.
  llvm::DenseMap<Operation *, const KernelCompile *> compiled;
  for (const KernelCompile &kernel : kernels)
    compiled[kernel.op] = &kernel;
  module.walk([&](qrt::LaunchOp launch) {
    auto it = renamed.find(launch.getKernelAttr().getAttr());
    if (it == renamed.end())
      return;
    const cuda::CudaKernelSource &source = compiled[it->second]->source;
    launch.setKernel(source.entry);
    launch.setGrid(
        ArrayRef<int64_t>{source.grid[0], source.grid[1], source.grid[2]});
    launch.setBlock(ArrayRef<int64_t>{source.blockThreads, 1, 1});
  });
  for (KernelCompile &kernel : kernels) {
    attachImages(kernel);
    kernel.op.setSymName(kernel.source.entry);
  }
  // Duplicates of a kept kernel are no longer referenced.
  for (qrt::KernelOp op :
       llvm::make_early_inc_range(module.getOps<qrt::KernelOp>()))
    if (!compiled.count(op))
      op.erase();
}

} // namespace mlir::qlora
