//===- CudaEmuTest.cpp - Every CUDA kernel run on the host
//-----------------===//
//
// For each CudaParityCases.h case: the CUDA translation unit that
// instantiateCudaKernel generates (for the case's activation type, f32 or
// bf16), compiled unchanged by the host C++ compiler with CudaHostShim.h in
// front (HostKernelLibrary.h), launched on its grid and then each further
// phase, and its buffers compared with the CPU backend's run on the same
// inputs exactly as the GPU parity test does. Needs neither NVRTC nor a GPU, so
// every kernel runs in CI.
//
//===----------------------------------------------------------------------===//
#include "kernels/CudaKernelSource.h"
#include "test/emu/HostKernelLibrary.h"
#include "test/runtime/CudaParityCases.h"
#include "test/runtime/CudaParityHarness.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <memory>

namespace qlora::cuda {
namespace {

using emu::HostKernelLibrary;
using parity::ParityCase;

/// With AddressSanitizer loaded (LD_PRELOAD=libasan.so and
/// QLORA_EMU_CXXFLAGS=-fsanitize=address), the padding between the
/// arguments is poisoned while the kernel runs: a kernel that reads or
/// writes past one of its buffers stops there.
class ArenaGuard {
public:
  using Poison = void (*)(const volatile void *, size_t);

  ArenaGuard(std::byte *arena, std::span<const exec::ArenaRange> ranges,
             size_t allocation)
      : arena_(arena), allocation_(allocation),
        unpoison_(reinterpret_cast<Poison>(
            dlsym(RTLD_DEFAULT, "__asan_unpoison_memory_region"))) {
    auto poison = reinterpret_cast<Poison>(
        dlsym(RTLD_DEFAULT, "__asan_poison_memory_region"));
    if (!poison || !unpoison_)
      return;
    for (size_t i = 0; i < ranges.size(); ++i) {
      uint64_t end = ranges[i].offset + ranges[i].bytes;
      uint64_t next = i + 1 < ranges.size() ? ranges[i + 1].offset : allocation;
      poison(arena + end, next - end);
    }
  }
  ~ArenaGuard() {
    if (unpoison_)
      unpoison_(arena_, allocation_);
  }

private:
  std::byte *arena_;
  size_t allocation_;
  Poison unpoison_;
};

class CudaEmuParity : public ::testing::TestWithParam<ParityCase> {};

TEST_P(CudaEmuParity, MatchesTheCpu) {
  const ParityCase &c = GetParam();
  std::string error;
  std::optional<CudaKernelSource> kernel =
      instantiateCudaKernel(c.kernel, c.params, c.activationType, error);
  ASSERT_TRUE(kernel) << error;
  std::vector<std::string> entries = {kernel->entry};
  for (const CudaKernelPhase &phase : kernel->then)
    entries.push_back(phase.entry);
  std::unique_ptr<HostKernelLibrary> library =
      HostKernelLibrary::build(c.name, kernel->source, entries, error);
  ASSERT_TRUE(library) << "the host compiler refused " << c.name << ": "
                       << error;
  // A failed case keeps its files for a look.
  struct KeepOnFailure {
    HostKernelLibrary &library;
    ~KeepOnFailure() { library.keepFiles |= ::testing::Test::HasFailure(); }
  } keepOnFailure{*library};

  // The device's arena, laid out as the CUDA backend's.
  parity::ParityLayout layout = parity::layOut(c);
  std::span<const exec::ArenaRange> ranges = layout.device;
  size_t allocation = (parity::arenaBytes(ranges) + parity::kArenaAlignment) /
                      parity::kArenaAlignment * parity::kArenaAlignment;
  std::unique_ptr<std::byte, decltype(&std::free)> arena(
      static_cast<std::byte *>(
          std::aligned_alloc(parity::kArenaAlignment, allocation)),
      &std::free);
  ASSERT_TRUE(arena);
  std::memset(arena.get(), 0, allocation);
  ArenaGuard guard(arena.get(), ranges, allocation);

  cpu::CpuBackend host(2);
  ASSERT_NO_FATAL_FAILURE(parity::runOnTheCpu(
      c, layout, host, [&](uint64_t offset, std::span<const std::byte> in) {
        std::memcpy(arena.get() + offset, in.data(), in.size());
      }));

  std::vector<void *> args;
  for (const exec::ArenaRange &range : ranges)
    args.push_back(arena.get() + range.offset);
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(library->launch(kernel->entry, args, kernel->grid,
                              kernel->blockThreads, error))
      << error;
  for (const CudaKernelPhase &phase : kernel->then)
    ASSERT_TRUE(library->launch(phase.entry, args, phase.grid,
                                phase.blockThreads, error))
        << error;
  double runSeconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();

  std::string report = parity::expectMatchesTheCpu(
      c, layout, host,
      [&](uint64_t offset, std::span<std::byte> out) {
        std::memcpy(out.data(), arena.get() + offset, out.size());
      },
      "emu");
  std::printf("[emu] %s (grid %ux%ux%u of %u, %zu more phases; compiled in "
              "%.1fs, ran in %.2fs):%s\n",
              c.name.c_str(), kernel->grid[0], kernel->grid[1], kernel->grid[2],
              kernel->blockThreads, kernel->then.size(),
              library->compileSeconds(), runSeconds, report.c_str());
}

INSTANTIATE_TEST_SUITE_P(Kernels, CudaEmuParity,
                         ::testing::ValuesIn(parity::parityCases()),
                         [](const ::testing::TestParamInfo<ParityCase> &info) {
                           return info.param.name;
                         });

} // namespace
} // namespace qlora::cuda
