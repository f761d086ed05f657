//===- QrtCodegenCuda.h - qrt.kernel to CUDA source -------------*- C++ -*-===//
//
// What --qrt-codegen-cuda and `qloracc --dump-kernels` share: the CUDA
// translation unit of one `qrt.kernel`, instantiated from kernels/.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_PASSES_QRTCODEGENCUDA_H
#define QLORACC_PASSES_QRTCODEGENCUDA_H

#include "dialects/qrt/QrtDialect.h"
#include "kernels/CudaKernelSource.h"

namespace mlir::qlora {

/// The attribute holding a kernel's images: arch ("sm_80", "ptx") to a
/// dense_resource of ui8.
inline constexpr StringLiteral kCudaImagesAttr = "cuda.images";
/// The attribute listing a multi-phase kernel's further entries, launched
/// after its own: an array of {entry, grid, block} dictionaries.
inline constexpr StringLiteral kCudaThenAttr = "cuda.then";
/// The macros an image was compiled with beyond its source: arch to an
/// array of names (today only QLORA_NO_SM90_MIN_BLOCKS, where the sm_90
/// min-blocks hint would have spilled). Absent when there are none.
inline constexpr StringLiteral kCudaDefinesAttr = "cuda.defines";

/// True when kernels/ has a CUDA implementation of `templateName`.
bool hasCudaKernel(StringRef templateName);

/// `kernel` instantiated for activations of `activationType` ("f32",
/// "bf16"). Emits an error on `kernel` naming it and its template and
/// fails when the template has no CUDA implementation or a parameter is
/// missing or invalid.
FailureOr<::qlora::cuda::CudaKernelSource>
instantiateQrtKernel(qrt::KernelOp kernel, StringRef activationType);

} // namespace mlir::qlora

#endif // QLORACC_PASSES_QRTCODEGENCUDA_H
