//===- HostKernelLibrary.h - A CUDA source built and loaded on the host ---===//
//
// Compiles a CUDA translation unit with the host C++ compiler, CudaHostShim.h
// in front, into a shared library, loads it, and launches its
// `extern "C" __global__` entries on a grid. build() works in a fresh
// temporary directory, removed afterwards unless keepFiles is set or
// $QLORA_EMU_KEEP is; compile() and load() split the two steps for callers
// that cache the libraries (the emulated CUDA driver, driver/).
// Every access through a type is checked for its alignment (UBSan's
// alignment check, QLORA_EMU_CHECKS from CMake), as a GPU faults on a
// misaligned vector load or store.
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

/// The whole file at `path` ("" when it cannot be read).
std::string readFileText(const std::filesystem::path &path);

class HostKernelLibrary {
public:
  /// The host compiler's flags: optimisation, the alignment checks and
  /// $QLORA_EMU_CXXFLAGS.
  static std::string compilerFlags();

  /// Compiles `source`, with a host launcher appended for each of
  /// `entries`, into the shared library `library`; `workDir` (existing)
  /// receives the translation unit, the stub CUDA headers and the
  /// compiler's log. False and `error` (the command and the compiler's
  /// output) on failure.
  static bool compile(const std::string &source,
                      const std::vector<std::string> &entries,
                      const std::filesystem::path &workDir,
                      const std::filesystem::path &library, std::string &error);
  /// Loads a library compile() wrote. `dir`, if not empty, is removed with
  /// the library (see keepFiles).
  static std::unique_ptr<HostKernelLibrary>
  load(const std::filesystem::path &library, std::filesystem::path dir,
       std::string &error);
  /// compile() and load() in a fresh temporary directory named after
  /// `name`; nullptr and `error` on failure.
  static std::unique_ptr<HostKernelLibrary>
  build(const std::string &name, const std::string &source,
        const std::vector<std::string> &entries, std::string &error);
  ~HostKernelLibrary();

  /// Runs `entry` with one pointer a parameter, in order, on `grid` blocks
  /// of `threads` threads (x only), blocks one after another.
  bool launch(const std::string &entry, const std::vector<void *> &args,
              const std::array<uint32_t, 3> &grid, uint32_t threads,
              std::string &error);

  /// Seconds the host compiler took (build() only).
  double compileSeconds() const { return compileSeconds_; }
  const std::filesystem::path &directory() const { return dir_; }

  /// Keep the directory when the library is destroyed (a failed test's
  /// files, for a look).
  bool keepFiles = false;

private:
  HostKernelLibrary() = default;
  std::filesystem::path dir_;
  void *handle_ = nullptr;
  double compileSeconds_ = 0;
};

} // namespace qlora::cuda::emu

#endif // QLORACC_TEST_EMU_HOSTKERNELLIBRARY_H
