//===- GraphSummary.cpp - --qlora-graph-summary ---------------------------===//
//
// A read-only report of what a training graph will need before memory
// planning exists: parameters by class, the values of the forward pass and
// the work of one step (CostModelOpInterface).
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"

namespace mlir::qlora {
#define GEN_PASS_DEF_QLORAGRAPHSUMMARYPASS
#include "passes/Passes.h.inc"

namespace {

/// Bytes of a statically shaped tensor, rounding sub-byte types up.
int64_t tensorBytes(RankedTensorType type) {
  int64_t bits = type.getElementType().getIntOrFloatBitWidth();
  return (type.getNumElements() * bits + 7) / 8;
}

/// `value` in the largest of `units` (each `step` times the one before) that
/// keeps it at least 1, with two decimals past the first unit.
std::string formatWithUnit(double value, double step,
                           ArrayRef<const char *> units) {
  size_t unit = 0;
  while (value >= step && unit + 1 < units.size()) {
    value /= step;
    ++unit;
  }
  std::string text;
  llvm::raw_string_ostream os(text);
  os << llvm::format(unit == 0 ? "%.0f %s" : "%.2f %s", value, units[unit]);
  return text;
}

std::string formatBytes(int64_t bytes) {
  return formatWithUnit(double(bytes), 1024, {"B", "KiB", "MiB", "GiB", "TiB"});
}

/// "167.98 KFLOP": decimal prefixes, as FLOP rates are quoted.
std::string formatFlops(double flops) {
  return formatWithUnit(flops, 1000,
                        {"FLOP", "KFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP"});
}

/// FLOPs by step phase and bytes over every op with a cost model.
///
/// An op's own phase (getStepPhase) is that of its kind, and the kinds that
/// serve both passes (add, mul, cast, reshape) say forward. Autodiff uses
/// them on gradients too (sums of gradients, the VJP of mul), so a forward
/// op that reads a value the backward pass made is counted as backward.
/// Ops are visited in program order, definitions before uses.
struct CostTally {
  double flops[getMaxEnumValForStepPhase() + 1] = {};
  int64_t bytes = 0;
  llvm::DenseSet<Operation *> backward;

  void add(CostModelOpInterface op) {
    StepPhase phase = op.getStepPhase();
    if (phase == StepPhase::Forward &&
        llvm::any_of(op->getOperands(), [&](Value operand) {
          return backward.contains(operand.getDefiningOp());
        }))
      phase = StepPhase::Backward;
    if (phase == StepPhase::Backward)
      backward.insert(op);
    flops[static_cast<size_t>(phase)] += op.getFlops();
    bytes += op.getBytesAccessed();
  }
  double of(StepPhase phase) const { return flops[static_cast<size_t>(phase)]; }
};

struct Tally {
  int64_t tensors = 0;
  int64_t elements = 0;
  int64_t bytes = 0;

  void add(RankedTensorType type) {
    ++tensors;
    elements += type.getNumElements();
    bytes += tensorBytes(type);
  }
  void add(nf4::Nf4TensorType type) {
    ++tensors;
    elements += type.getNumElements();
    bytes += (type.getStorageBits() + 7) / 8;
  }
};

/// "f32", "bf16", "nf4 (block 64, dq 256)": how a frozen weight is stored.
std::string storageLabel(Type type) {
  std::string label;
  llvm::raw_string_ostream os(label);
  if (auto nf4 = dyn_cast<nf4::Nf4TensorType>(type)) {
    os << "nf4 (block " << nf4.getBlockSize();
    if (nf4.isDoubleQuantized())
      os << ", dq " << nf4.getDqBlockSize();
    os << ")";
  } else {
    os << cast<RankedTensorType>(type).getElementType();
  }
  return label;
}

/// The tally labelled `label`, appended on first use (first-seen order).
Tally &tallyOf(std::vector<std::pair<std::string, Tally>> &tallies,
               const std::string &label) {
  for (auto &[existing, tally] : tallies)
    if (existing == label)
      return tally;
  return tallies.emplace_back(label, Tally()).second;
}

struct GraphSummaryPass : impl::QloraGraphSummaryPassBase<GraphSummaryPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    std::vector<std::pair<std::string, Tally>> frozenByType;
    Tally frozen, lora, forwardValues;
    int64_t shapeOnly = 0;
    llvm::MapVector<StringRef, int64_t> opCounts;
    CostTally cost;

    module.walk([&](Operation *op) {
      // nf4.dequantize has a cost too (an external model).
      if (auto costModel = dyn_cast<CostModelOpInterface>(op))
        cost.add(costModel);
      if (!isa<QloraDialect>(op->getDialect()))
        return;
      ++opCounts[op->getName().getStringRef()];
      if (auto weight = dyn_cast<WeightOp>(op)) {
        Tally &byType = tallyOf(frozenByType, storageLabel(weight.getType()));
        if (auto nf4 = dyn_cast<nf4::Nf4TensorType>(weight.getType())) {
          frozen.add(nf4);
          byType.add(nf4);
        } else {
          frozen.add(weight.getTensorType());
          byType.add(weight.getTensorType());
        }
        shapeOnly += weight.isShapeOnly();
        return;
      }
      if (auto param = dyn_cast<LoraParamOp>(op)) {
        lora.add(param.getType());
        return;
      }
      for (Value result : op->getResults())
        if (auto type = dyn_cast<RankedTensorType>(result.getType()))
          forwardValues.add(type);
    });

    llvm::raw_ostream &os = llvm::outs();
    os << "qlora graph summary";
    if (auto model = module->getAttrOfType<ModelConfigAttr>(
            QloraDialect::kModelAttrName))
      os << ": " << model.getArchitecture() << " '" << model.getNameOrPath()
         << "', " << model.getNumHiddenLayers() << " layers, hidden "
         << model.getHiddenSize() << ", vocab " << model.getVocabSize();
    os << "\n";
    if (auto config =
            module->getAttrOfType<LoraConfigAttr>(QloraDialect::kLoraAttrName))
      os << "  LoRA r=" << config.getR()
         << llvm::format(" alpha=%g scaling=%g",
                         config.getAlpha().convertToDouble(),
                         config.getScaling())
         << " on " << config.getTargets().size() << " module kind(s)\n";

    auto row = [&](StringRef what, const Tally &tally, StringRef note = "") {
      os << "  " << llvm::left_justify(what, 26)
         << llvm::right_justify(std::to_string(tally.tensors), 6) << " tensors "
         << llvm::right_justify(std::to_string(tally.elements), 14)
         << " elements " << llvm::right_justify(formatBytes(tally.bytes), 11);
      if (!note.empty())
        os << "  (" << note << ")";
      os << "\n";
    };
    row("frozen weights", frozen,
        shapeOnly ? std::to_string(shapeOnly) + " shape-only" : "");
    for (auto &[label, tally] : frozenByType)
      row("  of " + label, tally);
    row("LoRA parameters (f32)", lora);
    // One fp32 gradient per LoRA parameter, and AdamW's two moments.
    row("LoRA gradients (f32)", lora);
    Tally adam{2 * lora.tensors, 2 * lora.elements, 2 * lora.bytes};
    row("AdamW state (f32, m + v)", adam);
    row("forward values", forwardValues,
        "upper bound on saved activations, before remat and planning");
    int64_t total = frozen.bytes + 4 * lora.bytes + forwardValues.bytes;
    os << "  total before planning: " << formatBytes(total) << "\n";
    os << "  cost: " << formatFlops(cost.of(StepPhase::Forward)) << " forward, "
       << formatFlops(cost.of(StepPhase::Backward)) << " backward, "
       << formatFlops(cost.of(StepPhase::Optimizer)) << " optimizer, "
       << formatBytes(cost.bytes) << " accessed\n";
    os << "  ops:";
    for (auto &[name, count] : opCounts)
      os << " " << name << "=" << count;
    os << "\n";
    markAllAnalysesPreserved();
  }
};

} // namespace
} // namespace mlir::qlora
