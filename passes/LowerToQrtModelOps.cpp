//===- LowerToQrtModelOps.cpp - Parameters and model ops to qrt -----------===//
//
// One conversion pattern per op: parameters become persistent buffers, each
// model op and its vector-Jacobian product a launch of the kernel that
// runtime/format/KernelAbi.h names, with its buffer arguments in the ABI's
// order and its shapes as parameters. Reshapes and casts that keep the
// stored type allocate nothing.
//
//===----------------------------------------------------------------------===//
#include "dialects/qlora/QloraDialect.h"
#include "passes/LowerToQrt.h"
#include "runtime/format/KernelAbi.h"

#include "mlir/IR/TypeUtilities.h"

#include <cmath>

namespace mlir::qlora {

namespace kernels = ::qlora::kernels;
using qrt::BufferClass;

namespace {

//===----------------------------------------------------------------------===//
// Parameters
//===----------------------------------------------------------------------===//

/// A frozen weight is a `weight` buffer in its own dtype, initialised from
/// its safetensors source or its inline elements (none when shape-only).
struct WeightLowering : QrtConversionPattern<WeightOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(WeightOp op, OpAdaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Attribute init = op.getSourceAttr();
    if (!init)
      init = op.getValueAttr();
    // A shape-only weight (a shape-only preset) still gets its buffer, so
    // that its memory is planned and reported; the train.bin writer refuses
    // a weight without bytes.
    rewriter.replaceOp(
        op, lowering.createBuffer(rewriter, op.getLoc(), op.getType(),
                                  BufferClass::weight, op.getNameAttr(), init));
    return success();
  }
};

/// A LoRA matrix is a `lora` buffer with its init and seed.
struct LoraParamLowering : QrtConversionPattern<LoraParamOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(LoraParamOp op, OpAdaptor,
                  ConversionPatternRewriter &rewriter) const override {
    rewriter.replaceOp(
        op, lowering.createBuffer(rewriter, op.getLoc(), op.getType(),
                                  BufferClass::lora, op.getNameAttr(),
                                  op.getInitAttr(), op.getSeedAttr()));
    return success();
  }
};

//===----------------------------------------------------------------------===//
// Views: reshape and casts that keep the stored type
//===----------------------------------------------------------------------===//

/// A reshape is the same bytes: its result is its input's buffer.
struct ReshapeLowering : QrtConversionPattern<ReshapeOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(ReshapeOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    rewriter.replaceOp(op, adaptor.getInput());
    return success();
  }
};

/// A cast is free when its input is already stored in the type its result
/// would be stored in (bf16 → f32 activations on the f32 CPU backend);
/// otherwise a `cast` launch converts the stored bytes.
struct CastLowering : QrtConversionPattern<CastOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(CastOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Value input = adaptor.getInput();
    BufferClass bufferClass = QrtLowering::getDerivedClass(input);
    Type stored = lowering.getStoredType(op.getType(), bufferClass);
    if (getElementTypeOrSelf(stored) == getStoredElementType(input)) {
      rewriter.replaceOp(op, input);
      return success();
    }
    Value out =
        lowering.createBuffer(rewriter, op.getLoc(), stored, bufferClass);
    KernelParams params(rewriter);
    params.addInt("n", op.getType().getNumElements())
        .addString("from", getDTypeName(input))
        .addString("to", getDTypeName(out));
    return lowering.replaceWithLaunch(rewriter, op, kernels::kCast, params,
                                      {input, out}, out);
  }
};

//===----------------------------------------------------------------------===//
// Embedding and RMSNorm
//===----------------------------------------------------------------------===//

struct EmbeddingLowering : QrtConversionPattern<EmbeddingOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(EmbeddingOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    RankedTensorType table = op.getTable().getType();
    Value out = lowering.allocate(rewriter, op.getLoc(), op.getResult(),
                                  BufferClass::activation);
    KernelParams params(rewriter);
    params.addInt("rows", op.getTokens().getType().getNumElements())
        .addInt("vocab", table.getDimSize(0))
        .addInt("hidden", table.getDimSize(1))
        .addString("w_dtype", getDTypeName(adaptor.getTable()));
    return lowering.replaceWithLaunch(
        rewriter, op, kernels::kEmbeddingFwd, params,
        {adaptor.getTable(), adaptor.getTokens(), out}, out);
  }
};

/// rows, hidden, eps and w_dtype of an RMSNorm over `input`'s last dim.
static KernelParams getRmsNormParams(Builder &builder, RankedTensorType input,
                                     APFloat eps, Value weight) {
  KernelParams params(builder);
  params.addInt("rows", getRows(input))
      .addInt("hidden", input.getShape().back())
      .addFloat("eps", eps.convertToDouble())
      .addString("w_dtype", getDTypeName(weight));
  return params;
}

struct RmsNormLowering : QrtConversionPattern<RmsNormOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(RmsNormOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Value y = lowering.allocateDerived(rewriter, op.getLoc(), op.getResult(),
                                       adaptor.getInput());
    KernelParams params = getRmsNormParams(rewriter, op.getInput().getType(),
                                           op.getEps(), adaptor.getWeight());
    return lowering.replaceWithLaunch(
        rewriter, op, kernels::kRmsNormFwd, params,
        {adaptor.getInput(), adaptor.getWeight(), y}, y);
  }
};

struct RmsNormGradLowering : QrtConversionPattern<RmsNormGradOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(RmsNormGradOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Value dx = lowering.allocate(rewriter, op.getLoc(), op.getResult(),
                                 BufferClass::gradient);
    KernelParams params = getRmsNormParams(rewriter, op.getInput().getType(),
                                           op.getEps(), adaptor.getWeight());
    params.addInt("accumulate", 0);
    return lowering.replaceWithLaunch(
        rewriter, op, kernels::kRmsNormBwd, params,
        {adaptor.getGradOutput(), adaptor.getInput(), adaptor.getWeight(), dx},
        dx);
  }
};

//===----------------------------------------------------------------------===//
// Linear with LoRA: forward, input gradient, LoRA gradients
//===----------------------------------------------------------------------===//

/// rows in out rank scaling of a linear with weight [out, in] over `rows`
/// tokens; rank 0 without LoRA.
static KernelParams getLinearParams(Builder &builder, int64_t rows,
                                    RankedTensorType weight, Value loraA,
                                    APFloat scaling) {
  int64_t rank =
      loraA ? cast<RankedTensorType>(loraA.getType()).getDimSize(0) : 0;
  KernelParams params(builder);
  params.addInt("rows", rows)
      .addInt("in", weight.getDimSize(1))
      .addInt("out", weight.getDimSize(0))
      .addInt("rank", rank)
      .addFloat("scaling", scaling.convertToDouble());
  return params;
}

/// With LoRA dropout above 0: the `dropout`, `dropout_stream` and
/// `dropout_seed` (lora_a's seed) parameters, and the `step` io buffer as the
/// launch's last argument, from which the kernel recomputes the mask.
/// checkDropout has made sure all of them exist.
static void addDropout(QrtLowering &lowering, KernelParams &params,
                       SmallVectorImpl<Value> &args, APFloat dropout,
                       StringAttr stream, Value loraABuffer) {
  double p = dropout.convertToDouble();
  if (p == 0)
    return;
  IntegerAttr seed = getBufferOp(loraABuffer).getSeedAttr();
  params.addFloat("dropout", p)
      .addString("dropout_stream", stream.getValue())
      .addInt("dropout_seed", seed ? seed.getInt() : 0);
  args.push_back(lowering.stepBuffer);
}

/// The [rows, rank] scratch of a LoRA kernel (x·Aᵀ or dy·B).
static Value allocateLoraWorkspace(QrtLowering &lowering, OpBuilder &builder,
                                   Location loc, int64_t rows, Value loraA) {
  auto a = cast<RankedTensorType>(loraA.getType());
  return lowering.allocateWorkspace(
      builder, loc,
      RankedTensorType::get({rows, a.getDimSize(0)}, a.getElementType()));
}

/// The two kernels shaped like a linear, `kernel(x, w, [a, b, ws], out
/// [, step])` over the rows of `x`: the forward `linear_fwd` (x, y, t_ws =
/// dropout(x)·Aᵀ) and `linear_grad_input` (dy, dx, dt_ws = dy·B, plus
/// `accumulate`). `OpTy`'s first operand is x or dy. The workspace keeps its
/// product for the lora_grad of the same linear, which reads it.
template <typename OpTy>
struct LinearShapedLowering : QrtConversionPattern<OpTy> {
  LinearShapedLowering(const TypeConverter &converter, MLIRContext *context,
                       QrtLowering &lowering, std::string_view kernel,
                       bool backward)
      : QrtConversionPattern<OpTy>(converter, context, lowering),
        kernel(kernel), backward(backward) {}

  LogicalResult
  matchAndRewrite(OpTy op, typename OpTy::Adaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value xBuffer = adaptor.getOperands().front();
    int64_t rows = getRows(cast<ShapedType>(op->getOperand(0).getType()));
    QrtLowering &lowering = this->lowering;
    Value out = backward ? lowering.allocate(rewriter, loc, op.getResult(),
                                             BufferClass::gradient)
                         : lowering.allocateDerived(rewriter, loc,
                                                    op.getResult(), xBuffer);
    KernelParams params =
        getLinearParams(rewriter, rows, op.getWeight().getType(), op.getLoraA(),
                        op.getScaling());
    SmallVector<Value> args = {
        xBuffer, lowerLinearWeight(lowering, rewriter, loc, params,
                                   op.getWeight(), adaptor.getWeight())};
    if (op.getLoraA()) {
      Value product =
          allocateLoraWorkspace(lowering, rewriter, loc, rows, op.getLoraA());
      lowering.recordLoraProduct(
          xBuffer, backward ? adaptor.getLoraB() : adaptor.getLoraA(), product);
      args.append({adaptor.getLoraA(), adaptor.getLoraB(), product});
    }
    args.push_back(out);
    if (backward)
      params.addInt("accumulate", 0);
    if (op.getLoraA())
      addDropout(lowering, params, args, op.getDropout(),
                 op.getDropoutStreamAttr(), adaptor.getLoraA());
    return lowering.replaceWithLaunch(rewriter, op, kernel, params, args, out);
  }

  StringRef kernel;
  bool backward;
};

/// dA, dB: `lora_grad(dy, x, a, b, t_ws, dt_ws, da, db[, step])`. The kernel
/// reads t_ws = dropout(x)·Aᵀ and dt_ws = dy·B (the CPU backend does not
/// recompute them): the workspaces the linear_fwd and linear_grad_input of the
/// same linear filled, kept live until here. Where no such launch exists (the
/// input gradient of the lowest LoRA linears is not needed), a rank-0
/// linear_fwd (x·Aᵀ) or linear_grad_input (dy·B) computes the product first.
/// The gradients are stored in the LoRA matrices' own type (f32), as AdamW
/// reads them. With dropout, t_ws must come from the linear_fwd: only it
/// applies the mask.
struct LoraGradLowering : QrtConversionPattern<LoraGradOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(LoraGradOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    int64_t rows = getRows(op.getGradOutput().getType());
    RankedTensorType a = op.getLoraA().getType(), b = op.getLoraB().getType();
    bool dropout = op.getDropout().convertToDouble() > 0;
    // A rank-0 linear_fwd would compute x·Aᵀ without the mask.
    if (dropout &&
        !lowering.lookupLoraProduct(adaptor.getInput(), adaptor.getLoraA()))
      return op.emitOpError("has LoRA dropout but no linear_fwd of the same "
                            "linear left dropout(x)·Aᵀ to read");
    Value tWs = getProduct(rewriter, loc, kernels::kLinearFwd, rows,
                           adaptor.getInput(), adaptor.getLoraA(), a,
                           /*backward=*/false);
    Value dtWs = getProduct(rewriter, loc, kernels::kLinearGradInput, rows,
                            adaptor.getGradOutput(), adaptor.getLoraB(), b,
                            /*backward=*/true);
    Value da = lowering.createBuffer(rewriter, loc, op.getGradA().getType(),
                                     BufferClass::gradient);
    Value db = lowering.createBuffer(rewriter, loc, op.getGradB().getType(),
                                     BufferClass::gradient);
    auto weight = RankedTensorType::get({b.getDimSize(0), a.getDimSize(1)},
                                        b.getElementType());
    KernelParams params =
        getLinearParams(rewriter, rows, weight, op.getLoraA(), op.getScaling());
    params.addInt("accumulate", 0);
    SmallVector<Value> args = {adaptor.getGradOutput(),
                               adaptor.getInput(),
                               adaptor.getLoraA(),
                               adaptor.getLoraB(),
                               tWs,
                               dtWs,
                               da,
                               db};
    addDropout(lowering, params, args, op.getDropout(),
               op.getDropoutStreamAttr(), adaptor.getLoraA());
    return lowering.replaceWithLaunch(rewriter, op, kernels::kLoraGrad, params,
                                      args, {da, db});
  }

  /// The recorded product of `lhs` with `matrix` (A: [r, in] or B:
  /// [out, r], of type `matrixType`), or a new workspace that a rank-0
  /// launch of `kernel` with `matrix` as its weight fills: linear_fwd gives
  /// lhs·Aᵀ, linear_grad_input lhs·B.
  Value getProduct(ConversionPatternRewriter &rewriter, Location loc,
                   StringRef kernel, int64_t rows, Value lhs, Value matrix,
                   RankedTensorType matrixType, bool backward) const {
    if (Value product = lowering.lookupLoraProduct(lhs, matrix))
      return product;
    int64_t rank =
        backward ? matrixType.getDimSize(1) : matrixType.getDimSize(0);
    Value product = lowering.allocateWorkspace(
        rewriter, loc,
        RankedTensorType::get({rows, rank}, matrixType.getElementType()));
    KernelParams params(rewriter);
    params.addInt("rows", rows)
        .addInt("in", matrixType.getDimSize(1))
        .addInt("out", matrixType.getDimSize(0))
        .addInt("rank", 0)
        .addFloat("scaling", 1.0)
        .addString("w_dtype", getDTypeName(matrix));
    if (backward)
      params.addInt("accumulate", 0);
    lowering.launch(rewriter, loc, kernel, params, {lhs, matrix, product});
    lowering.recordLoraProduct(lhs, matrix, product);
    return product;
  }
};

//===----------------------------------------------------------------------===//
// RoPE and attention
//===----------------------------------------------------------------------===//

/// The `rope` kernel's parameters for `x: [B, S, N, D]`; `inverse` applies
/// the transposed rotation (the VJP).
static KernelParams getRopeParams(Builder &builder, RankedTensorType x,
                                  APFloat theta, RopeScalingAttr scaling,
                                  bool inverse) {
  KernelParams params(builder);
  params.addInt("batch", x.getDimSize(0))
      .addInt("seq", x.getDimSize(1))
      .addInt("heads", x.getDimSize(2))
      .addInt("head_dim", x.getDimSize(3))
      .addFloat("theta", theta.convertToDouble())
      .addInt("inverse", inverse)
      .addString("rope_type", scaling ? "llama3" : "default");
  if (scaling)
    params.addFloat("factor", scaling.getFactor().convertToDouble())
        .addFloat("low_freq_factor",
                  scaling.getLowFreqFactor().convertToDouble())
        .addFloat("high_freq_factor",
                  scaling.getHighFreqFactor().convertToDouble())
        .addInt("original_max_position",
                scaling.getOriginalMaxPositionEmbeddings());
  return params;
}

/// `rope(x, y)` and its VJP, the same kernel with `inverse` = 1 (the
/// transposed rotation): both ops take one tensor and theta/scaling.
template <typename OpTy> struct RopeLowering : QrtConversionPattern<OpTy> {
  RopeLowering(const TypeConverter &converter, MLIRContext *context,
               QrtLowering &lowering, bool inverse)
      : QrtConversionPattern<OpTy>(converter, context, lowering),
        inverse(inverse) {}

  LogicalResult
  matchAndRewrite(OpTy op, typename OpTy::Adaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Value x = adaptor.getOperands().front();
    Value y =
        inverse ? this->lowering.allocate(rewriter, op.getLoc(), op.getResult(),
                                          BufferClass::gradient)
                : this->lowering.allocateDerived(rewriter, op.getLoc(),
                                                 op.getResult(), x);
    KernelParams params = getRopeParams(
        rewriter, cast<RankedTensorType>(op->getOperand(0).getType()),
        op.getTheta(), op.getScalingAttr(), inverse);
    return this->lowering.replaceWithLaunch(rewriter, op, kernels::kRope,
                                            params, {x, y}, y);
  }

  bool inverse;
};

/// batch seq heads kv_heads head_dim scale causal of attention over
/// `query: [B, S, Hq, D]` and `key: [B, S, Hkv, D]`.
static KernelParams getAttentionParams(Builder &builder, RankedTensorType query,
                                       RankedTensorType key, double scale,
                                       bool causal) {
  KernelParams params(builder);
  params.addInt("batch", query.getDimSize(0))
      .addInt("seq", query.getDimSize(1))
      .addInt("heads", query.getDimSize(2))
      .addInt("kv_heads", key.getDimSize(2))
      .addInt("head_dim", query.getDimSize(3))
      .addFloat("scale", scale)
      .addInt("causal", causal);
  return params;
}

struct AttentionLowering : QrtConversionPattern<AttentionOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(AttentionOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Value o = lowering.allocateDerived(rewriter, op.getLoc(), op.getResult(),
                                       adaptor.getOperands());
    KernelParams params = getAttentionParams(
        rewriter, op.getQuery().getType(), op.getKey().getType(),
        op.getEffectiveScale(), op.getCausal());
    return lowering.replaceWithLaunch(
        rewriter, op, kernels::kAttentionFwd, params,
        {adaptor.getQuery(), adaptor.getKey(), adaptor.getValue(), o}, o);
  }
};

struct AttentionGradLowering : QrtConversionPattern<AttentionGradOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(AttentionGradOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    SmallVector<Value> grads;
    for (Value result : op.getResults())
      grads.push_back(
          lowering.allocate(rewriter, loc, result, BufferClass::gradient));
    KernelParams params = getAttentionParams(
        rewriter, op.getQuery().getType(), op.getKey().getType(),
        op.getEffectiveScale(), op.getCausal());
    params.addInt("accumulate", 0);
    SmallVector<Value> args = {adaptor.getGradOutput(), adaptor.getQuery(),
                               adaptor.getKey(), adaptor.getValue(),
                               adaptor.getOutput()};
    args.append(grads);
    return lowering.replaceWithLaunch(rewriter, op, kernels::kAttentionBwd,
                                      params, args, grads);
  }
};

//===----------------------------------------------------------------------===//
// Elementwise: silu, add, mul
//===----------------------------------------------------------------------===//

/// `kernel(inputs..., y)` with `n` elements; the result is stored like its
/// inputs.
template <typename OpTy>
struct ElementwiseLowering : QrtConversionPattern<OpTy> {
  ElementwiseLowering(const TypeConverter &converter, MLIRContext *context,
                      QrtLowering &lowering, std::string_view kernel)
      : QrtConversionPattern<OpTy>(converter, context, lowering),
        kernel(kernel) {}

  LogicalResult
  matchAndRewrite(OpTy op, typename OpTy::Adaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    ValueRange inputs = adaptor.getOperands();
    Value y = this->lowering.allocateElementwise(rewriter, op.getLoc(),
                                                 op.getResult(), inputs);
    KernelParams params(rewriter);
    params.addInt("n", op.getType().getNumElements())
        .addString("dtype", getDTypeName(y));
    SmallVector<Value> args(inputs);
    args.push_back(y);
    return this->lowering.replaceWithLaunch(rewriter, op, kernel, params, args,
                                            y);
  }

  StringRef kernel;
};

struct SiluGradLowering : QrtConversionPattern<SiluGradOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(SiluGradOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Value dx = lowering.allocate(rewriter, op.getLoc(), op.getResult(),
                                 BufferClass::gradient);
    KernelParams params(rewriter);
    params.addInt("n", op.getType().getNumElements())
        .addString("dtype", getDTypeName(dx))
        .addInt("accumulate", 0);
    return lowering.replaceWithLaunch(
        rewriter, op, kernels::kSiluBwd, params,
        {adaptor.getGradOutput(), adaptor.getInput(), dx}, dx);
  }
};

} // namespace

void populateLowerModelOpsToQrtPatterns(const TypeConverter &converter,
                                        QrtLowering &lowering,
                                        RewritePatternSet &patterns) {
  MLIRContext *context = patterns.getContext();
  patterns.add<WeightLowering, LoraParamLowering, ReshapeLowering, CastLowering,
               EmbeddingLowering, RmsNormLowering, RmsNormGradLowering,
               LoraGradLowering, AttentionLowering, AttentionGradLowering,
               SiluGradLowering>(converter, context, lowering);
  patterns.add<LinearShapedLowering<LinearOp>>(
      converter, context, lowering, kernels::kLinearFwd, /*backward=*/false);
  patterns.add<LinearShapedLowering<LinearGradInputOp>>(
      converter, context, lowering, kernels::kLinearGradInput,
      /*backward=*/true);
  patterns.add<RopeLowering<RopeOp>>(converter, context, lowering,
                                     /*inverse=*/false);
  patterns.add<RopeLowering<RopeGradOp>>(converter, context, lowering,
                                         /*inverse=*/true);
  patterns.add<ElementwiseLowering<SiluOp>>(converter, context, lowering,
                                            kernels::kSiluFwd);
  patterns.add<ElementwiseLowering<AddOp>>(converter, context, lowering,
                                           kernels::kAdd);
  patterns.add<ElementwiseLowering<MulOp>>(converter, context, lowering,
                                           kernels::kMul);
}

} // namespace mlir::qlora
