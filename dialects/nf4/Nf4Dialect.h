//===- Nf4Dialect.h - The nf4 dialect ---------------------------*- C++ -*-===//
#ifndef QLORACC_DIALECTS_NF4_NF4DIALECT_H
#define QLORACC_DIALECTS_NF4_NF4DIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/nf4/Nf4Dialect.h.inc"

#define GET_TYPEDEF_CLASSES
#include "dialects/nf4/Nf4Types.h.inc"

#define GET_OP_CLASSES
#include "dialects/nf4/Nf4Ops.h.inc"

#endif // QLORACC_DIALECTS_NF4_NF4DIALECT_H
