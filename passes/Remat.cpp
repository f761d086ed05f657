//===- Remat.cpp - --qlora-remat: what to keep, what to recompute ---------===//
//
// The policies choose a SegmentPolicy per segment (RematSegments.h does the
// rewriting). `budget` measures planned peaks with the real lowering and
// planner, on copies of the module nested in it so that a dynamic pipeline
// may run on them.
//
//===----------------------------------------------------------------------===//
#include "dialects/qrt/QrtDialect.h"
#include "passes/Passes.h"
#include "passes/RematSegments.h"
#include "runtime/train/TextFormat.h"

#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <optional>

namespace mlir::qlora {
#define GEN_PASS_DEF_QLORAREMATPASS
#include "passes/Passes.h.inc"

namespace {

enum class Policy { none, perLayer, selective, budget };

/// How many segments, counted from the first, recompute fully, then how
/// many selectively; the rest keep everything.
struct SegmentCounts {
  int64_t full = 0;
  int64_t selective = 0;

  SegmentPolicy policyOf(int64_t index) const {
    if (index < full)
      return SegmentPolicy::full;
    if (index < full + selective)
      return SegmentPolicy::selective;
    return SegmentPolicy::keep;
  }
};

/// Applies `counts` to every function with a body; returns the recompute
/// FLOPs per step.
double applyCounts(ModuleOp module, SegmentCounts counts) {
  double flops = 0;
  for (auto func : module.getOps<func::FuncOp>()) {
    if (func.isExternal())
      continue;
    RematAnalysis analysis(func);
    for (auto [index, segment] : llvm::enumerate(analysis.getSegments()))
      flops += analysis.recompute(
          analysis.getRecomputed(segment, counts.policyOf(index)));
  }
  return flops;
}

/// FLOPs that recomputing one segment costs under `policy` (the first
/// segment of the first function: decoder layers are identical).
double segmentFlops(const RematAnalysis &analysis, SegmentPolicy policy) {
  if (analysis.getSegments().empty())
    return 0;
  return getFlops(
      analysis.getRecomputed(analysis.getSegments().front(), policy));
}

std::string formatSize(int64_t bytes) {
  return ::qlora::train::formatBytes(uint64_t(bytes));
}

struct RematPass : impl::QloraRematPassBase<RematPass> {
  using Base::Base;

  /// Where `report` prints.
  llvm::raw_ostream *reportStream = &llvm::outs();

  void runOnOperation() override {
    ModuleOp module = getOperation();
    std::optional<Policy> parsed =
        llvm::StringSwitch<std::optional<Policy>>(policy)
            .Case("none", Policy::none)
            .Case("per-layer", Policy::perLayer)
            .Case("selective", Policy::selective)
            .Case("budget", Policy::budget)
            .Default(std::nullopt);
    if (!parsed) {
      module.emitError("qlora-remat: policy must be none, per-layer, "
                       "selective or budget, got '")
          << policy << "'";
      return signalPassFailure();
    }
    if (*parsed == Policy::budget && budget <= 0) {
      module.emitError("qlora-remat: policy=budget needs a positive budget "
                       "(bytes), got ")
          << int64_t(budget);
      return signalPassFailure();
    }
    if (*parsed != Policy::budget && budget != 0) {
      module.emitError("qlora-remat: a budget is only used by policy=budget, "
                       "not '")
          << policy << "'";
      return signalPassFailure();
    }

    int64_t segments = countSegments(module);
    SegmentCounts counts;
    switch (*parsed) {
    case Policy::none:
      break;
    case Policy::perLayer:
      counts.full = segments;
      break;
    case Policy::selective:
      counts.selective = segments;
      break;
    case Policy::budget: {
      FailureOr<SegmentCounts> chosen = chooseForBudget(segments);
      if (failed(chosen))
        return signalPassFailure();
      counts = *chosen;
      break;
    }
    }
    double flops = applyCounts(module, counts);
    if (report)
      *reportStream << llvm::formatv(
          "remat: policy {0}: {1} of {2} layer segments recomputed fully, "
          "{3} selectively; recompute {4:f3} GFLOP per step\n",
          policy, counts.full, segments, counts.selective, flops / 1e9);
  }

private:
  static int64_t countSegments(ModuleOp module) {
    int64_t segments = 0;
    for (auto func : module.getOps<func::FuncOp>())
      if (!func.isExternal())
        segments = std::max<int64_t>(segments,
                                     RematAnalysis(func).getSegments().size());
    return segments;
  }

  /// The planned peak of the module with `counts` applied, measured on a
  /// copy lowered and planned as the pipeline would.
  FailureOr<int64_t> plannedPeak(SegmentCounts counts) {
    ModuleOp module = getOperation();
    auto copy = cast<ModuleOp>(module->clone());
    module.getBody()->push_back(copy);
    applyCounts(copy, counts);
    OpPassManager pm(ModuleOp::getOperationName());
    QloraLowerToQrtPassOptions lowering;
    lowering.activationType = activationType;
    lowering.nf4Gemm = nf4Gemm;
    pm.addPass(createQloraLowerToQrtPass(lowering));
    pm.addPass(createQrtPlanMemoryPass());
    std::optional<int64_t> peak;
    if (succeeded(runPipeline(pm, copy)))
      if (auto plan = copy->getAttrOfType<DictionaryAttr>("qrt.memory_plan"))
        if (auto bytes = plan.getAs<IntegerAttr>("peak_bytes"))
          peak = bytes.getInt();
    copy.erase();
    if (!peak)
      return module.emitError("qlora-remat: cannot plan the step to measure "
                              "its peak (see above)");
    return *peak;
  }

  /// The cheapest counts whose planned peak fits the budget.
  FailureOr<SegmentCounts> chooseForBudget(int64_t segments) {
    ModuleOp module = getOperation();
    FailureOr<int64_t> none = plannedPeak({});
    if (failed(none))
      return failure();
    if (*none <= budget)
      return SegmentCounts();
    // Without decoder layers there is nothing to recompute.
    FailureOr<int64_t> full = segments ? plannedPeak({segments, 0}) : none;
    FailureOr<int64_t> selective = segments ? plannedPeak({0, segments}) : none;
    if (failed(full) || failed(selective))
      return failure();
    if (report)
      *reportStream << llvm::formatv(
          "remat: budget {0}: planned peak {1} keeping everything, {2} "
          "recomputing selectively, {3} recomputing every layer\n",
          formatSize(budget), formatSize(*none), formatSize(*selective),
          formatSize(*full));
    if (*full > budget) {
      module.emitError("qlora-remat: the budget of ")
          << formatSize(budget) << " is below the smallest planned peak, "
          << formatSize(*full)
          << " (every layer recomputed); raise the budget or lower the "
             "batch or sequence length";
      return failure();
    }

    // Each segment recomputed fully or selectively lowers the peak by its
    // share of what recomputing all of them saves.
    double savedByFull = double(*none - *full) / double(segments);
    double savedBySelective =
        std::max(0.0, double(*none - *selective) / double(segments));
    double fullFlops = 0, selectiveFlops = 0;
    for (auto func : module.getOps<func::FuncOp>())
      if (!func.isExternal()) {
        RematAnalysis analysis(func);
        fullFlops = segmentFlops(analysis, SegmentPolicy::full);
        selectiveFlops = segmentFlops(analysis, SegmentPolicy::selective);
        break;
      }
    struct Candidate {
      SegmentCounts counts;
      double flops;
      double predictedPeak;
    };
    SmallVector<Candidate> candidates;
    for (int64_t f = 0; f <= segments; ++f)
      for (int64_t s = 0; f + s <= segments; ++s) {
        double predicted = double(*none) - double(f) * savedByFull -
                           double(s) * savedBySelective;
        if (predicted <= double(budget))
          candidates.push_back(
              {{f, s},
               double(f) * fullFlops + double(s) * selectiveFlops,
               predicted});
      }
    llvm::stable_sort(candidates, [](const Candidate &a, const Candidate &b) {
      return std::tie(a.flops, a.predictedPeak) <
             std::tie(b.flops, b.predictedPeak);
    });
    // The interpolation is close, not exact: the planner decides.
    constexpr size_t kMaxChecks = 12;
    for (const Candidate &candidate :
         ArrayRef(candidates).take_front(kMaxChecks)) {
      FailureOr<int64_t> peak = plannedPeak(candidate.counts);
      if (failed(peak))
        return failure();
      if (*peak <= budget) {
        if (report)
          *reportStream << llvm::formatv(
              "remat: budget {0}: chose {1} full, "
              "{2} selective: planned peak {3}\n",
              formatSize(budget), candidate.counts.full,
              candidate.counts.selective, formatSize(*peak));
        return candidate.counts;
      }
    }
    return SegmentCounts{segments, 0};
  }
};

} // namespace

std::unique_ptr<Pass> createQloraRematPass(const QloraRematPassOptions &options,
                                           llvm::raw_ostream &report) {
  auto pass = std::make_unique<RematPass>(options);
  pass->reportStream = &report;
  return pass;
}

} // namespace mlir::qlora
