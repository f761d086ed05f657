//===- InitQloracc.h - One registration for every tool ----------*- C++ -*-===//
//
// qlora-opt and qloracc see the same dialects and passes: both call these.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_COMPILER_REGISTRATION_INITQLORACC_H
#define QLORACC_COMPILER_REGISTRATION_INITQLORACC_H

namespace mlir {
class DialectRegistry;
} // namespace mlir

namespace qloracc {

/// Our dialects plus the upstream ones our IR uses (builtin, func, arith,
/// tensor).
void registerQloraccDialects(mlir::DialectRegistry &registry);

/// Our passes plus the upstream transforms pass authors combine them with
/// (canonicalize, cse, ...).
void registerQloraccPasses();

} // namespace qloracc

#endif // QLORACC_COMPILER_REGISTRATION_INITQLORACC_H
