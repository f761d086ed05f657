//===- CudaDriver.cpp - libcuda.so.1, loaded at run time ------------------===//
#include "runtime/backends/cuda/CudaDriver.h"

#include <dlfcn.h>

namespace qlora::cuda {

std::string CudaFailure::summary() const {
  switch (kind) {
  case Kind::NoDriver:
    return "no CUDA driver (libcuda.so.1 not found)";
  case Kind::NoGpu:
    return "CUDA driver found but no GPU";
  case Kind::NoImage:
  case Kind::Error:
    break;
  }
  return message;
}

std::unique_ptr<CudaDriver> CudaDriver::load(CudaFailure &failure,
                                             const char *library) {
  auto fail = [&](CudaFailure::Kind kind, std::string message) {
    failure = {kind, std::move(message)};
    return nullptr;
  };
  std::unique_ptr<CudaDriver> driver(new CudaDriver);
  driver->handle_ = dlopen(library, RTLD_NOW | RTLD_LOCAL);
  if (!driver->handle_) {
    const char *why = dlerror();
    return fail(CudaFailure::Kind::NoDriver,
                "no CUDA driver: " + std::string(library) +
                    " not found (dlopen: " + (why ? why : "unknown error") +
                    ")");
  }

  void *symbol = nullptr;
#define QLORA_CUDA_RESOLVE_ENTRY(member, name, signature)                      \
  if (!(symbol = dlsym(driver->handle_, name)))                                \
    return fail(CudaFailure::Kind::Error,                                      \
                "CUDA driver " + std::string(library) + " lacks " + name +     \
                    "; it is older than this qlora-run needs (CUDA 12 or "     \
                    "newer)");                                                 \
  driver->member = reinterpret_cast<std::add_pointer_t<signature>>(symbol);
  QLORA_CUDA_DRIVER_ENTRY_POINTS(QLORA_CUDA_RESOLVE_ENTRY)
#undef QLORA_CUDA_RESOLVE_ENTRY

  // With a driver but no device, cuInit itself reports CUDA_ERROR_NO_DEVICE.
  CUresult result = driver->init(0);
  if (result == CUDA_ERROR_NO_DEVICE)
    return fail(CudaFailure::Kind::NoGpu,
                "CUDA driver found but no GPU (" +
                    driver->errorMessage("cuInit", result) + ")");
  std::string error;
  if (!driver->check(result, "cuInit", error) ||
      !driver->check(driver->deviceGetCount(&driver->deviceCount_),
                     "cuDeviceGetCount", error))
    return fail(CudaFailure::Kind::Error, error);
  if (driver->deviceCount_ == 0)
    return fail(CudaFailure::Kind::NoGpu,
                "CUDA driver found but no GPU (cuDeviceGetCount = 0)");
  return driver;
}

CudaDriver::~CudaDriver() {
  if (handle_)
    dlclose(handle_);
}

std::string CudaDriver::errorMessage(std::string_view entry,
                                     CUresult result) const {
  const char *name = nullptr;
  const char *text = nullptr;
  if (!getErrorName || getErrorName(result, &name) != CUDA_SUCCESS || !name)
    name = nullptr;
  if (!getErrorString || getErrorString(result, &text) != CUDA_SUCCESS || !text)
    text = nullptr;
  std::string message =
      std::string(entry) + " failed: " +
      (name ? std::string(name) : "CUDA error " + std::to_string(result));
  if (text)
    message += " (" + std::string(text) + ")";
  return message;
}

bool CudaDriver::check(CUresult result, std::string_view entry,
                       std::string &error) const {
  if (result == CUDA_SUCCESS)
    return true;
  error = errorMessage(entry, result);
  return false;
}

} // namespace qlora::cuda
