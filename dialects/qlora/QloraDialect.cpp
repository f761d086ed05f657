//===- QloraDialect.cpp - qlora dialect registration ----------------------===//
#include "dialects/qlora/QloraDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::qlora;

#include "dialects/qlora/QloraDialect.cpp.inc"

namespace mlir::qlora {
/// Gives nf4's ops the CostModelOpInterface (QloraCost.cpp).
void attachNf4CostModels(MLIRContext *context);
} // namespace mlir::qlora

void QloraDialect::initialize() {
  registerAttributes();
  addOperations<
#define GET_OP_LIST
#include "dialects/qlora/QloraOps.cpp.inc"
      >();
  attachNf4CostModels(getContext());
}

/// Checks that a discardable qlora attribute sits on a module and holds an
/// attribute of kind `AttrT`.
template <typename AttrT>
static LogicalResult verifyModuleAttr(Operation *op, NamedAttribute attr,
                                      StringRef expected) {
  if (!isa<ModuleOp>(op))
    return op->emitError() << "'" << attr.getName().getValue()
                           << "' belongs on the module, not on '"
                           << op->getName() << "'";
  if (!isa<AttrT>(attr.getValue()))
    return op->emitError() << "'" << attr.getName().getValue() << "' must be a "
                           << expected << ", got " << attr.getValue();
  return success();
}

LogicalResult QloraDialect::verifyOperationAttribute(Operation *op,
                                                     NamedAttribute attr) {
  if (attr.getName().getValue() == kModelAttrName)
    return verifyModuleAttr<ModelConfigAttr>(op, attr, "#qlora.model_config");
  if (attr.getName().getValue() == kLoraAttrName)
    return verifyModuleAttr<LoraConfigAttr>(op, attr, "#qlora.lora_config");
  // The training step's own attributes (--qlora-build-training-step).
  StringRef name = attr.getName().getValue();
  if (name == kGradAccumAttrName) {
    auto value = dyn_cast<IntegerAttr>(attr.getValue());
    if (!value || value.getInt() < 1)
      return op->emitError()
             << "'" << name << "' must be a positive integer, got "
             << attr.getValue();
    return success();
  }
  if (name == kOptimizerAttrName) {
    if (!isa<DictionaryAttr>(attr.getValue()))
      return op->emitError()
             << "'" << name << "' must be a dictionary of AdamW settings, got "
             << attr.getValue();
    return success();
  }
  if (name == kInputAttrName || name == kOutputAttrName)
    return success();
  if (name == kRecomputeAttrName) {
    if (!isa<UnitAttr>(attr.getValue()))
      return op->emitError() << "'" << name << "' must be a unit attribute";
    return success();
  }
  return op->emitError() << "unknown qlora attribute '" << name
                         << "'; expected '" << kModelAttrName << "', '"
                         << kLoraAttrName << "', '" << kGradAccumAttrName
                         << "', '" << kOptimizerAttrName << "' or '"
                         << kRecomputeAttrName << "'";
}
