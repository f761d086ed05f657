//===- NvrtcCompiler.h - CUDA source to CUBIN and PTX ----------*- C++ -*-===//
//
// Compiles one CUDA translation unit with NVRTC, ahead of time, on a machine
// without a GPU or a driver: "sm_XY" gives a CUBIN (nvrtcGetCUBIN),
// "compute_XY" gives PTX for the driver's JIT. ptxas runs with -v, and its
// report (registers, stack frame, spill stores and loads per function) is
// parsed so that callers can refuse kernels that spill.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_KERNELS_NVRTCCOMPILER_H
#define QLORACC_KERNELS_NVRTCCOMPILER_H

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qlora::cuda {

/// One function's resources as ptxas -v reports them.
struct PtxasFunctionInfo {
  std::string function;
  std::string arch; ///< "sm_90"
  int registers = -1;
  int64_t stackFrameBytes = 0, spillStoreBytes = 0, spillLoadBytes = 0;
};

/// The functions of a ptxas -v log (NVRTC's program log).
std::vector<PtxasFunctionInfo> parsePtxasInfo(std::string_view log);

struct NvrtcImage {
  std::string arch; ///< as requested: "sm_90" or "compute_80"
  bool isPtx = false;
  std::string bytes; ///< CUBIN or PTX text
  std::string log;   ///< NVRTC's program log for this arch
  std::vector<PtxasFunctionInfo> functions; ///< empty for PTX
  /// Compiled with kNoSm90MinBlocksDefine (compileCudaKernel).
  bool withoutSm90MinBlocks = false;

  /// Whether ptxas stored or loaded any register to local memory.
  bool spills() const;
};

/// Defined, kernels/Common.cuh's QLORA_MIN_BLOCKS(older, sm90) gives sm_90
/// `older` too.
inline constexpr std::string_view kNoSm90MinBlocksDefine =
    "QLORA_NO_SM90_MIN_BLOCKS";

struct NvrtcOptions {
  /// Where cuda_bf16.h and cuda_fp16.h are; defaults to the toolkit this
  /// library was built against.
  std::vector<std::string> includeDirs;
  /// Extra NVRTC options ("-lineinfo", ...).
  std::vector<std::string> extra;
};

/// True when this library was built with NVRTC (the CUDA toolkit).
bool nvrtcAvailable();

/// NVRTC's version as "major.minor", or "none".
std::string nvrtcVersionString();

/// Compiles `source` once per arch. Returns std::nullopt and sets `error`
/// (with NVRTC's log, naming `name` and the arch) when NVRTC is missing, an
/// arch is not "sm_NN"/"compute_NN" or compilation fails.
std::optional<std::vector<NvrtcImage>>
compileCuda(std::string_view source, std::string_view name,
            std::span<const std::string> archs, std::string &error,
            const NvrtcOptions &options = {});

/// compileCuda for a kernels/ translation unit: a CUBIN that spills is
/// compiled again with kNoSm90MinBlocksDefine, since a QLORA_MIN_BLOCKS
/// occupancy hint is worth its higher occupancy step only where ptxas
/// meets it without spilling (how close it comes varies with ptxas).
std::optional<std::vector<NvrtcImage>>
compileCudaKernel(std::string_view source, std::string_view name,
                  std::span<const std::string> archs, std::string &error,
                  const NvrtcOptions &options = {});

} // namespace qlora::cuda

#endif // QLORACC_KERNELS_NVRTCCOMPILER_H
