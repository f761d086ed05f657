//===- PlanMemory.cpp - --qrt-plan-memory ---------------------------------===//
//
// Static memory planning of @train_step: every device buffer gets an offset
// in one arena so that buffers live at the same program point (a launch or
// a copy) never share a byte. Persistent buffers (weights, LoRA matrices,
// optimizer moments, io) are packed first; transient ones (activations,
// recomputed values, gradients, workspaces) are placed greedily by size,
// each into the smallest gap left by the buffers already placed whose
// lifetimes it overlaps (TFLite's ArenaPlanner "greedy by size" strategy,
// best fit). The plan is checked before it is kept, summarised on the
// module as `qrt.memory_plan` and, when asked, written out per program point
// as a CSV timeline.
//
//===----------------------------------------------------------------------===//
#include "dialects/qrt/QrtDialect.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/raw_ostream.h"

#include <array>

namespace mlir::qlora {
#define GEN_PASS_DEF_QRTPLANMEMORYPASS
#include "passes/Passes.h.inc"

using qrt::BufferClass;

namespace {

constexpr unsigned kNumClasses = qrt::getMaxEnumValForBufferClass() + 1;
using ClassBytes = std::array<int64_t, kNumClasses>;

/// One device buffer: its footprint in the arena (size rounded up to its
/// alignment) and the program points [first, last] it is live at (none when
/// first > last).
struct PlannedBuffer {
  /// A handle; mutable so that diagnostics can be emitted on const plans.
  mutable qrt::BufferOp op;
  int64_t alignment;
  int64_t bytes;
  int64_t first, last;
  int64_t offset = -1;

  bool isLiveWith(const PlannedBuffer &other) const {
    return first <= other.last && other.first <= last;
  }
  int64_t end() const { return offset + bytes; }
};

/// The instructions of `func` (its launches and copies, in order), which
/// are the plan's program points: what the runtime runs and measures.
SmallVector<Operation *> collectInstructions(func::FuncOp func) {
  SmallVector<Operation *> instructions;
  func.walk([&](Operation *op) {
    if (isa<qrt::LaunchOp, qrt::CopyOp>(op))
      instructions.push_back(op);
  });
  return instructions;
}

/// The device buffers of `func` with their live ranges over `numPoints`
/// program points, the `instructions`: a transient buffer from the first
/// instruction that takes it to the last (nowhere when none does), a
/// persistent one over the whole program.
SmallVector<PlannedBuffer> collectBuffers(func::FuncOp func,
                                          ArrayRef<Operation *> instructions,
                                          int64_t numPoints,
                                          int64_t minAlignment) {
  llvm::DenseMap<Operation *, int64_t> point;
  for (auto [index, op] : llvm::enumerate(instructions))
    point[op] = int64_t(index);
  SmallVector<PlannedBuffer> buffers;
  func.walk([&](qrt::BufferOp op) {
    if (op.getPlacement() != qrt::Placement::device)
      return;
    int64_t alignment = std::max(op.getAlignment(), minAlignment);
    auto bytes = int64_t(llvm::alignTo(op.getSize(), alignment));
    PlannedBuffer buffer{op, alignment, bytes, 0, numPoints - 1};
    if (!qrt::isPersistent(op.getBufferClass())) {
      buffer.first = numPoints;
      buffer.last = -1;
      for (Operation *user : op->getUsers()) {
        auto it = point.find(user);
        if (it == point.end())
          continue;
        buffer.first = std::min(buffer.first, it->second);
        buffer.last = std::max(buffer.last, it->second);
      }
    }
    buffers.push_back(buffer);
  });
  return buffers;
}

/// Offsets for every buffer: persistent ones packed from 0 in program
/// order, then transient ones greedily by decreasing size (ties: earlier
/// first use, then program order), each at the start of the smallest gap
/// that fits among the already placed buffers live at the same time, or
/// past the last of them.
void planArenaOffsets(MutableArrayRef<PlannedBuffer> buffers) {
  int64_t persistentEnd = 0;
  SmallVector<PlannedBuffer *> transient;
  for (PlannedBuffer &buffer : buffers) {
    if (!qrt::isPersistent(buffer.op.getBufferClass())) {
      transient.push_back(&buffer);
      continue;
    }
    buffer.offset = llvm::alignTo(persistentEnd, buffer.alignment);
    persistentEnd = buffer.end();
  }
  llvm::stable_sort(transient, [](PlannedBuffer *a, PlannedBuffer *b) {
    if (a->bytes != b->bytes)
      return a->bytes > b->bytes;
    return a->first < b->first;
  });

  SmallVector<PlannedBuffer *> placed;
  for (PlannedBuffer *buffer : transient) {
    SmallVector<PlannedBuffer *> neighbours;
    for (PlannedBuffer *other : placed)
      if (buffer->isLiveWith(*other))
        neighbours.push_back(other);
    llvm::sort(neighbours, [](PlannedBuffer *a, PlannedBuffer *b) {
      return a->offset < b->offset;
    });
    int64_t bestOffset = -1, bestGap = std::numeric_limits<int64_t>::max();
    int64_t cursor = persistentEnd;
    for (PlannedBuffer *other : neighbours) {
      int64_t candidate = llvm::alignTo(cursor, buffer->alignment);
      int64_t gap = other->offset - candidate;
      if (gap >= buffer->bytes && gap < bestGap) {
        bestOffset = candidate;
        bestGap = gap;
      }
      cursor = std::max(cursor, other->end());
    }
    buffer->offset = bestOffset >= 0
                         ? bestOffset
                         : int64_t(llvm::alignTo(cursor, buffer->alignment));
    placed.push_back(buffer);
  }
}

/// Errors for every pair of buffers live at the same time whose arena
/// ranges overlap.
LogicalResult verifyArenaPlan(ArrayRef<PlannedBuffer> buffers) {
  bool ok = true;
  SmallVector<const PlannedBuffer *> byOffset = llvm::map_to_vector(
      buffers, [](const PlannedBuffer &buffer) { return &buffer; });
  llvm::sort(byOffset, [](const PlannedBuffer *a, const PlannedBuffer *b) {
    return a->offset < b->offset;
  });
  for (auto [i, a] : llvm::enumerate(byOffset)) {
    // Only sizes, not the rounded footprints, must stay apart.
    int64_t aEnd = a->offset + a->op.getSize();
    for (const PlannedBuffer *b : ArrayRef(byOffset).drop_front(i + 1)) {
      if (b->offset >= aEnd)
        break;
      if (!a->isLiveWith(*b))
        continue;
      InFlightDiagnostic diag =
          b->op.emitOpError("overlaps another buffer live at the same time: "
                            "bytes [")
          << b->offset << ", " << b->offset + b->op.getSize()
          << ") live over program points [" << b->first << ", " << b->last
          << "] against [" << a->offset << ", " << aEnd << ") live over ["
          << a->first << ", " << a->last << "]";
      diag.attachNote(a->op.getLoc()) << "the other buffer";
      ok = false;
    }
  }
  return success(ok);
}

DictionaryAttr getClassDictionary(Builder &builder, const ClassBytes &bytes) {
  SmallVector<NamedAttribute> entries;
  for (unsigned i = 0; i < kNumClasses; ++i)
    entries.push_back(
        builder.getNamedAttr(qrt::stringifyBufferClass(BufferClass(i)),
                             builder.getI64IntegerAttr(bytes[i])));
  return builder.getDictionaryAttr(entries);
}

int64_t sum(const ClassBytes &bytes) {
  int64_t total = 0;
  for (int64_t value : bytes)
    total += value;
  return total;
}

/// The footprints live at each of the `numPoints` program points, by class:
/// each added at its first point and removed after its last, in one sweep.
SmallVector<ClassBytes> getLiveBytes(ArrayRef<PlannedBuffer> buffers,
                                     int64_t numPoints) {
  SmallVector<ClassBytes> delta(numPoints + 1, ClassBytes{});
  for (const PlannedBuffer &buffer : buffers) {
    if (buffer.first > buffer.last)
      continue;
    unsigned index = unsigned(buffer.op.getBufferClass());
    delta[buffer.first][index] += buffer.bytes;
    delta[buffer.last + 1][index] -= buffer.bytes;
  }
  SmallVector<ClassBytes> live(numPoints, ClassBytes{});
  ClassBytes running{};
  for (int64_t point = 0; point < numPoints; ++point) {
    for (unsigned i = 0; i < kNumClasses; ++i)
      running[i] += delta[point][i];
    live[point] = running;
  }
  return live;
}

/// `{arena_size, peak_bytes, peak_by_class, total_by_class}`: the peak is
/// the largest sum of footprints live at one program point.
DictionaryAttr summarisePlan(Builder &builder, ArrayRef<PlannedBuffer> buffers,
                             ArrayRef<ClassBytes> live) {
  ClassBytes total{};
  int64_t arenaSize = 0;
  for (const PlannedBuffer &buffer : buffers) {
    total[unsigned(buffer.op.getBufferClass())] += buffer.bytes;
    arenaSize = std::max(arenaSize, buffer.end());
  }
  ClassBytes peakByClass{};
  int64_t peak = 0;
  for (const ClassBytes &bytes : live) {
    if (sum(bytes) > peak) {
      peak = sum(bytes);
      peakByClass = bytes;
    }
  }
  return builder.getDictionaryAttr({
      builder.getNamedAttr("arena_size", builder.getI64IntegerAttr(arenaSize)),
      builder.getNamedAttr("peak_bytes", builder.getI64IntegerAttr(peak)),
      builder.getNamedAttr("peak_by_class",
                           getClassDictionary(builder, peakByClass)),
      builder.getNamedAttr("total_by_class",
                           getClassDictionary(builder, total)),
  });
}

/// Writes `index,op,kernel,live_bytes,<class>...`, one row per instruction,
/// to `path` (through a temporary file renamed over it).
LogicalResult writeTimeline(ModuleOp module, StringRef path,
                            ArrayRef<Operation *> instructions,
                            ArrayRef<ClassBytes> live) {
  llvm::Error error = llvm::writeToOutput(path, [&](raw_ostream &os) {
    os << "index,op,kernel,live_bytes";
    for (unsigned i = 0; i < kNumClasses; ++i)
      os << ',' << qrt::stringifyBufferClass(BufferClass(i));
    os << '\n';
    for (auto [index, op] : llvm::enumerate(instructions)) {
      auto launch = dyn_cast<qrt::LaunchOp>(op);
      os << index << ',' << (launch ? "launch" : "copy") << ','
         << (launch ? launch.getKernel() : StringRef()) << ','
         << sum(live[index]);
      for (int64_t bytes : live[index])
        os << ',' << bytes;
      os << '\n';
    }
    return llvm::Error::success();
  });
  if (!error)
    return success();
  return module.emitError("cannot write the memory timeline '")
         << path << "': " << llvm::toString(std::move(error));
}

struct PlanMemoryPass : impl::QrtPlanMemoryPassBase<PlanMemoryPass> {
  using QrtPlanMemoryPassBase::QrtPlanMemoryPassBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    int64_t minAlignment = alignment;
    if (minAlignment <= 0 || !llvm::isPowerOf2_64(minAlignment)) {
      module.emitError("alignment must be a positive power of two, got ")
          << minAlignment;
      return signalPassFailure();
    }
    auto trainStep = module.lookupSymbol<func::FuncOp>("train_step");
    if (!trainStep || trainStep.isExternal()) {
      module.emitError("expected a func.func @train_step with a body (run "
                       "--qlora-lower-to-qrt first)");
      return signalPassFailure();
    }

    SmallVector<Operation *> instructions = collectInstructions(trainStep);
    // Without instructions, one point still holds the persistent buffers.
    int64_t numPoints = std::max<int64_t>(instructions.size(), 1);
    SmallVector<PlannedBuffer> buffers =
        collectBuffers(trainStep, instructions, numPoints, minAlignment);
    if (verifyOnly) {
      // Only the offsets that are there.
      llvm::erase_if(buffers, [](PlannedBuffer &buffer) {
        buffer.offset = buffer.op.getOffset().value_or(-1);
        return buffer.offset < 0;
      });
      if (failed(verifyArenaPlan(buffers)))
        signalPassFailure();
      return;
    }
    planArenaOffsets(buffers);
    if (failed(verifyArenaPlan(buffers)))
      return signalPassFailure();

    // The runtime reads each buffer's footprint from its size and alignment.
    for (PlannedBuffer &buffer : buffers) {
      buffer.op.setOffset(buffer.offset);
      buffer.op.setAlignment(buffer.alignment);
    }
    SmallVector<ClassBytes> live = getLiveBytes(buffers, numPoints);
    Builder builder(&getContext());
    module->setAttr("qrt.memory_plan", summarisePlan(builder, buffers, live));
    if (!timeline.empty() &&
        failed(writeTimeline(module, timeline, instructions, live)))
      return signalPassFailure();
  }
};

} // namespace
} // namespace mlir::qlora
