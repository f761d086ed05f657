//===- KernelCatalog.cpp - The CUDA sources the emulated driver runs ------===//
#include "test/emu/driver/KernelCatalog.h"

#include "test/emu/HostKernelLibrary.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>
#include <unistd.h>

namespace qlora::cuda::emu {
namespace {

/// FNV-1a: a cache key, not a checksum anyone relies on.
uint64_t hashOf(const std::string &text,
                uint64_t hash = 14695981039346656037u) {
  for (unsigned char c : text)
    hash = (hash ^ c) * 1099511628211u;
  return hash;
}

std::string hex(uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", (unsigned long long)value);
  return text;
}

/// Parameters of a declaration's parameter list: its top-level commas + 1.
int countParameters(const std::string &list) {
  if (list.find_first_not_of(" \t\r\n") == std::string::npos)
    return 0;
  int depth = 0, count = 1;
  for (char c : list) {
    depth += c == '<' || c == '(';
    depth -= c == '>' || c == ')';
    count += c == ',' && depth == 0;
  }
  return count;
}

} // namespace

bool KernelCatalog::scanFile(const std::filesystem::path &file,
                             std::string &error) {
  // __launch_bounds__ may hold one level of parentheses (QLORA_MIN_BLOCKS).
  static const std::regex kEntry(
      R"(extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\s*\(\s*(\d+)(?:[^()]|\([^()]*\))*\)\s*)?(\w+)\s*\(([^)]*)\))");
  CatalogSource source{file, readFileText(file), {}, {}};
  const std::string &text = source.text;
  for (std::sregex_iterator it(text.begin(), text.end(), kEntry), end;
       it != end; ++it) {
    const std::smatch &m = *it;
    CatalogEntry entry;
    entry.source = sources_.size();
    entry.parameters = countParameters(m[3].str());
    if (m[1].matched)
      entry.maxThreads = std::stoi(m[1].str());
    auto [where, inserted] = entries_.emplace(m[2].str(), entry);
    if (!inserted) {
      // The same instance dumped into two directories is one kernel.
      const CatalogSource &other = sources_[where->second.source];
      if (other.text == text)
        return true;
      error = file.string() + " and " + other.path.string() +
              " define entry '" + m[2].str() + "' differently";
      return false;
    }
    source.entries.push_back(m[2].str());
  }
  if (!source.entries.empty())
    sources_.push_back(std::move(source));
  return true;
}

bool KernelCatalog::scan(const std::string &dirs, std::string &error) {
  std::stringstream list(dirs);
  for (std::string dir; std::getline(list, dir, ':');) {
    if (dir.empty())
      continue;
    std::error_code ec;
    std::vector<std::filesystem::path> files;
    for (const auto &item : std::filesystem::directory_iterator(dir, ec))
      if (item.path().extension() == ".cu")
        files.push_back(item.path());
    if (ec) {
      error = "cannot read the kernel directory '" + dir + "': " + ec.message();
      return false;
    }
    std::sort(files.begin(), files.end());
    for (const std::filesystem::path &file : files)
      if (!scanFile(file, error))
        return false;
  }
  if (sources_.empty()) {
    error = "no CUDA sources with extern \"C\" __global__ entries in '" + dirs +
            "' (write them with qloracc --dump-kernels DIR)";
    return false;
  }
  return true;
}

bool KernelCatalog::compile(const std::filesystem::path &cacheDir,
                            unsigned jobs, std::string &error) {
  // The key covers what the library depends on: the source, the shim, the
  // linker script and the compiler flags.
  uint64_t salt = hashOf(readFileText(QLORA_EMU_SHIM) +
                         readFileText(QLORA_EMU_SHARED_SCRIPT) + QLORA_EMU_CXX +
                         HostKernelLibrary::compilerFlags());
  std::vector<size_t> pending;
  for (size_t i = 0; i < sources_.size(); ++i) {
    CatalogSource &source = sources_[i];
    source.library = cacheDir / (source.path.stem().string() + "-" +
                                 hex(hashOf(source.text, salt)) + ".so");
    if (!std::filesystem::exists(source.library))
      pending.push_back(i);
  }
  if (pending.empty())
    return true;
  std::error_code ec;
  std::filesystem::create_directories(cacheDir, ec);
  if (ec) {
    error = "cannot create the cache directory '" + cacheDir.string() +
            "': " + ec.message();
    return false;
  }

  jobs = std::max(1u, std::min<unsigned>(jobs, unsigned(pending.size())));
  std::fprintf(stderr,
               "cuda emulator: compiling %zu kernel sources for the host "
               "(%u jobs)\n",
               pending.size(), jobs);
  auto start = std::chrono::steady_clock::now();
  std::atomic<size_t> next = 0;
  std::mutex failure;
  auto work = [&] {
    for (size_t k; (k = next++) < pending.size();) {
      const CatalogSource &source = sources_[pending[k]];
      // Built under a private name and renamed: runs sharing the cache
      // never load half a library.
      std::filesystem::path work = source.library;
      work += ".work-" + std::to_string(getpid()) + "-" + std::to_string(k);
      std::filesystem::create_directories(work);
      std::string why;
      if (!HostKernelLibrary::compile(source.text, source.entries, work,
                                      work / "kernel.so", why)) {
        std::lock_guard<std::mutex> lock(failure);
        if (error.empty())
          error =
              "the host compiler refused " + source.path.string() + ": " + why;
        continue;
      }
      std::filesystem::rename(work / "kernel.so", source.library);
      std::filesystem::remove_all(work);
    }
  };
  std::vector<std::thread> threads;
  for (unsigned j = 1; j < jobs; ++j)
    threads.emplace_back(work);
  work();
  for (std::thread &thread : threads)
    thread.join();
  if (!error.empty())
    return false;
  std::fprintf(
      stderr, "cuda emulator: compiled in %.1f s\n",
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count());
  return true;
}

const CatalogEntry *KernelCatalog::find(const std::string &entry) const {
  auto it = entries_.find(entry);
  return it == entries_.end() ? nullptr : &it->second;
}

} // namespace qlora::cuda::emu
