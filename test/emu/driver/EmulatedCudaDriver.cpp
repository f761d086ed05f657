//===- EmulatedCudaDriver.cpp - libcuda.so.1 for a machine without a GPU --===//
//
// The driver API entry points the CUDA backend resolves (CudaDriverApi.h),
// exported under their versioned names from a library named libcuda.so.1:
// with its directory first on LD_LIBRARY_PATH, qlora-run --device cuda
// (and every GPU test) runs unchanged on the host emulator (EmulatedGpu.h
// says what it checks and how it is configured). Every call holds the
// device's lock.
//
//===----------------------------------------------------------------------===//
#include "test/emu/driver/EmulatedGpu.h"

#include <cstring>

using namespace qlora::cuda;
using qlora::cuda::emu::EmulatedFunction;
using qlora::cuda::emu::EmulatedGpu;
using qlora::cuda::emu::EmulatedModule;

namespace {

/// The device, locked, for an entry point that needs cuInit first.
struct Device {
  EmulatedGpu &gpu = EmulatedGpu::get();
  std::lock_guard<std::mutex> lock{gpu.mutex};
  bool ready() const { return gpu.initialized(); }
  CUresult notReady() {
    return gpu.fail(emu::kNotInitialized, "cuInit has not succeeded");
  }
};

/// The one context: the primary context of device 0.
CUctx_st *primaryContext() {
  static int token;
  return reinterpret_cast<CUctx_st *>(&token);
}

EmulatedModule *moduleOf(CUmodule module) {
  return reinterpret_cast<EmulatedModule *>(module);
}
EmulatedFunction *functionOf(CUfunction function) {
  return reinterpret_cast<EmulatedFunction *>(function);
}

/// The device outlives its users; its files do not outlive the process.
struct RemoveFilesAtExit {
  ~RemoveFilesAtExit() { EmulatedGpu::get().removeFiles(); }
} removeFilesAtExit;

} // namespace

#define QLORA_EMU_EXPORT extern "C" __attribute__((visibility("default")))

QLORA_EMU_EXPORT CUresult cuInit(unsigned flags) {
  Device d;
  if (flags != 0)
    return d.gpu.fail(emu::kInvalidValue, "cuInit flags must be 0");
  return d.gpu.init();
}

QLORA_EMU_EXPORT CUresult cuDeviceGetCount(int *count) {
  Device d;
  if (!d.ready())
    return d.notReady();
  *count = d.gpu.deviceCount();
  return CUDA_SUCCESS;
}

QLORA_EMU_EXPORT CUresult cuDeviceGet(CUdevice *device, int ordinal) {
  Device d;
  if (!d.ready())
    return d.notReady();
  if (ordinal < 0 || ordinal >= d.gpu.deviceCount())
    return d.gpu.fail(emu::kInvalidDevice,
                      "device " + std::to_string(ordinal) + " of " +
                          std::to_string(d.gpu.deviceCount()));
  *device = ordinal;
  return CUDA_SUCCESS;
}

QLORA_EMU_EXPORT CUresult cuDeviceGetName(char *name, int length,
                                          CUdevice device) {
  Device d;
  if (!d.ready())
    return d.notReady();
  if (device != 0 || length <= 0)
    return d.gpu.fail(emu::kInvalidValue, "cuDeviceGetName arguments");
  std::string text = d.gpu.name();
  std::strncpy(name, text.c_str(), size_t(length));
  name[length - 1] = '\0';
  return CUDA_SUCCESS;
}

QLORA_EMU_EXPORT CUresult cuDeviceGetAttribute(int *value,
                                               CUdevice_attribute which,
                                               CUdevice device) {
  Device d;
  if (!d.ready())
    return d.notReady();
  if (device != 0)
    return d.gpu.fail(emu::kInvalidDevice, "only device 0 is emulated");
  return d.gpu.attribute(which, *value);
}

QLORA_EMU_EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *context,
                                                   CUdevice device) {
  Device d;
  if (!d.ready())
    return d.notReady();
  if (device != 0)
    return d.gpu.fail(emu::kInvalidDevice, "only device 0 is emulated");
  *context = primaryContext();
  return CUDA_SUCCESS;
}

QLORA_EMU_EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice device) {
  Device d;
  return device == 0 ? CUDA_SUCCESS
                     : d.gpu.fail(emu::kInvalidDevice, "only device 0");
}

QLORA_EMU_EXPORT CUresult cuCtxSetCurrent(CUcontext context) {
  Device d;
  if (context && context != primaryContext())
    return d.gpu.fail(emu::kInvalidContext, "not the primary context");
  return CUDA_SUCCESS;
}

QLORA_EMU_EXPORT CUresult cuMemGetInfo_v2(size_t *freeBytes,
                                          size_t *totalBytes) {
  Device d;
  if (!d.ready())
    return d.notReady();
  *freeBytes = d.gpu.freeBytes();
  *totalBytes = d.gpu.totalBytes();
  return CUDA_SUCCESS;
}

QLORA_EMU_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *pointer, size_t bytes) {
  Device d;
  return d.ready() ? d.gpu.allocate(*pointer, bytes) : d.notReady();
}

QLORA_EMU_EXPORT CUresult cuMemFree_v2(CUdeviceptr pointer) {
  Device d;
  return d.ready() ? d.gpu.free(pointer) : d.notReady();
}

QLORA_EMU_EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src,
                                          size_t bytes) {
  Device d;
  std::byte *to = d.gpu.resolve(dst, bytes, "cuMemcpyHtoD destination");
  if (!to)
    return emu::kInvalidValue;
  std::memcpy(to, src, bytes);
  return CUDA_SUCCESS;
}

QLORA_EMU_EXPORT CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src,
                                          size_t bytes) {
  Device d;
  std::byte *from = d.gpu.resolve(src, bytes, "cuMemcpyDtoH source");
  if (!from)
    return emu::kInvalidValue;
  std::memcpy(dst, from, bytes);
  return CUDA_SUCCESS;
}

QLORA_EMU_EXPORT CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src,
                                          size_t bytes) {
  Device d;
  std::byte *to = d.gpu.resolve(dst, bytes, "cuMemcpyDtoD destination");
  std::byte *from =
      to ? d.gpu.resolve(src, bytes, "cuMemcpyDtoD source") : nullptr;
  if (!from)
    return emu::kInvalidValue;
  std::memmove(to, from, bytes);
  return CUDA_SUCCESS;
}

QLORA_EMU_EXPORT CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char value,
                                        size_t bytes) {
  Device d;
  std::byte *to = d.gpu.resolve(dst, bytes, "cuMemsetD8 destination");
  if (!to)
    return emu::kInvalidValue;
  d.gpu.fill(to, value, bytes);
  return CUDA_SUCCESS;
}

QLORA_EMU_EXPORT CUresult cuModuleLoadData(CUmodule *module,
                                           const void *image) {
  Device d;
  if (!d.ready())
    return d.notReady();
  EmulatedModule *loaded = nullptr;
  CUresult result = d.gpu.loadModule(loaded, image);
  *module = reinterpret_cast<CUmodule>(loaded);
  return result;
}

QLORA_EMU_EXPORT CUresult cuModuleGetFunction(CUfunction *function,
                                              CUmodule module,
                                              const char *name) {
  Device d;
  EmulatedFunction *found = nullptr;
  CUresult result = d.gpu.getFunction(found, moduleOf(module), name);
  *function = reinterpret_cast<CUfunction>(found);
  return result;
}

QLORA_EMU_EXPORT CUresult cuModuleUnload(CUmodule module) {
  Device d;
  return d.gpu.unloadModule(moduleOf(module));
}

QLORA_EMU_EXPORT CUresult cuFuncSetAttribute(CUfunction function,
                                             CUfunction_attribute which,
                                             int value) {
  Device d;
  if (which != CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)
    return d.gpu.fail(emu::kNotSupported, "function attribute " +
                                              std::to_string(which) +
                                              " is not emulated");
  return d.gpu.setMaxDynamicShared(functionOf(function), value);
}

QLORA_EMU_EXPORT CUresult cuLaunchKernel(CUfunction function, unsigned gridX,
                                         unsigned gridY, unsigned gridZ,
                                         unsigned blockX, unsigned blockY,
                                         unsigned blockZ, unsigned sharedBytes,
                                         CUstream stream, void **params,
                                         void **extra) {
  Device d;
  if (!d.gpu.validStream(stream))
    return d.gpu.fail(emu::kInvalidHandle, "cuLaunchKernel on an unknown "
                                           "stream");
  return d.gpu.launch(functionOf(function), {gridX, gridY, gridZ},
                      {blockX, blockY, blockZ}, sharedBytes, params, extra);
}

QLORA_EMU_EXPORT CUresult cuStreamCreate(CUstream *stream, unsigned flags) {
  Device d;
  if (!d.ready())
    return d.notReady();
  (void)flags; // every launch completes before it returns
  *stream = d.gpu.createStream();
  return CUDA_SUCCESS;
}

QLORA_EMU_EXPORT CUresult cuStreamDestroy_v2(CUstream stream) {
  Device d;
  return d.gpu.destroyStream(stream);
}

QLORA_EMU_EXPORT CUresult cuStreamSynchronize(CUstream stream) {
  Device d;
  return d.gpu.validStream(stream)
             ? CUDA_SUCCESS
             : d.gpu.fail(emu::kInvalidHandle,
                          "cuStreamSynchronize of an unknown stream");
}

QLORA_EMU_EXPORT CUresult cuGetErrorName(CUresult code, const char **name) {
  *name = EmulatedGpu::errorName(code);
  return *name ? CUDA_SUCCESS : emu::kInvalidValue;
}

QLORA_EMU_EXPORT CUresult cuGetErrorString(CUresult code, const char **text) {
  Device d;
  *text = d.gpu.errorString(code);
  return *text ? CUDA_SUCCESS : emu::kInvalidValue;
}
