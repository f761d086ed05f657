//===- InitQloracc.cpp - One registration for every tool ------------------===//
#include "compiler/Registration/InitQloracc.h"

#include "compiler/Pipeline/Pipeline.h"
#include "dialects/nf4/Nf4Dialect.h"
#include "dialects/qlora/QloraDialect.h"
#include "dialects/qrt/QrtDialect.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Transforms/Passes.h"

void qloracc::registerQloraccDialects(mlir::DialectRegistry &registry) {
  registry.insert<mlir::qlora::QloraDialect, mlir::nf4::Nf4Dialect,
                  mlir::qrt::QrtDialect, mlir::arith::ArithDialect,
                  mlir::func::FuncDialect, mlir::tensor::TensorDialect>();
}

void qloracc::registerQloraccPasses() {
  mlir::registerTransformsPasses();
  mlir::qlora::registerQloraccPasses();
  // The checks qloracc runs between stages, so that lit tests and crash
  // reproducers can name them too.
  registerPipelineVerifierPasses();
}
