//===- QrtDialect.cpp - qrt dialect registration and types ----------------===//
#include "dialects/qrt/QrtDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::qrt;

#include "dialects/qrt/QrtDialect.cpp.inc"

#define GET_TYPEDEF_CLASSES
#include "dialects/qrt/QrtTypes.cpp.inc"

void QrtDialect::initialize() {
  registerAttributes();
  addTypes<
#define GET_TYPEDEF_LIST
#include "dialects/qrt/QrtTypes.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "dialects/qrt/QrtOps.cpp.inc"
      >();
}
