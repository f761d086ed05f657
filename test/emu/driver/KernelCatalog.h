//===- KernelCatalog.h - The CUDA sources the emulated driver runs -*- C++
//-*-===//
//
// The emulated driver cannot run the CUBIN or PTX a module is loaded from,
// so it runs the CUDA source that image was compiled from, built for the
// host (HostKernelLibrary). The catalog finds those sources: every `*.cu`
// in the directories of $QLORA_CUDA_EMU_KERNELS (`qloracc --dump-kernels
// DIR` writes them), indexed by the `extern "C" __global__` entries they
// define, with each entry's parameter count and __launch_bounds__. All are
// compiled when the catalog opens, in parallel and cached by content, so
// that a run pays for the host compiler once.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_TEST_EMU_DRIVER_KERNELCATALOG_H
#define QLORACC_TEST_EMU_DRIVER_KERNELCATALOG_H

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace qlora::cuda::emu {

struct CatalogEntry {
  size_t source = 0;     ///< index into KernelCatalog::sources()
  int parameters = 0;    ///< the entry's parameter count
  int maxThreads = 1024; ///< __launch_bounds__'s first argument, or 1024
};

struct CatalogSource {
  std::filesystem::path path;
  std::string text;
  std::vector<std::string> entries;
  std::filesystem::path library; ///< the compiled host library (cached)
};

class KernelCatalog {
public:
  /// Scans `dirs` (colon-separated).
  bool scan(const std::string &dirs, std::string &error);
  /// Compiles what is not cached in `cacheDir` with `jobs` compilers at a
  /// time, reporting progress on stderr. False and `error` on the first
  /// failure.
  bool compile(const std::filesystem::path &cacheDir, unsigned jobs,
               std::string &error);

  const CatalogEntry *find(const std::string &entry) const;
  const std::vector<CatalogSource> &sources() const { return sources_; }

private:
  bool scanFile(const std::filesystem::path &file, std::string &error);

  std::vector<CatalogSource> sources_;
  std::map<std::string, CatalogEntry> entries_;
};

} // namespace qlora::cuda::emu

#endif // QLORACC_TEST_EMU_DRIVER_KERNELCATALOG_H
