//===- CudaKernelSource.h - kernels/ templates, instantiated ---*- C++ -*-===//
//
// Turns one `qrt.kernel` instantiation (a KernelAbi.h name and its static
// parameters) into a self-contained CUDA C++ translation unit: the kernels/
// templates it needs (embedded at build time), a `Config` struct holding the
// parameters as constants, and one `extern "C" __global__` entry whose
// arguments are the ABI's buffer arguments, in order, one pointer each.
// No CUDA toolkit is needed here; NvrtcCompiler.h compiles the result.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_KERNELS_CUDAKERNELSOURCE_H
#define QLORACC_KERNELS_CUDAKERNELSOURCE_H

#include "runtime/format/KernelParams.h"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qlora::cuda {

/// A further entry of a multi-phase kernel (a GEMM chain, attention's
/// backward pass): launched after the main entry, in order, on the same
/// stream with the same arguments.
struct CudaKernelPhase {
  std::string entry;
  uint32_t blockThreads = 0;
  std::array<uint32_t, 3> grid = {1, 1, 1};
};

/// One instantiated kernel, ready for NVRTC.
struct CudaKernelSource {
  /// The `extern "C" __global__` function: `<kernel>_<act>_<hash>`, where
  /// the hash covers the kernel, the activation type and every parameter.
  std::string entry;
  /// The whole translation unit.
  std::string source;
  /// Threads per block (also the entry's __launch_bounds__).
  uint32_t blockThreads = 0;
  /// Blocks per grid (x, y, z), from the static shapes.
  std::array<uint32_t, 3> grid = {1, 1, 1};
  /// Entries `<entry>_p1`, `<entry>_p2`, ... to launch after this one.
  std::vector<CudaKernelPhase> then;
};

/// The CUDA source of `templateName` (a KernelAbi.h kernel) with `params`,
/// activations and gradients of `activationType` ("f32" or "bf16").
/// Returns std::nullopt and sets `error` (naming the kernel and the
/// parameter) for an unknown kernel or a missing or invalid parameter.
std::optional<CudaKernelSource>
instantiateCudaKernel(std::string_view templateName,
                      const format::KernelParams &params,
                      std::string_view activationType, std::string &error);

/// The KernelAbi.h kernels instantiateCudaKernel knows.
std::vector<std::string_view> cudaKernelNames();

/// The embedded kernels/*.cuh files, by file name (for --dump-kernels).
struct CudaTemplateFile {
  std::string_view name, text;
};
std::vector<CudaTemplateFile> cudaTemplateFiles();

} // namespace qlora::cuda

#endif // QLORACC_KERNELS_CUDAKERNELSOURCE_H
