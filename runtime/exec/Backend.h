//===- Backend.h - What the executor needs from a device --------*- C++ -*-===//
//
// A small HAL in the spirit of IREE's: one arena of device memory, copies in
// and out of it, kernel launches on byte ranges of it, and a barrier. The
// CPU backend runs KernelAbi.h's kernels with reference C++; the CUDA backend
// launches the CUBIN/PTX images that train.bin carries. Both run the same
// step program.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_EXEC_BACKEND_H
#define QLORACC_RUNTIME_EXEC_BACKEND_H

#include "runtime/format/KernelParams.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace qlora::exec {

/// A byte range of the arena.
struct ArenaRange {
  uint64_t offset = 0;
  uint64_t bytes = 0;
};

/// The grid, block and dynamic shared memory of one launch instruction
/// (train.fbs Instr.grid/block/smem; missing dimensions are 1).
struct LaunchGeometry {
  std::array<uint32_t, 3> grid{1, 1, 1};
  std::array<uint32_t, 3> block{1, 1, 1};
  uint32_t sharedBytes = 0;

  uint32_t blockThreads() const { return block[0] * block[1] * block[2]; }
};

class Backend {
public:
  virtual ~Backend() = default;

  /// "cpu", "cuda".
  virtual std::string_view name() const = 0;
  /// One line for the run header, e.g. "CPU, 16 threads".
  virtual std::string description() const = 0;

  /// Allocates the zero-filled arena every buffer lives in.
  virtual bool allocateArena(uint64_t bytes, std::string &error) = 0;

  /// Prepares kernel `index` (template name and parameters from train.bin)
  /// and checks one launch of it against its argument ranges; called for
  /// every launch before the first step runs, so a malformed program is
  /// refused up front.
  virtual bool prepareLaunch(uint32_t kernel, std::string_view templateName,
                             const format::KernelParams &params,
                             std::span<const ArenaRange> args,
                             std::string &error) = 0;

  virtual void launch(uint32_t kernel, std::span<const ArenaRange> args) = 0;
  /// launch() with the instruction's grid, block and shared memory, which
  /// the executor always calls. The CPU backend chooses its own threading
  /// and keeps this default; the CUDA backend launches on `geometry`.
  virtual void launchOnGrid(uint32_t kernel, const LaunchGeometry &geometry,
                            std::span<const ArenaRange> args) {
    launch(kernel, args);
  }

  virtual void upload(uint64_t offset, std::span<const std::byte> bytes) = 0;
  virtual void download(uint64_t offset, std::span<std::byte> bytes) = 0;
  /// Copies inside the arena; the ranges do not overlap.
  virtual void copy(uint64_t srcOffset, uint64_t dstOffset, uint64_t bytes) = 0;

  /// Waits for everything launched so far; false with a message if a
  /// kernel failed.
  virtual bool synchronize(std::string &error) = 0;
};

} // namespace qlora::exec

#endif // QLORACC_RUNTIME_EXEC_BACKEND_H
