//===- EmulatedGpu.h - The device behind the emulated CUDA driver -*- C++
//-*-===//
//
// What libcuda.so.1's entry points act on when the CUDA backend runs on the
// host (EmulatedCudaDriver.cpp exports them): one device whose memory is
// host memory, modules whose functions run the CUDA sources of the
// KernelCatalog on the host emulator, and launches that run to completion
// when they are made (one stream, so ordering holds trivially).
//
// It checks what a GPU checks, and what a GPU leaves undefined where a
// host can check it cheaply, so that the first real GPU run finds no
// surprises: the image kind and arch against the device, that the image
// names the requested function, launch dimensions against the device
// limits and the entry's __launch_bounds__, dynamic shared memory against
// the 48 KiB default or the cuFuncSetAttribute opt-in, and every copy and
// kernel pointer argument against a live allocation. New allocations are
// filled with 0xff (a NaN in every float type), as a GPU's are not zeroed.
//
// Configured by the environment:
//   QLORA_CUDA_EMU_KERNELS  directories of CUDA sources (colon-separated),
//                           required: `qloracc --dump-kernels DIR` writes them
//   QLORA_CUDA_EMU_CACHE    where the host libraries are kept
//                           (default: the first directory's .emu-cache/)
//   QLORA_CUDA_EMU_ARCH     the device's arch, sm_80 / sm_86 / sm_89 / sm_90
//                           (default sm_90)
//   QLORA_CUDA_EMU_DEVICES  how many devices cuDeviceGetCount says (default 1)
//   QLORA_CUDA_EMU_MEMORY   the device's memory in bytes, or with a K, M or G
//                           suffix (default 80G)
//   QLORA_CUDA_EMU_JOBS     host compilers at a time (default: the cores)
//   QLORA_CUDA_EMU_LAUNCH   `run` (default) or `check`: every launch is
//                           checked but no kernel runs and nothing is
//                           compiled, so that programs of real model sizes
//                           (bench/step's) are checked in seconds; the loss
//                           then reads 0
//
// Device memory is anonymous mmap memory: a 0 memset of fresh pages touches
// nothing, so a large arena costs host memory only where it is written.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_TEST_EMU_DRIVER_EMULATEDGPU_H
#define QLORACC_TEST_EMU_DRIVER_EMULATEDGPU_H

#include "runtime/backends/cuda/CudaDriverApi.h"
#include "test/emu/HostKernelLibrary.h"
#include "test/emu/driver/KernelCatalog.h"

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>

namespace qlora::cuda::emu {

/// The CUresult values the emulator returns (cuda.h's).
enum : CUresult {
  kInvalidValue = 1,
  kOutOfMemory = 2,
  kNotInitialized = 3,
  kNoDevice = 100,
  kInvalidDevice = 101,
  kInvalidImage = 200,
  kInvalidContext = 201,
  kNoBinaryForGpu = 209,
  kInvalidPtx = 218,
  kInvalidHandle = 400,
  kNotFound = 500,
  kLaunchOutOfResources = 701,
  kNotSupported = 801,
};

struct EmulatedModule {
  std::span<const std::byte> image; ///< the CUBIN or the PTX text
  bool ptx = false;
  /// The catalog source its functions come from, once one was asked for,
  /// and its own copy of the host library (a module's __device__ globals
  /// are its own).
  const CatalogSource *source = nullptr;
  std::unique_ptr<HostKernelLibrary> library;
};

struct EmulatedFunction {
  EmulatedModule *module = nullptr;
  std::string entry;
  CatalogEntry info;
  int maxDynamicShared = 48 * 1024;
};

class EmulatedGpu {
public:
  static EmulatedGpu &get();

  /// Every entry point holds this while it runs.
  std::mutex mutex;

  CUresult init();
  /// Removes the modules' library copies; at exit or unload.
  void removeFiles();
  bool initialized() const { return initialized_; }
  int deviceCount() const { return devices_; }
  CUresult attribute(CUdevice_attribute which, int &value) const;
  std::string name() const;

  CUresult allocate(CUdeviceptr &pointer, size_t bytes);
  CUresult free(CUdeviceptr pointer);
  size_t totalBytes() const { return totalBytes_; }
  size_t freeBytes() const { return totalBytes_ - allocatedBytes_; }
  /// The host address of [pointer, pointer + bytes) if it lies inside one
  /// allocation; otherwise nullptr and the detail says what is wrong.
  std::byte *resolve(CUdeviceptr pointer, size_t bytes, const char *what);
  /// cuMemsetD8 of resolved memory.
  void fill(std::byte *to, unsigned char value, size_t bytes);

  CUresult loadModule(EmulatedModule *&module, const void *image);
  CUresult unloadModule(EmulatedModule *module);
  CUresult getFunction(EmulatedFunction *&function, EmulatedModule *module,
                       const char *entry);
  CUresult setMaxDynamicShared(EmulatedFunction *function, int bytes);
  CUresult launch(EmulatedFunction *function, const unsigned (&grid)[3],
                  const unsigned (&block)[3], unsigned sharedBytes,
                  void **params, void **extra);

  bool validStream(CUstream stream) const;
  CUstream createStream();
  CUresult destroyStream(CUstream stream);

  /// Returns `code` and keeps `detail` for cuGetErrorString.
  CUresult fail(CUresult code, std::string detail) const;
  /// cuGetErrorString's text: the standard one, with the detail of the
  /// last failure when it had this code.
  const char *errorString(CUresult code);
  static const char *errorName(CUresult code);

private:
  EmulatedGpu() = default;

  bool initialized_ = false;
  bool runKernels_ = true;
  int devices_ = 1, major_ = 9, minor_ = 0;
  size_t totalBytes_ = size_t(80) << 30, allocatedBytes_ = 0;
  KernelCatalog catalog_;
  std::filesystem::path moduleDir_;
  unsigned modulesLoaded_ = 0;
  std::map<CUdeviceptr, size_t> allocations_;
  std::set<EmulatedModule *> modules_;
  std::set<EmulatedFunction *> functions_;
  std::set<CUstream> streams_;
  // The last failure, kept by the const queries too.
  mutable CUresult lastCode_ = 0;
  mutable std::string lastDetail_;
  std::string errorText_;
};

} // namespace qlora::cuda::emu

#endif // QLORACC_TEST_EMU_DRIVER_EMULATEDGPU_H
