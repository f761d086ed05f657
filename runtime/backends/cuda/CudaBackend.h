//===- CudaBackend.h - Runs train.bin's kernel images on a GPU --*- C++ -*-===//
//
// exec::Backend over the CUDA driver API (CudaDriver, loaded at run time):
// one device arena allocated with cuMemAlloc, copies with cuMemcpy*, and
// launches of the CUBIN/PTX images that --qrt-codegen-cuda stores in
// train.bin (Kernel.images), on one stream of the device's primary context.
//
// Launch ABI (what the codegen must emit, and all this backend passes):
//   - each kernel image exports an `extern "C" __global__` function named
//     like the train.bin Kernel's `symbol`;
//   - its parameters are the device pointers (8 bytes each) of the launch's
//     buffers, in the order of Instr.args, which is KernelAbi.h's argument
//     order for the kernel's template; nothing else. Kernel params
//     (KernelParam: shapes, scales, ...) are compiled into the image and
//     are not passed;
//   - the launch uses Instr.grid, Instr.block (missing dimensions are 1)
//     and Instr.smem bytes of dynamic shared memory; above 48 KiB the
//     backend opts the function in (cuFuncSetAttribute) up to the device's
//     limit, and refuses launches beyond it at load.
//
// Image choice per kernel, for a device of compute capability X.Y: the CUBIN
// "sm_XY"; else a CUBIN "sm_XZ" with Z < Y (binary compatible within a
// major version); else the "ptx" image, JIT-compiled by cuModuleLoadData,
// if its `.target sm_XY` is not newer than the device.
// A kernel with none of these is refused when the backend is created,
// before anything runs.
//
// Errors of the void calls (launch, upload, download, copy) are kept and
// reported by the next synchronize(); the first one wins.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_BACKENDS_CUDA_CUDABACKEND_H
#define QLORACC_RUNTIME_BACKENDS_CUDA_CUDABACKEND_H

#include "runtime/backends/cuda/CudaDriver.h"
#include "runtime/exec/Backend.h"
#include "runtime/format/TrainBin.h"

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace qlora::cuda {

/// One compiled image of a kernel: a CUBIN for `arch` ("sm_90") or PTX
/// (`arch` == "ptx"). The bytes stay owned by the caller (train.bin's
/// mapping) for as long as the backend lives.
struct CudaKernelImage {
  std::string arch;
  std::span<const std::byte> bytes;
};

/// A further entry of a multi-phase kernel (train.bin's Kernel.then).
struct CudaKernelPhaseSpec {
  std::string entry;
  exec::LaunchGeometry geometry;
};

/// What the backend needs to know of one train.bin kernel.
struct CudaKernelSpec {
  std::string symbol;
  std::string templateName;
  std::vector<CudaKernelImage> images;
  /// The most threads per block and dynamic shared memory of its launches.
  uint32_t maxBlockThreads = 0;
  uint32_t maxSharedBytes = 0;
  /// The geometry of its first launch, for launch() without one.
  exec::LaunchGeometry geometry;
  /// Launched after each launch of `symbol`, in order, same arguments.
  std::vector<CudaKernelPhaseSpec> then;
};

/// The kernels of `file` with their images and launch geometry.
std::vector<CudaKernelSpec> cudaKernelsOf(const format::TrainBinFile &file);

/// "sm_90" for compute capability 9.0.
std::string cudaArchName(int major, int minor);

/// The index of the image to load on a device of compute capability
/// major.minor (see the header comment), or std::nullopt.
std::optional<size_t> pickCudaImage(std::span<const CudaKernelImage> images,
                                    int major, int minor);

/// "" when every kernel has an image for major.minor; otherwise "train.bin
/// has no CUDA image for kernel '<symbol>' (template '<t>'): compile it with
/// --qrt-codegen-cuda (arch sm_XY)" for the first kernel without one.
std::string findMissingCudaImage(std::span<const CudaKernelSpec> kernels,
                                 int major, int minor);

class CudaBackend final : public exec::Backend {
public:
  /// Loads the driver, opens GPU 0, checks that every kernel has an image
  /// for it and that every launch fits its limits.
  static std::unique_ptr<CudaBackend>
  create(std::vector<CudaKernelSpec> kernels, CudaFailure &failure,
         const char *driverLibrary = CudaDriver::kLibrary);
  /// The same for the kernels of `file`; messages name the file.
  static std::unique_ptr<CudaBackend> create(const format::TrainBinFile &file,
                                             CudaFailure &failure);
  ~CudaBackend() override;

  std::string_view name() const override { return "cuda"; }
  /// "CUDA, NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.2 GiB)".
  std::string description() const override;

  bool allocateArena(uint64_t bytes, std::string &error) override;
  bool prepareLaunch(uint32_t kernel, std::string_view templateName,
                     const format::KernelParams &params,
                     std::span<const exec::ArenaRange> args,
                     std::string &error) override;
  void launch(uint32_t kernel, std::span<const exec::ArenaRange> args) override;
  void launchOnGrid(uint32_t kernel, const exec::LaunchGeometry &geometry,
                    std::span<const exec::ArenaRange> args) override;
  void upload(uint64_t offset, std::span<const std::byte> bytes) override;
  void download(uint64_t offset, std::span<std::byte> bytes) override;
  void copy(uint64_t srcOffset, uint64_t dstOffset, uint64_t bytes) override;
  bool synchronize(std::string &error) override;

  /// "sm_90".
  std::string arch() const { return cudaArchName(major_, minor_); }
  const std::string &deviceName() const { return deviceName_; }
  /// The image chosen for `kernel` ("sm_90", "ptx").
  const std::string &imageArch(uint32_t kernel) const;
  uint64_t arenaBytes() const { return arenaBytes_; }

private:
  struct LoadedKernel {
    size_t image = 0;
    CUmodule module = nullptr;
    CUfunction function = nullptr;
    std::vector<CUfunction> then; ///< CudaKernelSpec::then's functions
  };

  CudaBackend() = default;
  bool open(CudaFailure &failure);
  bool loadKernel(uint32_t kernel, std::string &error);
  /// cuModuleGetFunction of `entry` in `kernel`'s module, with its shared
  /// memory limit raised where its launches need it.
  bool getFunction(uint32_t kernel, const std::string &entry,
                   CUfunction &function, std::string &error);
  void launchFunction(uint32_t kernel, CUfunction function,
                      const exec::LaunchGeometry &geometry);
  /// Keeps the first failure for synchronize().
  void keep(CUresult result, std::string_view entry);

  // Declared first so that it is destroyed last.
  std::unique_ptr<CudaDriver> driver_;
  CUdevice device_ = 0;
  CUcontext context_ = nullptr;
  CUstream stream_ = nullptr;
  std::string deviceName_;
  int major_ = 0, minor_ = 0, multiprocessors_ = 0;
  int maxBlockThreads_ = 0, maxSharedBytes_ = 0;
  size_t totalBytes_ = 0;
  CUdeviceptr arena_ = 0;
  uint64_t arenaBytes_ = 0;
  std::vector<CudaKernelSpec> kernels_;
  std::vector<LoadedKernel> loaded_;
  std::string pendingError_;
  // Scratch for launches, reused so that a step allocates nothing.
  std::vector<CUdeviceptr> argValues_;
  std::vector<void *> argPointers_;
};

} // namespace qlora::cuda

#endif // QLORACC_RUNTIME_BACKENDS_CUDA_CUDABACKEND_H
