//===- CudaParityHarness.h - A parity case on the CPU and a device -*- C++
//-*-===//
//
// What the GPU parity test (CudaParityTest.cpp) and the host emulation of
// the CUDA kernels (test/emu) share: a case's initial buffers, their layout
// in the device's arena and in the CPU's (they differ in a bf16 case), the
// CPU backend's run of the case, and the comparison of every written buffer
// against the CPU at its tolerance.
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

/// The initial bytes of `arg` (case `c`) as the CPU holds them. An
/// activation buffer of a bf16 case holds values rounded to bf16 (to
/// nearest even), widened back to f32.
std::vector<std::byte> initialBytes(const ParityCase &c, const ParityArg &arg);

/// `cpuBytes` of `arg` as the device holds them (onTheDevice): narrowed to
/// bf16 where the two differ, exactly unless they came from the CPU's
/// kernel (Fill::Attention).
std::vector<std::byte> deviceBytes(const ParityCase &c, const ParityArg &arg,
                                   std::span<const std::byte> cpuBytes);

/// The elements of `arg` in `bytes`, widened to float.
std::vector<float> asFloats(const ParityArg &arg,
                            std::span<const std::byte> bytes);

/// Where the arguments lie in the device's arena and in the CPU's: one
/// after another, each kArenaAlignment-byte aligned. The two differ in a
/// bf16 case, whose activation buffers the device holds as bf16 and the CPU
/// as f32 (as many elements).
struct ParityLayout {
  std::vector<exec::ArenaRange> device, cpu;
};
ParityLayout layOut(const ParityCase &c);

uint64_t arenaBytes(std::span<const exec::ArenaRange> ranges);

/// Copies `bytes` to `offset` of the device's arena.
using Upload =
    std::function<void(uint64_t offset, std::span<const std::byte> bytes)>;
/// Copies `bytes.size()` bytes at `offset` of the device's arena.
using Download = std::function<void(uint64_t offset, std::span<std::byte>)>;

/// Fills the arguments in `host`'s arena (layout.cpu) and the device's
/// (layout.device, through `upload` when given) and runs the case's kernel
/// on the CPU.
void runOnTheCpu(const ParityCase &c, const ParityLayout &layout,
                 cpu::CpuBackend &host, const Upload &upload);

/// Compares every `compare` argument of the device's arena with `host`'s,
/// both widened to f32: no value finite on one side only, and max |device -
/// cpu| at most toleranceOf(c, arg) of max |cpu| (gtest expectations).
/// Returns the errors seen, " name: max |<device>-cpu| ..." per buffer.
std::string expectMatchesTheCpu(const ParityCase &c, const ParityLayout &layout,
                                cpu::CpuBackend &host, const Download &device,
                                const std::string &deviceName);

} // namespace qlora::cuda::parity

#endif // QLORACC_TEST_RUNTIME_CUDAPARITYHARNESS_H
