//===- qlora-run.cpp - Trains the LoRA adapters of a train.bin ------------===//
//
//   qlora-run train.bin --data tokens.bin --steps 200 --save-adapter out/
//
// Loads a program compiled by `qloracc -o train.bin`, prints its memory plan,
// and runs its step program on the chosen backend, one optimizer step per
// batch, with a progress bar, per-step metrics and PEFT adapter export.
//
//===----------------------------------------------------------------------===//
#include "tools/qlora-run/RunOptions.h"
#include "tools/qlora-run/TrainingLoop.h"

int main(int argc, char **argv) {
  int exitCode = 0;
  std::optional<qlora::run::RunOptions> options =
      qlora::run::parseRunOptions(argc, argv, exitCode);
  if (!options)
    return exitCode;
  return qlora::run::runTraining(*options);
}
