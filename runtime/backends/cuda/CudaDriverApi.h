//===- CudaDriverApi.h - The CUDA driver API types we call ------*- C++ -*-===//
//
// The handful of CUDA driver API types, constants and entry-point signatures
// the CUDA backend uses, declared here rather than taken from <cuda.h>: the
// runtime must build where no CUDA toolkit is installed (CI installs none,
// see scripts/install-deps.sh), and it never links libcuda: CudaDriver
// resolves these entry points with dlopen/dlsym at run time. The values and
// signatures are those of CUDA 13's cuda.h (ABI-stable since CUDA 4); when
// the toolkit is present at build time, test/runtime/CudaBackendTest.cpp
// checks them against <cuda.h>.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_BACKENDS_CUDA_CUDADRIVERAPI_H
#define QLORACC_RUNTIME_BACKENDS_CUDA_CUDADRIVERAPI_H

#include <cstddef>

namespace qlora::cuda {

/// cudaError_enum; only the values the backend names are listed.
using CUresult = int;
inline constexpr CUresult CUDA_SUCCESS = 0;
inline constexpr CUresult CUDA_ERROR_NO_DEVICE = 100;

using CUdevice = int;
/// 64-bit device addresses (CUdeviceptr_v2).
using CUdeviceptr = unsigned long long;
struct CUctx_st;
struct CUmod_st;
struct CUfunc_st;
struct CUstream_st;
using CUcontext = CUctx_st *;
using CUmodule = CUmod_st *;
using CUfunction = CUfunc_st *;
using CUstream = CUstream_st *;

/// CUdevice_attribute values.
using CUdevice_attribute = int;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK =
    1;
inline constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT =
    16;
inline constexpr CUdevice_attribute
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
inline constexpr CUdevice_attribute
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
inline constexpr CUdevice_attribute
    CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;

/// CUfunction_attribute values.
using CUfunction_attribute = int;
inline constexpr CUfunction_attribute
    CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;

/// cuStreamCreate flags: a blocking stream, ordered with the legacy default
/// stream that the synchronous cuMemcpy* calls run on.
inline constexpr unsigned CU_STREAM_DEFAULT = 0;

/// Every entry point the backend resolves: X(member, "exported symbol",
/// signature). The exported names are the versioned ones that <cuda.h>'s
/// macros map the plain names to (cuMemAlloc -> cuMemAlloc_v2, ...).
#define QLORA_CUDA_DRIVER_ENTRY_POINTS(X)                                      \
  X(init, "cuInit", CUresult(unsigned int))                                    \
  X(deviceGetCount, "cuDeviceGetCount", CUresult(int *))                       \
  X(deviceGet, "cuDeviceGet", CUresult(CUdevice *, int))                       \
  X(deviceGetName, "cuDeviceGetName", CUresult(char *, int, CUdevice))         \
  X(deviceGetAttribute, "cuDeviceGetAttribute",                                \
    CUresult(int *, CUdevice_attribute, CUdevice))                             \
  X(devicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain",                        \
    CUresult(CUcontext *, CUdevice))                                           \
  X(devicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2",                   \
    CUresult(CUdevice))                                                        \
  X(ctxSetCurrent, "cuCtxSetCurrent", CUresult(CUcontext))                     \
  X(memGetInfo, "cuMemGetInfo_v2", CUresult(size_t *, size_t *))               \
  X(memAlloc, "cuMemAlloc_v2", CUresult(CUdeviceptr *, size_t))                \
  X(memFree, "cuMemFree_v2", CUresult(CUdeviceptr))                            \
  X(memcpyHtoD, "cuMemcpyHtoD_v2",                                             \
    CUresult(CUdeviceptr, const void *, size_t))                               \
  X(memcpyDtoH, "cuMemcpyDtoH_v2", CUresult(void *, CUdeviceptr, size_t))      \
  X(memcpyDtoD, "cuMemcpyDtoD_v2", CUresult(CUdeviceptr, CUdeviceptr, size_t)) \
  X(memsetD8, "cuMemsetD8_v2", CUresult(CUdeviceptr, unsigned char, size_t))   \
  X(moduleLoadData, "cuModuleLoadData", CUresult(CUmodule *, const void *))    \
  X(moduleGetFunction, "cuModuleGetFunction",                                  \
    CUresult(CUfunction *, CUmodule, const char *))                            \
  X(moduleUnload, "cuModuleUnload", CUresult(CUmodule))                        \
  X(funcSetAttribute, "cuFuncSetAttribute",                                    \
    CUresult(CUfunction, CUfunction_attribute, int))                           \
  X(launchKernel, "cuLaunchKernel",                                            \
    CUresult(CUfunction, unsigned int, unsigned int, unsigned int,             \
             unsigned int, unsigned int, unsigned int, unsigned int, CUstream, \
             void **, void **))                                                \
  X(streamCreate, "cuStreamCreate", CUresult(CUstream *, unsigned int))        \
  X(streamDestroy, "cuStreamDestroy_v2", CUresult(CUstream))                   \
  X(streamSynchronize, "cuStreamSynchronize", CUresult(CUstream))              \
  X(getErrorName, "cuGetErrorName", CUresult(CUresult, const char **))         \
  X(getErrorString, "cuGetErrorString", CUresult(CUresult, const char **))

} // namespace qlora::cuda

#endif // QLORACC_RUNTIME_BACKENDS_CUDA_CUDADRIVERAPI_H
