//===- RematSegments.cpp - Saved activations by segment, recomputed -------===//
#include "passes/RematSegments.h"

#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/SetVector.h"

#include <optional>

namespace mlir::qlora {

namespace {

/// No decoder layer: the embedding and everything after the last layer.
constexpr int64_t kOutsideLayers = -1;

/// The decoder layer a parameter name belongs to: N for
/// "model.layers.N.…", kOutsideLayers for any other name.
int64_t layerOfName(StringRef name) {
  if (!name.consume_front("model.layers."))
    return kOutsideLayers;
  int64_t layer;
  if (name.consumeInteger(10, layer) || !name.starts_with("."))
    return kOutsideLayers;
  return layer;
}

/// The name of the parameter `value` reads, looking through nf4
/// dequantization; empty for anything else.
StringRef getParameterName(Value value) {
  Operation *def = value.getDefiningOp();
  if (auto dequantize = dyn_cast_or_null<nf4::DequantizeOp>(def))
    def = dequantize.getInput().getDefiningOp();
  if (auto weight = dyn_cast_or_null<WeightOp>(def))
    return weight.getName();
  if (auto param = dyn_cast_or_null<LoraParamOp>(def))
    return param.getName();
  if (auto constant = dyn_cast_or_null<nf4::ConstantOp>(def))
    return constant.getName().value_or("");
  return "";
}

/// Ops that are cheap to recompute next to the GEMMs and attention they
/// sit between: what `selective` recomputes.
bool isCheapToRecompute(Operation *op) {
  return isa<RmsNormOp, SiluOp, MulOp, AddOp, RopeOp, ReshapeOp, CastOp>(op);
}

/// A LoRA linear with dropout leaves dropout(x)·Aᵀ for its lora_grad, which
/// only it can compute (the mask is applied on the way): its clone stays
/// even when nothing reads its result.
bool leavesDropoutProduct(Operation *op) {
  auto linear = dyn_cast<LinearOp>(op);
  return linear && linear.getLoraA() && !linear.getDropout().isZero();
}

} // namespace

RematAnalysis::RematAnalysis(func::FuncOp func) : func(func) {
  Block &body = func.getBody().front();
  auto returnOp = cast<func::ReturnOp>(body.getTerminator());
  if (returnOp.getNumOperands() == 0)
    return;

  // The forward pass: what the loss (the first result) depends on.
  llvm::DenseSet<Operation *> forward;
  SmallVector<Operation *> worklist;
  if (Operation *def = returnOp.getOperand(0).getDefiningOp())
    worklist.push_back(def);
  while (!worklist.empty()) {
    Operation *op = worklist.pop_back_val();
    if (!forward.insert(op).second)
      continue;
    for (Value operand : op->getOperands())
      if (Operation *def = operand.getDefiningOp())
        worklist.push_back(def);
  }

  // Activations: forward ops computed from the inputs, in program order,
  // with their layer and micro-batch (the token slice they come from).
  llvm::DenseMap<Operation *, int64_t> layerOf;
  llvm::DenseMap<Operation *, Value> streamOf;
  llvm::MapVector<std::pair<Value, int64_t>, unsigned> segmentIndex;
  for (Operation &op : body) {
    if (!forward.contains(&op) || isa<tensor::ExtractSliceOp>(op))
      continue;
    int64_t layer = kOutsideLayers;
    bool namedParameter = false, fromInput = false;
    Value stream;
    for (Value operand : op.getOperands()) {
      StringRef name = getParameterName(operand);
      if (!name.empty()) {
        int64_t named = layerOfName(name);
        layer = namedParameter ? std::max(layer, named) : named;
        namedParameter = true;
        continue;
      }
      Operation *def = operand.getDefiningOp();
      if (!def || isa<tensor::ExtractSliceOp>(def)) {
        fromInput = true;
        if (!stream && isa<TensorType>(operand.getType()))
          stream = operand;
        continue;
      }
      auto it = layerOf.find(def);
      if (it == layerOf.end())
        continue;
      fromInput = true;
      if (!stream)
        stream = streamOf.lookup(def);
      if (!namedParameter)
        layer = std::max(layer, it->second);
    }
    if (!fromInput)
      continue;
    layerOf[&op] = layer;
    streamOf[&op] = stream;
    if (layer == kOutsideLayers || op.getNumResults() == 0)
      continue;
    auto [it, inserted] =
        segmentIndex.try_emplace({stream, layer}, segments.size());
    if (inserted)
      segments.emplace_back().layer = layer;
    segments[it->second].ops.push_back(&op);
  }

  // Boundaries: results another segment's (or the head's) forward reads.
  for (RematSegment &segment : segments) {
    llvm::DenseSet<Operation *> members(segment.ops.begin(), segment.ops.end());
    for (Operation *op : segment.ops)
      for (Operation *user : op->getUsers())
        if (layerOf.contains(user) && !members.contains(user))
          segment.boundary.insert(op);
  }
  forwardOps = std::move(forward);
}

SmallVector<Operation *>
RematAnalysis::getRecomputed(const RematSegment &segment,
                             SegmentPolicy policy) const {
  SmallVector<Operation *> ops;
  if (policy == SegmentPolicy::keep)
    return ops;
  llvm::DenseSet<Operation *> chosen;
  for (Operation *op : segment.ops)
    if (!segment.boundary.contains(op) &&
        (policy == SegmentPolicy::full || isCheapToRecompute(op)))
      chosen.insert(op);
  // The input of a LoRA linear with dropout stays where that linear's
  // forward launch reads it unless the linear is recomputed too: its
  // lora_grad needs dropout(x)·Aᵀ of the very x it reads, which only that
  // launch computes.
  for (Operation *op : segment.ops)
    if (chosen.contains(op) &&
        llvm::any_of(op->getUsers(), [&](Operation *user) {
          return leavesDropoutProduct(user) && !chosen.contains(user);
        }))
      chosen.erase(op);
  for (Operation *op : segment.ops)
    if (chosen.contains(op))
      ops.push_back(op);
  return ops;
}

double RematAnalysis::recompute(ArrayRef<Operation *> recomputed) const {
  if (recomputed.empty())
    return 0;
  llvm::DenseSet<Operation *> members(recomputed.begin(), recomputed.end());
  auto isBackwardUse = [&](OpOperand &use) {
    return !forwardOps.contains(use.getOwner());
  };
  // Right before the first backward op that reads one of them.
  Operation *insertionPoint = nullptr;
  for (Operation *op : recomputed)
    for (OpOperand &use : op->getUses())
      if (isBackwardUse(use) &&
          (!insertionPoint || use.getOwner()->isBeforeInBlock(insertionPoint)))
        insertionPoint = use.getOwner();
  if (!insertionPoint)
    return 0;

  OpBuilder builder(insertionPoint);
  IRMapping mapping;
  SmallVector<Operation *> clones;
  for (Operation *op : recomputed) {
    Operation *clone = builder.clone(*op, mapping);
    clone->setAttr(QloraDialect::kRecomputeAttrName, builder.getUnitAttr());
    clones.push_back(clone);
  }
  for (Operation *op : recomputed)
    for (Value result : op->getResults())
      result.replaceUsesWithIf(mapping.lookup(result), [&](OpOperand &use) {
        return isBackwardUse(use) &&
               !use.getOwner()->hasAttr(QloraDialect::kRecomputeAttrName);
      });
  SmallVector<Operation *> kept;
  for (Operation *clone : llvm::reverse(clones)) {
    if (clone->use_empty() && !leavesDropoutProduct(clone)) {
      clone->erase();
      continue;
    }
    kept.push_back(clone);
  }
  return getFlops(kept);
}

double getFlops(ArrayRef<Operation *> ops) {
  double flops = 0;
  for (Operation *op : ops)
    if (auto cost = dyn_cast<CostModelOpInterface>(op))
      flops += cost.getFlops();
  return flops;
}

} // namespace mlir::qlora
