//===- QloraDialect.cpp - qlora dialect registration ----------------------===//
#include "dialects/qlora/QloraDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::qlora;

#include "dialects/qlora/QloraDialect.cpp.inc"

void QloraDialect::initialize() {
  registerAttributes();
  addOperations<
#define GET_OP_LIST
#include "dialects/qlora/QloraOps.cpp.inc"
      >();
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
  return op->emitError() << "unknown qlora attribute '"
                         << attr.getName().getValue() << "'; expected '"
                         << kModelAttrName << "' or '" << kLoraAttrName << "'";
}
