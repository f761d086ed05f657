//===- CudaParityHarness.h - A parity case on the CPU and a device -*- C++
//-*-===//
//
// What the GPU parity test (CudaParityTest.cpp) and the host emulation of
// the CUDA kernels (test/emu) share: a case's initial buffers, their layout
// in an arena, the CPU backend's run of the case, and the comparison of
// every written buffer against the CPU at the case's tolerance.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_TEST_RUNTIME_CUDAPARITYHARNESS_H
#define QLORACC_TEST_RUNTIME_CUDAPARITYHARNESS_H

#include "runtime/backends/cpu/CpuBackend.h"
#include "runtime/exec/Backend.h"
#include "test/runtime/CudaParityCases.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <ostream>
#include <span>
#include <string>
#include <vector>

namespace qlora::cuda::parity {

/// Every range is aligned like the CUDA arena's.
constexpr uint64_t kArenaAlignment = 256;

/// gtest prints a case (in test names too) as its name.
inline void PrintTo(const ParityCase &c, std::ostream *os) { *os << c.name; }

/// The initial bytes of `arg` (case `c`), the same for both backends.
std::vector<std::byte> initialBytes(const ParityCase &c, const ParityArg &arg);

/// The elements of `arg` in `bytes`, widened to float.
std::vector<float> asFloats(const ParityArg &arg,
                            std::span<const std::byte> bytes);

/// The arguments one after another, each kArenaAlignment-byte aligned.
std::vector<exec::ArenaRange> layOut(const ParityCase &c);

uint64_t arenaBytes(std::span<const exec::ArenaRange> ranges);

/// Copies `bytes` to `offset` of the device's arena.
using Upload =
    std::function<void(uint64_t offset, std::span<const std::byte> bytes)>;
/// Copies `bytes.size()` bytes at `offset` of the device's arena.
using Download = std::function<void(uint64_t offset, std::span<std::byte>)>;

/// Fills the arguments in `host`'s arena (and the device's, through
/// `upload` when given) and runs the case's kernel on the CPU.
void runOnTheCpu(const ParityCase &c, std::span<const exec::ArenaRange> ranges,
                 cpu::CpuBackend &host, const Upload &upload);

/// Compares every `compare` argument of the device's arena with `host`'s:
/// no value finite on one side only, and max |device - cpu| at most
/// c.tolerance of max |cpu| (gtest expectations). Returns the errors seen,
/// " name: max |<device>-cpu| ..." per buffer.
std::string expectMatchesTheCpu(const ParityCase &c,
                                std::span<const exec::ArenaRange> ranges,
                                cpu::CpuBackend &host, const Download &device,
                                const std::string &deviceName);

} // namespace qlora::cuda::parity

#endif // QLORACC_TEST_RUNTIME_CUDAPARITYHARNESS_H
