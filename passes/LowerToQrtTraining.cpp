//===- LowerToQrtTraining.cpp - Loss and optimizer ops to qrt -------------===//
//
// The loss, its gradient and normaliser, gradient clipping and AdamW, one
// conversion pattern each, launching the kernels runtime/format/KernelAbi.h
// names. AdamW owns its moments: its pattern allocates them as `optimizer`
// buffers named after the parameter, and names the gradient it reads
// `<param>.grad`.
//
//===----------------------------------------------------------------------===//
#include "dialects/qlora/QloraDialect.h"
#include "passes/LowerToQrt.h"
#include "runtime/format/KernelAbi.h"

namespace mlir::qlora {

namespace kernels = ::qlora::kernels;
using qrt::BufferClass;

namespace {

/// batch seq vocab ignore_index has_normalizer of a causal-LM loss over
/// `logits: [B, S, V]`.
static KernelParams getCrossEntropyParams(Builder &builder,
                                          RankedTensorType logits,
                                          int64_t ignoreIndex,
                                          bool hasNormalizer) {
  KernelParams params(builder);
  params.addInt("batch", logits.getDimSize(0))
      .addInt("seq", logits.getDimSize(1))
      .addInt("vocab", logits.getDimSize(2))
      .addInt("ignore_index", ignoreIndex)
      .addInt("has_normalizer", hasNormalizer);
  return params;
}

/// `cross_entropy_fwd(logits, labels, [normalizer], loss)`.
struct CrossEntropyLowering : QrtConversionPattern<CrossEntropyOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(CrossEntropyOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Value loss = lowering.allocate(rewriter, op.getLoc(), op.getResult(),
                                   BufferClass::activation);
    SmallVector<Value> args = {adaptor.getLogits(), adaptor.getLabels()};
    if (adaptor.getNormalizer())
      args.push_back(adaptor.getNormalizer());
    args.push_back(loss);
    KernelParams params = getCrossEntropyParams(
        rewriter, op.getLogits().getType(), op.getIgnoreIndex(),
        op.getNormalizer() != nullptr);
    return lowering.replaceWithLaunch(rewriter, op, kernels::kCrossEntropyFwd,
                                      params, args, loss);
  }
};

/// `cross_entropy_bwd(logits, labels, dloss, [normalizer], dlogits)`.
struct CrossEntropyGradLowering : QrtConversionPattern<CrossEntropyGradOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(CrossEntropyGradOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Value dlogits = lowering.allocate(rewriter, op.getLoc(), op.getResult(),
                                      BufferClass::gradient);
    SmallVector<Value> args = {adaptor.getLogits(), adaptor.getLabels(),
                               adaptor.getGradLoss()};
    if (adaptor.getNormalizer())
      args.push_back(adaptor.getNormalizer());
    args.push_back(dlogits);
    KernelParams params = getCrossEntropyParams(
        rewriter, op.getLogits().getType(), op.getIgnoreIndex(),
        op.getNormalizer() != nullptr);
    return lowering.replaceWithLaunch(rewriter, op, kernels::kCrossEntropyBwd,
                                      params, args, dlogits);
  }
};

/// `count_targets(labels, count)` over `labels: [B, S]`.
struct CountTargetsLowering : QrtConversionPattern<CountTargetsOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(CountTargetsOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    RankedTensorType labels = op.getLabels().getType();
    if (labels.getRank() != 2)
      return op.emitOpError("labels must be [batch, seq], got ") << labels;
    Value count = lowering.allocate(rewriter, op.getLoc(), op.getResult(),
                                    BufferClass::activation);
    KernelParams params(rewriter);
    params.addInt("batch", labels.getDimSize(0))
        .addInt("seq", labels.getDimSize(1))
        .addInt("ignore_index", op.getIgnoreIndex());
    return lowering.replaceWithLaunch(rewriter, op, kernels::kCountTargets,
                                      params, {adaptor.getLabels(), count},
                                      count);
  }
};

/// `global_norm(g0, ..., g(k-1), norm)` with each gradient's element count.
struct GlobalNormLowering : QrtConversionPattern<GlobalNormOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(GlobalNormOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Value norm = lowering.allocateDerived(rewriter, op.getLoc(), op.getResult(),
                                          adaptor.getGrads());
    SmallVector<int64_t> sizes =
        llvm::map_to_vector(op.getGrads().getTypes(), [](Type type) {
          return cast<ShapedType>(type).getNumElements();
        });
    KernelParams params(rewriter);
    params.addInt("count", sizes.size()).addInts("sizes", sizes);
    SmallVector<Value> args(adaptor.getGrads());
    args.push_back(norm);
    return lowering.replaceWithLaunch(rewriter, op, kernels::kGlobalNorm,
                                      params, args, norm);
  }
};

/// `clip_coefficient(norm, max_norm, out)`.
struct ClipCoefficientLowering : QrtConversionPattern<ClipCoefficientOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(ClipCoefficientOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Value out = lowering.allocateDerived(rewriter, op.getLoc(), op.getResult(),
                                         adaptor.getOperands());
    return lowering.replaceWithLaunch(
        rewriter, op, kernels::kClipCoefficient, KernelParams(rewriter),
        {adaptor.getNorm(), adaptor.getMaxNorm(), out}, out);
  }
};

/// `adamw(p, g, m, v, grad_scale, lr, step, weight_decay)`: m and v are
/// zero-initialised `optimizer` buffers `<param>.exp_avg` and
/// `<param>.exp_avg_sq`; the gradient's buffer is named `<param>.grad`
/// (QrtLowering::nameBuffer).
struct AdamWLowering : QrtConversionPattern<AdamWOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(AdamWOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    // The verifier makes `param` a qlora.lora_param, which is a named lora
    // buffer by now.
    qrt::BufferOp param = getBufferOp(adaptor.getParam());
    if (!param || !param.getName())
      return rewriter.notifyMatchFailure(op, "param is not a named buffer");
    StringRef name = *param.getName();
    RankedTensorType type = op.getParam().getType();
    auto zeros = LoraInitAttr::get(rewriter.getContext(), LoraInit::zeros);
    auto moment = [&](StringRef suffix) {
      return lowering.createBuffer(rewriter, loc, type, BufferClass::optimizer,
                                   rewriter.getStringAttr(name + suffix),
                                   zeros);
    };
    Value m = moment(".exp_avg");
    Value v = moment(".exp_avg_sq");
    Value grad = lowering.nameBuffer(rewriter, loc, adaptor.getGrad(), type,
                                     BufferClass::gradient,
                                     rewriter.getStringAttr(name + ".grad"));
    KernelParams params(rewriter);
    params.addInt("n", type.getNumElements())
        .addFloat("beta1", op.getBeta1().convertToDouble())
        .addFloat("beta2", op.getBeta2().convertToDouble())
        .addFloat("epsilon", op.getEpsilon().convertToDouble());
    lowering.launch(rewriter, loc, kernels::kAdamW, params,
                    {adaptor.getParam(), grad, m, v, adaptor.getGradScale(),
                     adaptor.getLr(), adaptor.getStep(),
                     adaptor.getWeightDecay()});
    rewriter.eraseOp(op);
    return success();
  }
};

} // namespace

void populateLowerLossAndOptimizerToQrtPatterns(const TypeConverter &converter,
                                                QrtLowering &lowering,
                                                RewritePatternSet &patterns) {
  patterns
      .add<CrossEntropyLowering, CrossEntropyGradLowering, CountTargetsLowering,
           GlobalNormLowering, ClipCoefficientLowering, AdamWLowering>(
          converter, patterns.getContext(), lowering);
}

} // namespace mlir::qlora
