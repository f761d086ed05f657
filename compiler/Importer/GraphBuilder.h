//===- GraphBuilder.h - The LLaMA forward and loss in qlora ops -*- C++ -*-===//
#ifndef QLORACC_COMPILER_IMPORTER_GRAPHBUILDER_H
#define QLORACC_COMPILER_IMPORTER_GRAPHBUILDER_H

#include "compiler/Importer/LoraOptions.h"
#include "compiler/Importer/ModelConfig.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/ADT/STLFunctionalExtras.h"

namespace qloracc::importer {

/// How a frozen tensor's bytes reach the graph: its stored element type and
/// either a `#qlora.source`, an inline value, or neither (shape only).
/// A weight stored in NF4 has a `quantized` type: `qlora.weight` then has
/// that `!nf4.tensor` type, and an `nf4.dequantize` to `elementType` feeds
/// the graph.
struct WeightBinding {
  mlir::Type elementType;
  mlir::Attribute source;    // qlora::SourceAttr or null
  mlir::ElementsAttr value;  // inline bytes or null
  mlir::Type quantized = {}; // nf4::Nf4TensorType or null
};

using WeightBinder =
    llvm::function_ref<WeightBinding(const FrozenTensor &tensor)>;

struct GraphShape {
  int64_t batch = 1;
  int64_t seq = 64;
};

/// Builds `func.func @loss(%tokens, %labels) -> f32`: the whole forward pass
/// of `config` with LoRA on `lora.targets`, and the causal-LM cross-entropy,
/// computing in f32. The module carries `qlora.model` and `qlora.lora`.
mlir::OwningOpRef<mlir::ModuleOp>
buildLossGraph(mlir::MLIRContext &context, const ModelConfig &config,
               const LoraOptions &lora, GraphShape shape, WeightBinder bind);

} // namespace qloracc::importer

#endif // QLORACC_COMPILER_IMPORTER_GRAPHBUILDER_H
