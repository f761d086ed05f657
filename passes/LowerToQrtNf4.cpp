//===- LowerToQrtNf4.cpp - NF4 constants and dequantization to qrt --------===//
//
// An NF4 tensor is one `weight` buffer in runtime/format/Nf4Layout.h's
// layout. Where every consumer is a linear kernel, the nf4.dequantize result
// is the NF4 buffer and each linear pattern decides (lowerLinearWeight):
// the kernel dequantizes its weight tiles itself ([nf4] in KernelAbi.h), or,
// with `nf4-gemm=dequantize`, a `dequantize_nf4` launch just before it
// fills a workspace that the kernel reads as a dense weight. Anywhere else
// the nf4.dequantize is a `dequantize_nf4` launch into a float buffer.
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

/// `dequantize_nf4(in, out)`: the NF4 tensor of type `type` in `in`
/// dequantized to `element` and stored in `out`.
void launchDequantizeNf4(QrtLowering &lowering, OpBuilder &builder,
                         Location loc, nf4::Nf4TensorType type, Type element,
                         Value in, Value out) {
  KernelParams params(builder);
  params.addInt("n", type.getNumElements());
  addNf4Params(params, type, element);
  params.addString("to", getDTypeName(out));
  lowering.launch(builder, loc, kernels::kDequantizeNf4, params, {in, out});
}

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
    launchDequantizeNf4(lowering, rewriter, op.getLoc(),
                        op.getInput().getType(), op.getType().getElementType(),
                        adaptor.getInput(), out);
    rewriter.replaceOp(op, out);
    return success();
  }
};

} // namespace

Value lowerLinearWeight(QrtLowering &lowering, OpBuilder &builder, Location loc,
                        KernelParams &params, Value weight,
                        Value weightBuffer) {
  auto dequantize = weight.getDefiningOp<nf4::DequantizeOp>();
  if (!dequantize) {
    params.addString("w_dtype", getDTypeName(weightBuffer));
    return weightBuffer;
  }
  nf4::Nf4TensorType type = dequantize.getInput().getType();
  Type element = dequantize.getType().getElementType();
  if (!lowering.dequantizeNf4Weights) {
    params.addString("w_dtype", kernels::kNf4WeightDType);
    addNf4Params(params, type, element);
    return weightBuffer;
  }
  Value dense = lowering.allocateWorkspace(builder, loc, dequantize.getType());
  launchDequantizeNf4(lowering, builder, loc, type, element, weightBuffer,
                      dense);
  params.addString("w_dtype", getDTypeName(dense));
  return dense;
}

void populateLowerNf4ToQrtPatterns(const TypeConverter &converter,
                                   QrtLowering &lowering,
                                   RewritePatternSet &patterns) {
  patterns.add<Nf4ConstantLowering, Nf4DequantizeLowering>(
      converter, patterns.getContext(), lowering);
}

} // namespace mlir::qlora
