//===- DumpKernels.cpp - The CUDA sources of a module's kernels -----------===//
#include "compiler/Pipeline/DumpKernels.h"

#include "passes/QrtCodegenCuda.h"

#include "llvm/ADT/StringSet.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;

/// Writes `text` to `dir`/`name` through a temporary file renamed into
/// place, so that a reader never sees half a file.
static LogicalResult writeFile(ModuleOp module, StringRef dir, StringRef name,
                               StringRef text) {
  SmallString<256> path(dir);
  llvm::sys::path::append(path, name);
  if (llvm::Error err = llvm::writeToOutput(path, [&](llvm::raw_ostream &os) {
        os << text;
        return llvm::Error::success();
      }))
    return module.emitError("--dump-kernels: cannot write '")
           << path << "': " << llvm::toString(std::move(err));
  return success();
}

/// What --qrt-codegen-cuda compiled `kernel` with beyond its source (its
/// cuda.defines), as comment lines to go in front of the source: what to
/// pass nvcc to rebuild the image that train.bin holds.
static std::string definesNote(qrt::KernelOp kernel) {
  auto defines =
      kernel->getAttrOfType<DictionaryAttr>(mlir::qlora::kCudaDefinesAttr);
  if (!defines)
    return "";
  std::string note;
  llvm::raw_string_ostream os(note);
  for (NamedAttribute arch : defines) {
    os << "// qloracc compiled the " << arch.getName().getValue()
       << " image with";
    for (auto name : cast<ArrayAttr>(arch.getValue()).getAsRange<StringAttr>())
      os << " -D" << name.getValue();
    os << " (the min-blocks hint would have spilled registers)\n";
  }
  return note;
}

LogicalResult qloracc::dumpCudaKernels(ModuleOp module, StringRef dir,
                                       StringRef activationType,
                                       llvm::raw_ostream &notes) {
  if (std::error_code error = llvm::sys::fs::create_directories(dir))
    return module.emitError("--dump-kernels: cannot create directory '")
           << dir << "': " << error.message();
  llvm::StringSet<> written;
  for (qrt::KernelOp kernel : module.getOps<qrt::KernelOp>()) {
    if (!mlir::qlora::hasCudaKernel(kernel.getTemplateName())) {
      notes << "--dump-kernels: skipped @" << kernel.getSymName()
            << ": no CUDA kernel for template '" << kernel.getTemplateName()
            << "' in kernels/\n";
      continue;
    }
    FailureOr<::qlora::cuda::CudaKernelSource> source =
        mlir::qlora::instantiateQrtKernel(kernel, activationType);
    if (failed(source))
      return failure();
    if (written.insert(source->entry).second &&
        failed(writeFile(module, dir, source->entry + ".cu",
                         definesNote(kernel) + source->source)))
      return failure();
  }
  for (const ::qlora::cuda::CudaTemplateFile &file :
       ::qlora::cuda::cudaTemplateFiles())
    if (failed(writeFile(module, dir, file.name, file.text)))
      return failure();
  return success();
}
