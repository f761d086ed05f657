//===- Executor.h - Runs the step program of a train.bin --------*- C++ -*-===//
//
// Loads a checked TrainBinFile onto a Backend: allocates the arena, copies
// every buffer's initial bytes from its section, prepares every launch, then
// runs the `train_step` program as often as asked. Inputs (tokens, labels,
// lr, ...) and outputs (loss, grad_norm) are io buffers found by name.
// While a step runs, ArenaLiveness follows the buffers live at each
// instruction: the measured peak, and an error if two of them overlap.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_EXEC_EXECUTOR_H
#define QLORACC_RUNTIME_EXEC_EXECUTOR_H

#include "runtime/exec/ArenaLiveness.h"
#include "runtime/exec/Backend.h"
#include "runtime/format/TrainBin.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace qlora::fb {
struct Program;
struct Buffer;
struct Instr;
struct KernelPhase;
} // namespace qlora::fb

namespace qlora::exec {

/// The grid, block and shared memory of a launch instruction.
LaunchGeometry launchGeometry(const fb::Instr &instr);

/// The grid and block of a multi-phase kernel's further entry.
LaunchGeometry launchGeometry(const fb::KernelPhase &phase);

class Executor {
public:
  /// Called before instruction `index` of the program runs.
  using InstrHook = std::function<void(uint32_t index)>;

  static std::unique_ptr<Executor> create(const format::TrainBinFile &file,
                                          Backend &backend, std::string &error);

  const format::TrainBinFile &file() const { return file_; }
  Backend &backend() { return backend_; }

  /// Index of the buffer called `name`, if any.
  std::optional<uint32_t> findBuffer(std::string_view name) const;
  const fb::Buffer &buffer(uint32_t index) const;

  /// Copies host bytes into / out of a whole buffer (sizes must match).
  bool write(uint32_t buffer, std::span<const std::byte> bytes,
             std::string &error);
  bool read(uint32_t buffer, std::span<std::byte> bytes, std::string &error);

  /// Index of the first launch of template `name`, if any.
  std::optional<uint32_t> findFirstLaunchOf(std::string_view name) const;

  /// Instructions of the step program, and what instruction `index` runs:
  /// its kernel's template name, or "copy".
  uint32_t instrCount() const;
  std::string_view instrLabel(uint32_t index) const;
  /// The model FLOPs of instruction `index` (KernelFlops.h), if it has a
  /// count.
  std::optional<double> instrFlops(uint32_t index) const;
  /// The bytes of instruction `index`'s buffers: each distinct argument
  /// buffer of a launch once (whether read, written or both), a copy's
  /// bytes twice (read and written). Near a kernel's memory traffic when
  /// it streams its buffers once; below it when it reads one again, above
  /// it when it reads only part of one (embedding_fwd's table).
  uint64_t instrBytes(uint32_t index) const;
  /// The kernel instruction `index` launches (its index in train.bin's
  /// kernels: one per distinct template and parameters); none for a copy.
  std::optional<uint32_t> instrKernel(uint32_t index) const;
  /// The integer and string parameters of instruction `index`'s kernel as
  /// `name=value` words (the shapes and dtypes that tell launches of one
  /// template apart); "" for a copy.
  std::string instrParams(uint32_t index) const;

  /// Runs the step program once and waits for it. Fails before running an
  /// instruction at which two live buffers overlap in the arena.
  bool run(std::string &error, const InstrHook &beforeInstr = nullptr);

  /// The most bytes of arena buffers (sizes rounded up to their alignment)
  /// live at one instruction of the last step run, as the runtime counts
  /// them from the program; 0 before the first step. Equals the planned
  /// memory.peak_bytes of a train.bin that qloracc wrote.
  uint64_t highWaterBytes() const { return liveness_.highWaterBytes(); }

private:
  Executor(const format::TrainBinFile &file, Backend &backend,
           const fb::Program &program);

  bool load(std::string &error);
  /// Uploads the buffers train.bin says to draw (fb::RandomInit).
  bool drawRandomInits(std::string &error);

  const format::TrainBinFile &file_;
  Backend &backend_;
  const fb::Program &program_;
  ArenaLiveness liveness_;
};

} // namespace qlora::exec

#endif // QLORACC_RUNTIME_EXEC_EXECUTOR_H
