//===- CudaDriver.h - libcuda.so.1, loaded at run time ----------*- C++ -*-===//
//
// The CUDA driver API as a table of entry points resolved with dlopen/dlsym,
// in the spirit of IREE's drivers/cuda/dynamic_symbols: one qlora-run binary
// runs on machines with and without a GPU, and nothing links libcuda. load()
// also initialises the driver and counts the GPUs, so that "no driver" and
// "no GPU" are told apart with one clear line each.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_BACKENDS_CUDA_CUDADRIVER_H
#define QLORACC_RUNTIME_BACKENDS_CUDA_CUDADRIVER_H

#include "runtime/backends/cuda/CudaDriverApi.h"

#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

namespace qlora::cuda {

/// Why the CUDA backend cannot run a program. `message` is the full line for
/// `--device cuda`; `summary()` the short reason `--device auto` prints
/// before it falls back to the CPU.
struct CudaFailure {
  enum class Kind {
    NoDriver, // libcuda.so.1 cannot be loaded
    NoGpu,    // the driver sees no device
    NoImage,  // train.bin carries no image this GPU can load
    Error,    // anything else: a failing driver call, a bad program
  };
  Kind kind = Kind::Error;
  std::string message;

  std::string summary() const;
};

class CudaDriver {
public:
  static constexpr const char *kLibrary = "libcuda.so.1";

  /// Opens `library`, resolves every entry point, calls cuInit(0) and counts
  /// the devices. Fails with NoDriver ("no CUDA driver: libcuda.so.1 not
  /// found (dlopen: ...)"), NoGpu ("CUDA driver found but no GPU
  /// (cuDeviceGetCount = 0)") or Error (a missing entry point, cuInit
  /// failing otherwise).
  static std::unique_ptr<CudaDriver> load(CudaFailure &failure,
                                          const char *library = kLibrary);
  ~CudaDriver();
  CudaDriver(const CudaDriver &) = delete;
  CudaDriver &operator=(const CudaDriver &) = delete;

  int deviceCount() const { return deviceCount_; }

  /// "<entry> failed: CUDA_ERROR_... (<cuGetErrorString's text>)".
  std::string errorMessage(std::string_view entry, CUresult result) const;
  /// True on CUDA_SUCCESS; otherwise sets `error` to errorMessage().
  bool check(CUresult result, std::string_view entry, std::string &error) const;

#define QLORA_CUDA_DECLARE_ENTRY(member, symbol, signature)                    \
  std::add_pointer_t<signature> member = nullptr;
  QLORA_CUDA_DRIVER_ENTRY_POINTS(QLORA_CUDA_DECLARE_ENTRY)
#undef QLORA_CUDA_DECLARE_ENTRY

private:
  CudaDriver() = default;

  void *handle_ = nullptr;
  int deviceCount_ = 0;
};

} // namespace qlora::cuda

#endif // QLORACC_RUNTIME_BACKENDS_CUDA_CUDADRIVER_H
