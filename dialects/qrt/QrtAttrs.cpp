//===- QrtAttrs.cpp - qrt enums and attributes ----------------------------===//
#include "dialects/qrt/QrtDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::qrt;

#include "dialects/qrt/QrtEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/qrt/QrtAttrs.cpp.inc"

void QrtDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/qrt/QrtAttrs.cpp.inc"
      >();
}
