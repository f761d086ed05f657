//===- TrainBinWriter.h - A planned qrt module as a train.bin ---*- C++ -*-===//
//
// The last stage of qloracc (DESIGN.md "Pass pipeline", step 8): a module
// after `--qrt-plan-memory` becomes the plain C++ description that
// runtime/format's writer lays out as train.bin. Buffers, kernels and the
// `@train_step` program map one to one; every buffer `init` becomes a
// section (checkpoint tensors borrowed from their mmapped files, never
// copied), and so does every kernel image that --qrt-codegen-cuda attached
// (`cuda.images`, Kernel.images {arch, section}); the model, LoRA, optimizer
// and memory metadata come from the module's and the function's attributes.
//
// Errors are MLIR diagnostics on the offending op, naming the buffer, and
// for checkpoint tensors the file and key.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_COMPILER_TRAINBINWRITER_TRAINBINWRITER_H
#define QLORACC_COMPILER_TRAINBINWRITER_TRAINBINWRITER_H

#include "runtime/format/Safetensors.h"
#include "runtime/format/TrainBinWriter.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Support/LLVM.h"
#include "llvm/ADT/StringRef.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qloracc {

/// "qloracc <version>", the producer recorded in every train.bin.
llvm::StringRef getTrainBinProducer();

/// A train.bin ready to be written. Sections may borrow bytes from the
/// checkpoints held here and from the module's attributes (inline weights,
/// constants), so both must outlive the write.
struct TrainBinContents {
  ::qlora::format::TrainBinDesc desc;
  /// The safetensors files that sections borrow tensor bytes from.
  std::vector<std::unique_ptr<::qlora::format::SafetensorsFile>> checkpoints;
  /// Bytes borrowed from `checkpoints`, read when the file is written.
  uint64_t checkpointBytes = 0;
  /// Bytes of NF4 weights (one-buffer layout) written as sections.
  uint64_t nf4Bytes = 0;
};

struct TrainBinOptions {
  /// `qloracc --random-weights`: frozen weights without bytes (shape-only
  /// models) and kaiming-initialised LoRA matrices become fb::RandomInit
  /// draws that qlora-run makes at load time, so that a 70B-shaped
  /// train.bin holds no weights at all (for benchmarks).
  bool randomWeights = false;
};

/// Translates a module planned by `--qrt-plan-memory` into a train.bin
/// description. Emits an error on the offending op and fails when the
/// module is not planned, an op of `@train_step` has no train.bin
/// counterpart, or an initial value cannot be produced (a shape-only
/// weight, a missing or mismatching checkpoint tensor).
mlir::FailureOr<TrainBinContents>
translateToTrainBin(mlir::ModuleOp module, const TrainBinOptions &options = {});

/// The module's `qrt.memory_plan` (arena size, peak, bytes at the peak and
/// allocated per buffer class). Emits an error on the module and fails when
/// it is missing or malformed.
mlir::FailureOr<::qlora::format::TrainBinMemoryPlan>
readMemoryPlan(mlir::ModuleOp module);

} // namespace qloracc

#endif // QLORACC_COMPILER_TRAINBINWRITER_TRAINBINWRITER_H
