//===- TrainingLoop.h - qlora-run's training loop ---------------*- C++ -*-===//
#ifndef QLORACC_TOOLS_QLORA_RUN_TRAININGLOOP_H
#define QLORACC_TOOLS_QLORA_RUN_TRAININGLOOP_H

#include "tools/qlora-run/RunOptions.h"

namespace qlora::run {

/// Runs everything the options ask for; returns the process exit code.
/// Errors are printed to stderr as one line each.
int runTraining(const RunOptions &options);

} // namespace qlora::run

#endif // QLORACC_TOOLS_QLORA_RUN_TRAININGLOOP_H
