//===- qlora-opt.cpp - Run any qloracc pass on MLIR -----------------------===//
//
// The pass authors' driver: every qloracc dialect and pass, plus the upstream
// ones our IR uses, under MLIR's standard opt interface (lit tests use it).
//
//===----------------------------------------------------------------------===//
#include "compiler/Registration/InitQloracc.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  qloracc::registerQloraccDialects(registry);
  qloracc::registerQloraccPasses();
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "qloracc optimizer driver\n", registry));
}
