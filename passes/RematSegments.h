//===- RematSegments.h - Saved activations by segment ----------*- C++ -*-===//
//
// The forward values the backward pass reads ("saved activations") of
// @train_step, grouped into segments (one per decoder layer and
// micro-batch), and the rewrite that recomputes a chosen set of them right
// before the backward pass first needs them. The policies of --qlora-remat
// only choose, per segment, which ops to recompute; RematPlan carries out
// any choice.
//
// A segment's boundary values (those read by a later segment's forward
// ops, i.e. the residual stream between decoder layers) are always kept:
// recomputation never reaches across a layer, so each segment is rebuilt
// from what it keeps.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_PASSES_REMATSEGMENTS_H
#define QLORACC_PASSES_REMATSEGMENTS_H

#include "dialects/qlora/QloraDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/SmallVector.h"

namespace mlir::qlora {

/// The FLOPs of running `ops` once (CostModelOpInterface; 0 for ops
/// without it).
double getFlops(ArrayRef<Operation *> ops);

/// How much of a segment is recomputed.
enum class SegmentPolicy {
  keep,      ///< every saved value is kept
  selective, ///< norms, elementwise ops, RoPE and reshapes are recomputed
  full,      ///< everything but the segment's input is recomputed
};

/// The forward ops of one decoder layer in one micro-batch, in program
/// order.
struct RematSegment {
  int64_t layer = 0;
  SmallVector<Operation *> ops;
  /// Ops whose results a later segment's forward reads: always kept.
  llvm::DenseSet<Operation *> boundary;
};

/// The segments of a training step function.
class RematAnalysis {
public:
  /// Finds the forward ops (those the returned loss depends on and that
  /// depend on an input) and groups them by decoder layer, read from the
  /// `model.layers.<N>.` names of the weights and LoRA parameters an op
  /// reads (other ops inherit the latest layer of their operands), and by
  /// micro-batch.
  explicit RematAnalysis(func::FuncOp func);

  ArrayRef<RematSegment> getSegments() const { return segments; }
  func::FuncOp getFunction() const { return func; }

  /// The ops of `segment` that `policy` recomputes.
  SmallVector<Operation *> getRecomputed(const RematSegment &segment,
                                         SegmentPolicy policy) const;

  /// Recomputes `recomputed` (ops of one segment, in program order) for the
  /// backward pass: clones them, marked `qlora.recompute`, right before the
  /// first backward op that reads one of their results, and points every
  /// backward use at the clones. Clones nothing reads are dropped. Returns
  /// the FLOPs the kept clones cost per step. Leaves the analysis valid for
  /// the other segments.
  double recompute(ArrayRef<Operation *> recomputed) const;

private:
  func::FuncOp func;
  SmallVector<RematSegment> segments;
  /// The forward ops (those the loss depends on), activations or not.
  llvm::DenseSet<Operation *> forwardOps;
};

} // namespace mlir::qlora

#endif // QLORACC_PASSES_REMATSEGMENTS_H
