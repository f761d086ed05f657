//===- Importer.h - Model + LoRA configuration to a qlora graph -*- C++ -*-===//
#ifndef QLORACC_COMPILER_IMPORTER_IMPORTER_H
#define QLORACC_COMPILER_IMPORTER_IMPORTER_H

#include "compiler/Importer/GraphBuilder.h"
#include "compiler/Importer/LoraOptions.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/Support/Error.h"

#include <optional>
#include <string>

namespace qloracc::importer {

struct ImportRequest {
  /// A Hugging Face model directory, or empty when `preset` is set.
  std::string modelDirectory;
  std::string preset;
  /// Shape-only graph: no weight bytes (always so for the large presets).
  bool noWeights = false;
  LoraOptions lora;
  std::optional<int64_t> batch, seq;
  /// Overrides num_hidden_layers. Any positive count for a preset (the
  /// `tiny` preset draws weights for every layer); for a model directory at
  /// most config.json's count: the first N layers' weights are used and the
  /// checkpoint's other layers are ignored.
  std::optional<int64_t> numLayers;
  /// Seed of the `tiny` preset's random frozen weights.
  uint64_t weightSeed = 0;
};

/// Imports the model the request names. Every failure is one line naming
/// the file and key (or option) at fault.
llvm::Expected<mlir::OwningOpRef<mlir::ModuleOp>>
importModel(mlir::MLIRContext &context, const ImportRequest &request);

} // namespace qloracc::importer

#endif // QLORACC_COMPILER_IMPORTER_IMPORTER_H
