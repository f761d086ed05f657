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
/// at the peak and bytes allocated over the whole step) and fragmentation.
std::string renderMemoryReport(const format::TrainBinMemoryPlan &plan);

/// The plan stored in an open train.bin.
format::TrainBinMemoryPlan memoryPlanOf(const format::TrainBinFile &file);

} // namespace qlora::exec

#endif // QLORACC_RUNTIME_EXEC_MEMORYREPORT_H
