//===- LowerToQrtNf4.cpp - NF4 constants and dequantization to qrt --------===//
//
// An NF4 tensor is one `weight` buffer in runtime/format/Nf4Layout.h's
// layout. Its dequantization costs nothing where every consumer is a linear
// kernel that dequantizes its weight itself ([nf4] in KernelAbi.h): the
// nf4.dequantize result is then the NF4 buffer, and the linear patterns
// pass its block sizes (addLinearWeightParams). Anywhere else it is a
// `dequantize_nf4` launch into a float buffer.
//
//===----------------------------------------------------------------------===//
#include "passes/LowerToQrt.h"

#include "dialects/qlora/QloraDialect.h"
#include "runtime/format/KernelAbi.h"

namespace mlir::qlora {

namespace kernels = ::qlora::kernels;
using qrt::BufferClass;

namespace {

/// True when every use of `dequantize` is the weight of a linear kernel,
/// which dequantizes NF4 itself.
bool feedsOnlyLinearWeights(nf4::DequantizeOp dequantize) {
  return llvm::all_of(dequantize->getUses(), [](OpOperand &use) {
    Operation *user = use.getOwner();
    if (auto linear = dyn_cast<LinearOp>(user))
      return &use == &linear.getWeightMutable();
    if (auto grad = dyn_cast<LinearGradInputOp>(user))
      return &use == &grad.getWeightMutable();
    return false;
  });
}

/// The [nf4] parameters of an NF4 tensor dequantized to `element`.
void addNf4Params(KernelParams &params, nf4::Nf4TensorType type, Type element) {
  params.addInt("w_block_size", type.getBlockSize())
      .addInt("w_dq_block_size", type.getDqBlockSize())
      .addString("w_dequant_dtype", getDTypeName(element));
}

/// nf4.constant: a `weight` buffer whose init is the constant's pieces.
struct Nf4ConstantLowering : QrtConversionPattern<nf4::ConstantOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(nf4::ConstantOp op, OpAdaptor,
                  ConversionPatternRewriter &rewriter) const override {
    StringAttr name = op.getNameAttr();
    if (!name)
      name = lowering.getConstantName(rewriter);
    rewriter.replaceOp(op,
                       lowering.createBuffer(rewriter, op.getLoc(),
                                             op.getType(), BufferClass::weight,
                                             name, op.getValueDictionary()));
    return success();
  }
};

/// nf4.dequantize: the NF4 buffer itself when only linears read it, else
/// `dequantize_nf4` into a new buffer.
struct Nf4DequantizeLowering : QrtConversionPattern<nf4::DequantizeOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(nf4::DequantizeOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    if (feedsOnlyLinearWeights(op)) {
      rewriter.replaceOp(op, adaptor.getInput());
      return success();
    }
    Value out = lowering.allocateDerived(rewriter, op.getLoc(), op.getResult(),
                                         adaptor.getInput());
    KernelParams params(rewriter);
    params.addInt("n", op.getInput().getType().getNumElements());
    addNf4Params(params, op.getInput().getType(),
                 op.getType().getElementType());
    params.addString("to", getDTypeName(out));
    return lowering.replaceWithLaunch(rewriter, op, kernels::kDequantizeNf4,
                                      params, {adaptor.getInput(), out}, out);
  }
};

} // namespace

void addLinearWeightParams(KernelParams &params, Value weight,
                           Value weightBuffer) {
  if (auto dequantize = weight.getDefiningOp<nf4::DequantizeOp>()) {
    params.addString("w_dtype", kernels::kNf4WeightDType);
    addNf4Params(params, dequantize.getInput().getType(),
                 dequantize.getType().getElementType());
    return;
  }
  params.addString("w_dtype", getDTypeName(weightBuffer));
}

void populateLowerNf4ToQrtPatterns(const TypeConverter &converter,
                                   QrtLowering &lowering,
                                   RewritePatternSet &patterns) {
  patterns.add<Nf4ConstantLowering, Nf4DequantizeLowering>(
      converter, patterns.getContext(), lowering);
}

} // namespace mlir::qlora
