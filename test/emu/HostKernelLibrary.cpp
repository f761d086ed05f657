//===- HostKernelLibrary.cpp - A CUDA source built and loaded on the host -===//
#include "test/emu/HostKernelLibrary.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <dlfcn.h>
#include <fstream>

namespace qlora::cuda::emu {
namespace {

/// `<entry>_emu(args, grid x, y, z, threads)`: the launcher appended to the
/// source for each entry.
using Launcher = void (*)(void *const *, unsigned, unsigned, unsigned,
                          unsigned);

std::string launcherName(const std::string &entry) { return entry + "_emu"; }

std::string quoted(const std::string &text) { return "'" + text + "'"; }

} // namespace

std::string readFileText(const std::filesystem::path &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string HostKernelLibrary::compilerFlags() {
  const char *extra = std::getenv("QLORA_EMU_CXXFLAGS");
  // Each library keeps its own statics (hidden, not GNU-unique), each in a
  // section of its own that SharedMemory.ld can gather.
  return std::string("-O1 -std=gnu++20 -shared -fPIC -ffp-contract=off -w "
                     "-fvisibility=hidden -fno-gnu-unique -fdata-sections "
                     "-Wl,-T,") +
         quoted(QLORA_EMU_SHARED_SCRIPT) + " " + QLORA_EMU_CHECKS + " " +
         (extra ? extra : "");
}

bool HostKernelLibrary::compile(const std::string &source,
                                const std::vector<std::string> &entries,
                                const std::filesystem::path &dir,
                                const std::filesystem::path &library,
                                std::string &error) {
  // The CUDA headers the source includes: the shim provides their contents.
  for (const char *header : {"cuda_bf16.h", "cuda_fp16.h", "mma.h"})
    std::ofstream(dir / header) << "// provided by CudaHostShim.h\n";
  std::string text = source + "\n// Host launchers (HostKernelLibrary).\n";
  for (const std::string &entry : entries)
    text += "extern \"C\" __attribute__((visibility(\"default\"))) void " +
            launcherName(entry) +
            "(void *const *args, unsigned x, unsigned y, unsigned z,\n"
            "    unsigned threads) {\n  qlora_emu::launchEntry(&" +
            entry + ", args, dim3{x, y, z}, threads);\n}\n";
  std::ofstream(dir / "kernel.cpp") << text;

  std::string command =
      quoted(QLORA_EMU_CXX) + " " + compilerFlags() + " -include " +
      quoted(QLORA_EMU_SHIM) + " -I " + quoted(dir.string()) + " -o " +
      quoted(library.string()) + " " + quoted((dir / "kernel.cpp").string()) +
      " 2> " + quoted((dir / "compile.log").string());
  if (std::system(command.c_str()) != 0) {
    error = command + "\n" + readFileText(dir / "compile.log");
    return false;
  }
  return true;
}

std::unique_ptr<HostKernelLibrary>
HostKernelLibrary::load(const std::filesystem::path &library,
                        std::filesystem::path dir, std::string &error) {
  std::unique_ptr<HostKernelLibrary> loaded(new HostKernelLibrary());
  loaded->dir_ = std::move(dir);
  loaded->handle_ = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!loaded->handle_) {
    error = dlerror();
    return nullptr;
  }
  return loaded;
}

std::unique_ptr<HostKernelLibrary>
HostKernelLibrary::build(const std::string &name, const std::string &source,
                         const std::vector<std::string> &entries,
                         std::string &error) {
  std::string pattern = (std::filesystem::temp_directory_path() /
                         ("qlora-emu-" + name + "-XXXXXX"))
                            .string();
  if (!mkdtemp(pattern.data())) {
    error = "cannot create a temporary directory like " + pattern;
    return nullptr;
  }
  std::filesystem::path dir = pattern;
  auto start = std::chrono::steady_clock::now();
  if (!compile(source, entries, dir, dir / "kernel.so", error))
    return nullptr;
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  std::unique_ptr<HostKernelLibrary> library =
      load(dir / "kernel.so", dir, error);
  if (library)
    library->compileSeconds_ = seconds;
  return library;
}

HostKernelLibrary::~HostKernelLibrary() {
  if (handle_)
    dlclose(handle_);
  if (dir_.empty())
    return;
  if (keepFiles || std::getenv("QLORA_EMU_KEEP"))
    std::fprintf(stderr, "[emu] files kept in %s\n", dir_.c_str());
  else
    std::filesystem::remove_all(dir_);
}

bool HostKernelLibrary::launch(const std::string &entry,
                               const std::vector<void *> &args,
                               const std::array<uint32_t, 3> &grid,
                               uint32_t threads, std::string &error) {
  auto launcher =
      reinterpret_cast<Launcher>(dlsym(handle_, launcherName(entry).c_str()));
  if (!launcher) {
    error = "no " + launcherName(entry) + " in the library";
    return false;
  }
  launcher(args.data(), grid[0], grid[1], grid[2], threads);
  return true;
}

} // namespace qlora::cuda::emu
