//===- Nf4Dialect.cpp - nf4 dialect registration --------------------------===//
#include "dialects/nf4/Nf4Dialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"

using namespace mlir;
using namespace mlir::nf4;

#include "dialects/nf4/Nf4Dialect.cpp.inc"

void Nf4Dialect::initialize() {
  registerTypes();
  addOperations<
#define GET_OP_LIST
#include "dialects/nf4/Nf4Ops.cpp.inc"
      >();
}

/// Rebuilds an `nf4.constant` from its folded value, so that the folder can
/// move and deduplicate NF4 constants like any other constant.
Operation *Nf4Dialect::materializeConstant(OpBuilder &builder, Attribute value,
                                           Type type, Location loc) {
  auto nf4Type = dyn_cast<Nf4TensorType>(type);
  if (!nf4Type || !ConstantOp::isValueDictionary(value))
    return nullptr;
  return ConstantOp::createFromValueDictionary(
      builder, loc, cast<DictionaryAttr>(value), nf4Type);
}
