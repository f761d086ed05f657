//===- BuildTrainingStep.cpp - --qlora-build-training-step ----------------===//
//
// Builds @train_step around @loss: hoisted parameters, one forward and
// backward pass per micro-batch (Autodiff does the backward), gradient
// accumulation, global-norm clipping and AdamW.
//
//===----------------------------------------------------------------------===//
#include "passes/Autodiff.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/ScopeExit.h"

namespace mlir::qlora {
#define GEN_PASS_DEF_QLORABUILDTRAININGSTEPPASS
#include "passes/Passes.h.inc"

namespace {

constexpr StringLiteral kLossName = "loss";
constexpr StringLiteral kTrainStepName = "train_step";
constexpr StringLiteral kInputAttr = "qlora.input";
constexpr StringLiteral kOutputAttr = "qlora.output";
constexpr StringLiteral kGradAccumAttr = "qlora.grad_accum";
constexpr StringLiteral kOptimizerAttr = "qlora.optimizer";
/// @train_step's arguments and results, named by qlora.input/qlora.output.
constexpr StringLiteral kInputNames[] = {
    "tokens", "labels", "lr", "step", "weight_decay", "max_grad_norm"};
constexpr StringLiteral kOutputNames[] = {"loss", "grad_norm"};

/// @loss taken apart: its parameters, the rest of its body (the forward
/// graph) and its loss.
struct LossFunction {
  func::FuncOp func;
  RankedTensorType tokensType, labelsType;
  /// qlora.weight and qlora.lora_param, in program order.
  SmallVector<Operation *> paramOps;
  SmallVector<LoraParamOp> loraParams;
  /// Every other op but the terminator, in program order.
  SmallVector<Operation *> forwardOps;
  Value loss;
};

/// Checks that `func` is a @loss we can build a training step from.
FailureOr<LossFunction> analyzeLoss(func::FuncOp func) {
  LossFunction loss;
  loss.func = func;
  if (func.isExternal() || !func.getBody().hasOneBlock())
    return func.emitOpError("@loss must have a body of one block");
  FunctionType type = func.getFunctionType();
  if (type.getNumResults() != 1 || !type.getResult(0).isF32())
    return func.emitOpError("@loss must return one f32 (the loss), got ")
           << type.getResults();
  if (type.getNumInputs() == 2) {
    loss.tokensType = dyn_cast<RankedTensorType>(type.getInput(0));
    loss.labelsType = dyn_cast<RankedTensorType>(type.getInput(1));
  }
  auto isBatch = [](RankedTensorType t) {
    return t && t.hasStaticShape() && t.getRank() >= 1 &&
           t.getElementType().isSignlessInteger();
  };
  if (!isBatch(loss.tokensType) || !isBatch(loss.labelsType) ||
      loss.tokensType.getDimSize(0) != loss.labelsType.getDimSize(0))
    return func.emitOpError("@loss must take (tokens, labels) as two static "
                            "integer tensors with the same number of rows, "
                            "got ")
           << type.getInputs();

  for (Operation &op : func.getBody().front().without_terminator()) {
    if (isa<WeightOp, LoraParamOp>(op))
      loss.paramOps.push_back(&op);
    else
      loss.forwardOps.push_back(&op);
    if (auto param = dyn_cast<LoraParamOp>(op))
      loss.loraParams.push_back(param);
  }
  loss.loss = func.getBody().front().getTerminator()->getOperand(0);
  return loss;
}

/// The LoRA parameters that reach the loss. Warns about the others (they
/// get neither a gradient nor an update, as in torch) and fails when none
/// is left.
FailureOr<SmallVector<LoraParamOp>> trainableParams(LossFunction &loss) {
  if (loss.loraParams.empty())
    return loss.func.emitOpError("has no qlora.lora_param: nothing to train");
  auto values = llvm::map_to_vector(
      loss.loraParams, [](LoraParamOp param) -> Value { return param; });
  Autodiff autodiff(loss.forwardOps, values, loss.loss);
  SmallVector<LoraParamOp> trainable;
  for (LoraParamOp param : loss.loraParams) {
    if (autodiff.reachesLoss(param))
      trainable.push_back(param);
    else
      param.emitWarning("'")
          << param.getName()
          << "' does not reach the loss: it gets no gradient and no update";
  }
  if (trainable.empty())
    return loss.func.emitOpError(
        "has no qlora.lora_param that reaches the loss: nothing to train");
  return trainable;
}

/// Names the dropout mask stream of a LoRA linear with dropout in
/// micro-batch `microBatch`: "<lora_A's name>#<microBatch>", unique per LoRA
/// module and micro-batch (the step is part of the draw index, so each
/// optimizer step gets a fresh mask). Its gradients inherit the stream.
LogicalResult setDropoutStream(LinearOp linear, int64_t microBatch) {
  if (!linear.hasLora() || linear.getDropout().convertToDouble() == 0)
    return success();
  auto loraA = linear.getLoraA().getDefiningOp<LoraParamOp>();
  if (!loraA)
    return linear.emitOpError("with LoRA dropout needs its lora_a to be a "
                              "qlora.lora_param, whose name keys the dropout "
                              "mask");
  linear.setDropoutStreamAttr(StringAttr::get(
      linear.getContext(), loraA.getName() + "#" + Twine(microBatch)));
  return success();
}

struct BuildTrainingStepPass
    : impl::QloraBuildTrainingStepPassBase<BuildTrainingStepPass> {
  using Base::Base;

  void runOnOperation() override;

private:
  LogicalResult verifyOptions(Location loc);
  func::FuncOp createTrainStep(OpBuilder &builder, LossFunction &loss);
  FailureOr<func::FuncOp> buildTrainStep(LossFunction &loss,
                                         ArrayRef<LoraParamOp> trainable);
};

LogicalResult BuildTrainingStepPass::verifyOptions(Location loc) {
  if (gradAccum < 1)
    return emitError(loc, "grad-accum must be at least 1, got ")
           << int64_t(gradAccum);
  for (auto [name, beta] :
       {std::pair{"beta1", double(beta1)}, std::pair{"beta2", double(beta2)}})
    if (!(beta >= 0 && beta < 1))
      return emitError(loc) << name << " must be in [0, 1), got " << beta;
  if (!(epsilon > 0))
    return emitError(loc, "epsilon must be positive, got ") << double(epsilon);
  if (!(weightDecay >= 0))
    return emitError(loc, "weight-decay must be non-negative, got ")
           << double(weightDecay);
  if (!(maxGradNorm >= 0))
    return emitError(loc, "max-grad-norm must be non-negative (0 disables "
                          "clipping), got ")
           << double(maxGradNorm);
  return success();
}

/// The empty @train_step: signature, input/output names and the
/// hyper-parameters fixed at compile time.
func::FuncOp BuildTrainingStepPass::createTrainStep(OpBuilder &builder,
                                                    LossFunction &loss) {
  MLIRContext *ctx = builder.getContext();
  auto rows = [&](RankedTensorType type) {
    SmallVector<int64_t> shape(type.getShape());
    shape[0] *= gradAccum;
    return type.clone(shape);
  };
  Type f32 = builder.getF32Type();
  SmallVector<Type> inputs = {rows(loss.tokensType),
                              rows(loss.labelsType),
                              f32,
                              builder.getI64Type(),
                              f32,
                              f32};
  auto type = builder.getFunctionType(inputs, {f32, f32});
  auto func =
      func::FuncOp::create(builder, loss.func.getLoc(), kTrainStepName, type);
  for (auto [i, name] : llvm::enumerate(kInputNames))
    func.setArgAttr(i, kInputAttr, builder.getStringAttr(name));
  for (auto [i, name] : llvm::enumerate(kOutputNames))
    func.setResultAttr(i, kOutputAttr, builder.getStringAttr(name));
  func->setAttr(kGradAccumAttr, builder.getI64IntegerAttr(gradAccum));
  auto f64 = [&](double value) { return builder.getF64FloatAttr(value); };
  func->setAttr(
      kOptimizerAttr,
      DictionaryAttr::get(
          ctx, {builder.getNamedAttr("beta1", f64(beta1)),
                builder.getNamedAttr("beta2", f64(beta2)),
                builder.getNamedAttr("epsilon", f64(epsilon)),
                builder.getNamedAttr("weight_decay", f64(weightDecay)),
                builder.getNamedAttr("max_grad_norm", f64(maxGradNorm))}));

  Block *body = func.addEntryBlock();
  // Keep the user's names and locations for tokens and labels.
  for (unsigned i = 0; i < 2; ++i)
    body->getArgument(i).setLoc(loss.func.getArgument(i).getLoc());
  return func;
}

FailureOr<func::FuncOp>
BuildTrainingStepPass::buildTrainStep(LossFunction &loss,
                                      ArrayRef<LoraParamOp> trainable) {
  OpBuilder builder(loss.func);
  func::FuncOp func = createTrainStep(builder, loss);
  // Leave no half-built function behind when a diagnostic stops us.
  llvm::scope_exit eraseOnFailure([&] { func.erase(); });
  Block *body = &func.getBody().front();
  builder.setInsertionPointToStart(body);
  Location loc = loss.func.getLoc();
  Value tokens = body->getArgument(0), labels = body->getArgument(1);
  Value lr = body->getArgument(2), step = body->getArgument(3);
  Value weightDecayArg = body->getArgument(4);
  Value maxGradNormArg = body->getArgument(5);

  // 1. Parameters, once.
  IRMapping params;
  for (Operation *op : loss.paramOps)
    builder.clone(*op, params);
  auto trainableValues =
      llvm::map_to_vector(trainable, [&](LoraParamOp op) -> Value {
        return params.lookup(op.getResult());
      });

  // Every micro-batch's backward starts from d loss = 1: with accumulation
  // the normaliser already divides by the whole step's target count.
  Value seed = arith::ConstantOp::create(builder, loc, builder.getF32Type(),
                                         builder.getF32FloatAttr(1.0f));

  // The whole step's target count, once per ignore_index in use.
  llvm::MapVector<int64_t, Value> normalizers;
  if (gradAccum > 1)
    for (Operation *op : loss.forwardOps)
      if (auto crossEntropy = dyn_cast<CrossEntropyOp>(op)) {
        if (crossEntropy.getNormalizer())
          return crossEntropy.emitOpError(
              "already has a normalizer; grad-accum > 1 sets its own");
        if (crossEntropy.getLabels() != loss.func.getArgument(1))
          return crossEntropy.emitOpError(
              "must compare against @loss's labels argument when grad-accum "
              "> 1, to be normalised by the whole step's target count");
        int64_t ignore = crossEntropy.getIgnoreIndex();
        if (!normalizers.contains(ignore))
          normalizers[ignore] = CountTargetsOp::create(
              builder, crossEntropy.getLoc(), labels, ignore);
      }

  // 2. Forward, then backward, per micro-batch.
  int64_t rows = loss.tokensType.getDimSize(0);
  auto microBatch = [&](Value full, RankedTensorType type, int64_t i) -> Value {
    if (gradAccum == 1)
      return full;
    SmallVector<OpFoldResult> offsets(type.getRank(), builder.getIndexAttr(0));
    offsets[0] = builder.getIndexAttr(i * rows);
    SmallVector<OpFoldResult> sizes =
        llvm::map_to_vector(type.getShape(), [&](int64_t size) -> OpFoldResult {
          return builder.getIndexAttr(size);
        });
    SmallVector<OpFoldResult> strides(type.getRank(), builder.getIndexAttr(1));
    return tensor::ExtractSliceOp::create(builder, full.getLoc(), type, full,
                                          offsets, sizes, strides);
  };

  Value stepLoss;
  SmallVector<Value> grads;
  for (int64_t i = 0; i < gradAccum; ++i) {
    IRMapping mapping = params;
    mapping.map(loss.func.getArgument(0),
                microBatch(tokens, loss.tokensType, i));
    mapping.map(loss.func.getArgument(1),
                microBatch(labels, loss.labelsType, i));
    SmallVector<Operation *> forward;
    for (Operation *op : loss.forwardOps) {
      Operation *clone = builder.clone(*op, mapping);
      if (auto crossEntropy = dyn_cast<CrossEntropyOp>(clone);
          crossEntropy && gradAccum > 1)
        crossEntropy.getNormalizerMutable().assign(
            normalizers.lookup(crossEntropy.getIgnoreIndex()));
      if (auto linear = dyn_cast<LinearOp>(clone);
          linear && failed(setDropoutStream(linear, i)))
        return failure();
      forward.push_back(clone);
    }
    Value microLoss = mapping.lookup(loss.loss);

    Autodiff autodiff(forward, trainableValues, microLoss);
    FailureOr<SmallVector<Value>> microGrads =
        autodiff.buildGradients(builder, seed);
    if (failed(microGrads))
      return failure();

    // Running sums, so that only one gradient per parameter stays live
    // across micro-batches.
    if (i == 0) {
      stepLoss = microLoss;
      grads = std::move(*microGrads);
      continue;
    }
    stepLoss = arith::AddFOp::create(builder, loc, stepLoss, microLoss);
    for (auto [sum, grad] : llvm::zip_equal(grads, *microGrads))
      sum = AddOp::create(builder, loc, sum, grad);
  }

  // 3. Clip by the global norm and update every trainable parameter.
  Value norm = GlobalNormOp::create(builder, loc, grads);
  Value coefficient =
      ClipCoefficientOp::create(builder, loc, norm, maxGradNormArg);
  for (auto [param, grad] : llvm::zip_equal(trainableValues, grads))
    AdamWOp::create(builder, param.getLoc(), param, grad, coefficient, lr, step,
                    weightDecayArg, builder.getF64FloatAttr(beta1),
                    builder.getF64FloatAttr(beta2),
                    builder.getF64FloatAttr(epsilon));
  func::ReturnOp::create(builder, loc, ValueRange{stepLoss, norm});
  eraseOnFailure.release();
  return func;
}

void BuildTrainingStepPass::runOnOperation() {
  ModuleOp module = getOperation();
  auto lossFunc = module.lookupSymbol<func::FuncOp>(kLossName);
  if (failed(verifyOptions(lossFunc ? lossFunc.getLoc() : module.getLoc())))
    return signalPassFailure();
  if (!lossFunc) {
    module.emitError("expected a func.func @loss to build @train_step from");
    return signalPassFailure();
  }
  if (module.lookupSymbol(kTrainStepName)) {
    lossFunc.emitOpError("cannot be replaced: the module already has a "
                         "@train_step");
    return signalPassFailure();
  }
  FailureOr<LossFunction> loss = analyzeLoss(lossFunc);
  if (failed(loss))
    return signalPassFailure();
  FailureOr<SmallVector<LoraParamOp>> trainable = trainableParams(*loss);
  if (failed(trainable))
    return signalPassFailure();

  if (failed(buildTrainStep(*loss, *trainable)))
    return signalPassFailure();
  lossFunc.erase();
}

} // namespace
} // namespace mlir::qlora
