//===- ArenaLiveness.h - Live arena bytes while a step runs -----*- C++ -*-===//
//
// The runtime's own account of the memory plan, from the loaded program
// alone: a buffer of a persistent class is live over the whole step, any
// other from the first instruction that uses it to the last (never, when
// none does). While a step runs, the executor enters each instruction before
// it runs it; this class keeps the buffers live there, checks that none of
// them share an arena byte, and records the largest footprint (sizes rounded
// up to their alignment) live at once: the measured peak, which must equal
// the peak qloracc planned.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_EXEC_ARENALIVENESS_H
#define QLORACC_RUNTIME_EXEC_ARENALIVENESS_H

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace qlora::fb {
struct TrainBin;
struct Program;
} // namespace qlora::fb

namespace qlora::exec {

class ArenaLiveness {
public:
  /// The live ranges of the buffers of `root` over the instructions of
  /// `program`; both must outlive this object.
  ArenaLiveness(const fb::TrainBin &root, const fb::Program &program);

  /// Starts a step: nothing is live yet.
  void beginStep();
  /// Instruction `index` (in order from 0) is about to run: the buffers
  /// last used before it are released, those first used by it become live.
  /// False with `error` naming both buffers when a buffer becoming live
  /// overlaps one already live.
  bool enter(uint32_t index, std::string &error);
  /// Ends a step (a program without instructions still holds its
  /// persistent buffers).
  void endStep();

  /// The most footprint bytes live at one instruction of the last step.
  uint64_t highWaterBytes() const { return highWater_; }

private:
  bool add(uint32_t buffer, uint32_t index, std::string &error);
  void remove(uint32_t buffer);
  std::string describe(uint32_t buffer) const;

  const fb::TrainBin &root_;
  size_t numInstrs_ = 0;
  /// Per instruction, the buffers first used by it and the buffers last
  /// used by it.
  std::vector<std::vector<uint32_t>> firstUses_, lastUses_;
  std::vector<uint64_t> footprint_;
  /// Live buffers of non-zero size, by arena offset.
  std::map<uint64_t, uint32_t> live_;
  uint64_t liveBytes_ = 0;
  uint64_t highWater_ = 0;
};

} // namespace qlora::exec

#endif // QLORACC_RUNTIME_EXEC_ARENALIVENESS_H
