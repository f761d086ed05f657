//===- MemoryReport.h - The memory plan as a table --------------*- C++ -*-===//
//
// One rendering of a train.bin memory plan, shared by `qloracc
// --memory-report` (before anything runs) and `qlora-run` (before a run).
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_EXEC_MEMORYREPORT_H
#define QLORACC_RUNTIME_EXEC_MEMORYREPORT_H

#include "runtime/format/TrainBinWriter.h"

#include <string>

namespace qlora::exec {

/// "peak: 5.82 GiB" on the first line, then one row per class (bytes live
/// at the peak and bytes allocated over the whole step: NF4 weights + scales,
/// other frozen weights, LoRA params, gradients, AdamW state, saved
/// activations, recompute workspace, kernel workspace, inputs/outputs),
/// fragmentation and the arena.
std::string renderMemoryReport(const format::TrainBinMemoryPlan &plan);

/// "measured peak: 1.19 MiB (planned 1.19 MiB)": the executor's high-water
/// mark of one step next to the plan's peak.
std::string renderMeasuredPeak(uint64_t measuredBytes, uint64_t plannedBytes);

/// The plan stored in an open train.bin.
format::TrainBinMemoryPlan memoryPlanOf(const format::TrainBinFile &file);

} // namespace qlora::exec

#endif // QLORACC_RUNTIME_EXEC_MEMORYREPORT_H
