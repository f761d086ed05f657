//===- DumpKernels.h - The CUDA sources of a module's kernels ---*- C++ -*-===//
//
// `qloracc --dump-kernels DIR`: the CUDA translation unit that
// --qrt-codegen-cuda compiles for every qrt.kernel, as `<entry>.cu`, and the
// kernels/*.cuh templates they were instantiated from. No NVRTC, no GPU.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_COMPILER_PIPELINE_DUMPKERNELS_H
#define QLORACC_COMPILER_PIPELINE_DUMPKERNELS_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Support/LLVM.h"

namespace llvm {
class raw_ostream;
} // namespace llvm

namespace qloracc {

/// Writes into `dir` (created if needed) `<entry>.cu` for every distinct
/// instantiation of the module's qrt.kernels with activations of
/// `activationType`, and every embedded kernels/*.cuh; each file is
/// replaced atomically. A kernel whose template has no CUDA implementation
/// yet is skipped with a note on `notes`. Fails with an error on the
/// offending kernel, or on the module for a file that cannot be written.
mlir::LogicalResult dumpCudaKernels(mlir::ModuleOp module, llvm::StringRef dir,
                                    llvm::StringRef activationType,
                                    llvm::raw_ostream &notes);

} // namespace qloracc

#endif // QLORACC_COMPILER_PIPELINE_DUMPKERNELS_H
