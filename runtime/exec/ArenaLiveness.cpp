//===- ArenaLiveness.cpp - Live arena bytes while a step runs -------------===//
//
// The loader has checked every buffer index, offset and alignment, so the
// program can be walked without checking again. Overlaps are found with the
// live buffers ordered by offset: those are pairwise disjoint, so a buffer
// becoming live needs comparing with its two neighbours only.
//
//===----------------------------------------------------------------------===//
#include "runtime/exec/ArenaLiveness.h"

#include "runtime/format/TrainBin.h"
#include "runtime/format/train_generated.h"

#include <algorithm>
#include <iterator>
#include <limits>

namespace qlora::exec {

namespace {

/// The buffers instruction `instr` reads or writes.
std::vector<uint32_t> touchedBuffers(const fb::Instr &instr) {
  if (instr.kind() == fb::InstrKind::Copy)
    return {instr.src(), instr.dst()};
  if (!instr.args())
    return {};
  return {instr.args()->begin(), instr.args()->end()};
}

std::string range(uint64_t offset, uint64_t size) {
  return "[" + std::to_string(offset) + ", " + std::to_string(offset + size) +
         ")";
}

} // namespace

ArenaLiveness::ArenaLiveness(const fb::TrainBin &root,
                             const fb::Program &program)
    : root_(root) {
  const auto &buffers = *root.buffers();
  const auto &instrs = *program.instrs();
  numInstrs_ = instrs.size();
  constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
  std::vector<uint32_t> first(buffers.size(), kNone), last(buffers.size(), 0);
  for (uint32_t i = 0; i < instrs.size(); ++i)
    for (uint32_t buffer : touchedBuffers(*instrs[i])) {
      first[buffer] = std::min(first[buffer], i);
      last[buffer] = std::max(last[buffer], i);
    }

  size_t numPoints = std::max<size_t>(numInstrs_, 1);
  firstUses_.resize(numPoints);
  lastUses_.resize(numPoints);
  footprint_.resize(buffers.size());
  for (uint32_t b = 0; b < buffers.size(); ++b) {
    const fb::Buffer &buffer = *buffers[b];
    uint64_t alignment = std::max<uint64_t>(buffer.alignment(), 1);
    footprint_[b] = (buffer.size() + alignment - 1) / alignment * alignment;
    if (format::isPersistent(format::toBufferClass(buffer.buffer_class()))) {
      first[b] = 0;
      last[b] = uint32_t(numPoints - 1);
    } else if (first[b] == kNone) {
      continue; // No instruction uses it: never live.
    }
    firstUses_[first[b]].push_back(b);
    lastUses_[last[b]].push_back(b);
  }
}

void ArenaLiveness::beginStep() {
  live_.clear();
  liveBytes_ = 0;
  highWater_ = 0;
}

bool ArenaLiveness::enter(uint32_t index, std::string &error) {
  if (index > 0)
    for (uint32_t buffer : lastUses_[index - 1])
      remove(buffer);
  for (uint32_t buffer : firstUses_[index])
    if (!add(buffer, index, error))
      return false;
  highWater_ = std::max(highWater_, liveBytes_);
  return true;
}

void ArenaLiveness::endStep() {
  if (numInstrs_ == 0) {
    std::string unused;
    enter(0, unused);
  }
  live_.clear();
  liveBytes_ = 0;
}

bool ArenaLiveness::add(uint32_t buffer, uint32_t index, std::string &error) {
  liveBytes_ += footprint_[buffer];
  const fb::Buffer &added = *root_.buffers()->Get(buffer);
  uint64_t offset = added.offset(), size = added.size();
  if (size == 0)
    return true;
  // The live neighbour at or after `offset`, then the one before it.
  auto next = live_.lower_bound(offset);
  auto clash = [&](std::map<uint64_t, uint32_t>::iterator it) {
    const fb::Buffer &other = *root_.buffers()->Get(it->second);
    return it->first < offset + size && offset < it->first + other.size();
  };
  std::map<uint64_t, uint32_t>::iterator other = live_.end();
  if (next != live_.end() && clash(next))
    other = next;
  else if (next != live_.begin() && clash(std::prev(next)))
    other = std::prev(next);
  if (other != live_.end()) {
    const fb::Buffer &existing = *root_.buffers()->Get(other->second);
    error = "instruction " + std::to_string(index) + ": " + describe(buffer) +
            " at arena bytes " + range(offset, size) + " overlaps " +
            describe(other->second) + " at " +
            range(existing.offset(), existing.size()) +
            ", and both are live here";
    return false;
  }
  live_.emplace(offset, buffer);
  return true;
}

void ArenaLiveness::remove(uint32_t buffer) {
  liveBytes_ -= footprint_[buffer];
  const fb::Buffer &removed = *root_.buffers()->Get(buffer);
  auto it = live_.find(removed.offset());
  if (it != live_.end() && it->second == buffer)
    live_.erase(it);
}

std::string ArenaLiveness::describe(uint32_t buffer) const {
  const fb::Buffer &described = *root_.buffers()->Get(buffer);
  std::string text = "buffer " + std::to_string(buffer);
  if (described.name() && described.name()->size())
    text += " '" + described.name()->str() + "'";
  return text + " (" +
         std::string(format::bufferClassName(
             format::toBufferClass(described.buffer_class()))) +
         ")";
}

} // namespace qlora::exec
