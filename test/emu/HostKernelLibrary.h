//===- HostKernelLibrary.h - A CUDA source built and loaded on the host -*- C++
//-*-===//
//
// Compiles a CUDA translation unit with the host C++ compiler, CudaHostShim.h
// in front, into a shared library in a fresh temporary directory, loads it,
// and launches its `extern "C" __global__` entries on a grid. The directory
// is removed afterwards unless the test failed or $QLORA_EMU_KEEP is set;
// $QLORA_EMU_CXXFLAGS adds compiler flags: -DQLORA_EMU_UCONTEXT, or
// -fsanitize=address with LD_PRELOAD=$(g++ -print-file-name=libasan.so)
// and ASAN_OPTIONS=detect_leaks=0 on the test, which then stops a kernel
// that leaves its __shared__ arrays or its argument buffers.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_TEST_EMU_HOSTKERNELLIBRARY_H
#define QLORACC_TEST_EMU_HOSTKERNELLIBRARY_H

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace qlora::cuda::emu {

class HostKernelLibrary {
public:
  /// Builds `source` with a host launcher for each of `entries`; nullptr
  /// and `error` (the command and the compiler's output) on failure. `name`
  /// names the temporary directory.
  static std::unique_ptr<HostKernelLibrary>
  build(const std::string &name, const std::string &source,
        const std::vector<std::string> &entries, std::string &error);
  ~HostKernelLibrary();

  /// Runs `entry` with one pointer a parameter, in order, on `grid` blocks
  /// of `threads` threads (x only), blocks one after another.
  bool launch(const std::string &entry, const std::vector<void *> &args,
              const std::array<uint32_t, 3> &grid, uint32_t threads,
              std::string &error);

  /// Seconds the host compiler took.
  double compileSeconds() const { return compileSeconds_; }

private:
  HostKernelLibrary() = default;
  std::filesystem::path dir_;
  void *handle_ = nullptr;
  double compileSeconds_ = 0;
};

} // namespace qlora::cuda::emu

#endif // QLORACC_TEST_EMU_HOSTKERNELLIBRARY_H
