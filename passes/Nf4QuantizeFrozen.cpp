//===- Nf4QuantizeFrozen.cpp - Frozen linear weights to NF4 constants -----===//
//
// Finds the frozen weights that only feed linears (not the LM head unless
// asked), quantizes each one with format::quantizeNf4Tensor (bitsandbytes'
// algorithm, bit for bit, on all cores) straight from the mapped checkpoint,
// and replaces it by nf4.constant + nf4.dequantize. Pre-quantized weights
// borrow the checkpoint's pieces unchanged.
//
//===----------------------------------------------------------------------===//
#include "passes/Nf4WeightData.h"
#include "passes/Passes.h"

#include "runtime/format/BnbNf4.h"
#include "runtime/format/Nf4Quantizer.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

namespace mlir::qlora {
#define GEN_PASS_DEF_NF4QUANTIZEFROZENPASS
#include "passes/Passes.h.inc"

namespace {

namespace format = ::qlora::format;
using nf4::Nf4TensorType;

/// True when `value` reaches the logits operand of the loss (or of its
/// gradient) through reshapes and casts only: the LM head's output.
bool feedsLossLogits(Value value) {
  for (OpOperand &use : value.getUses()) {
    Operation *user = use.getOwner();
    if (isa<ReshapeOp, CastOp>(user) && feedsLossLogits(user->getResult(0)))
      return true;
    if (isa<CrossEntropyOp, CrossEntropyGradOp>(user) &&
        use.getOperandNumber() == 0)
      return true;
  }
  return false;
}

/// The linear or linear_grad_input that `use` is the weight operand of, or
/// null for any other use.
Operation *getLinearUsingAsWeight(OpOperand &use) {
  Operation *user = use.getOwner();
  if (auto linear = dyn_cast<LinearOp>(user))
    return &use == &linear.getWeightMutable() ? user : nullptr;
  if (auto grad = dyn_cast<LinearGradInputOp>(user))
    return &use == &grad.getWeightMutable() ? user : nullptr;
  return nullptr;
}

/// A frozen weight is quantized when every use is a linear's weight and,
/// unless `withLmHead`, none of those linears is the LM head.
bool isQuantizable(WeightOp weight, bool withLmHead) {
  if (weight.isQuantized() || weight->use_empty())
    return false;
  for (OpOperand &use : weight->getUses()) {
    Operation *linear = getLinearUsingAsWeight(use);
    if (!linear)
      return false;
    if (!withLmHead && isa<LinearOp>(linear) &&
        feedsLossLogits(linear->getResult(0)))
      return false;
  }
  return true;
}

/// Prints "nf4-quantize-frozen: 40% (...)" to stderr every 10% of the bytes
/// when there are enough of them to take a while (a 7B model: ~13 GiB).
class QuantizeProgress {
public:
  explicit QuantizeProgress(ArrayRef<WeightOp> weights) {
    for (WeightOp weight : weights) {
      if (weight.isShapeOnly())
        continue;
      RankedTensorType type = weight.getTensorType();
      totalBytes +=
          type.getNumElements() * int64_t(type.getElementTypeBitWidth() / 8);
      ++totalTensors;
    }
  }

  void advance(int64_t bytes) {
    doneBytes += bytes;
    ++doneTensors;
    if (totalBytes < kAnnouncedBytes)
      return;
    int64_t tenths = doneBytes * 10 / totalBytes;
    if (tenths == lastTenths)
      return;
    lastTenths = tenths;
    llvm::errs() << llvm::formatv(
        "nf4-quantize-frozen: {0}% ({1} of {2} tensors, {3:f1} of {4:f1} "
        "GiB)\n",
        tenths * 10, doneTensors, totalTensors, double(doneBytes) / kGiB,
        double(totalBytes) / kGiB);
  }

private:
  static constexpr int64_t kAnnouncedBytes = int64_t(1) << 30;
  static constexpr double kGiB = double(int64_t(1) << 30);
  int64_t totalBytes = 0, doneBytes = 0, totalTensors = 0, doneTensors = 0;
  int64_t lastTenths = 0;
};

/// One weight's quantization, computed before the IR changes.
struct QuantizedWeight {
  WeightOp op; // erased once replaced
  std::string name;
  Nf4TensorType type;
  format::Nf4Pieces pieces;
  format::Nf4Error error;
  int64_t bytesBefore = 0;
};

struct Nf4QuantizeFrozenPass
    : impl::Nf4QuantizeFrozenPassBase<Nf4QuantizeFrozenPass> {
  using Base::Base;

  /// Where `report` prints.
  llvm::raw_ostream *reportStream = &llvm::outs();

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (failed(checkOptions(module)))
      return signalPassFailure();

    SmallVector<WeightOp> toQuantize, preQuantized;
    module.walk([&](WeightOp weight) {
      if (weight.isQuantized())
        preQuantized.push_back(weight);
      else if (isQuantizable(weight, quantizeLmHead))
        toQuantize.push_back(weight);
    });

    CheckpointCache cache;
    SmallVector<QuantizedWeight> quantized;
    QuantizeProgress progress(toQuantize);
    for (WeightOp weight : toQuantize) {
      if (weight.isShapeOnly()) {
        replaceShapeOnly(weight);
        continue;
      }
      FailureOr<QuantizedWeight> result = quantize(weight, cache);
      if (failed(result))
        return signalPassFailure();
      progress.advance(result->bytesBefore);
      quantized.push_back(std::move(*result));
    }
    for (QuantizedWeight &weight : quantized)
      replaceWithConstant(weight);
    for (WeightOp weight : preQuantized)
      if (weight.getSource() &&
          failed(replaceWithCheckpointPieces(weight, cache)))
        return signalPassFailure();
    if (report)
      printReport(quantized, preQuantized.size());
  }

private:
  Nf4TensorType getNf4Type(RankedTensorType type) {
    return Nf4TensorType::get(&getContext(), type.getShape(), blockSize,
                              doubleQuant ? int64_t(dqBlockSize) : 0);
  }

  LogicalResult checkOptions(ModuleOp module) {
    if (blockSize < Nf4TensorType::kMinBlockSize ||
        blockSize > Nf4TensorType::kMaxBlockSize ||
        !llvm::isPowerOf2_64(blockSize))
      return module.emitError("nf4-quantize-frozen: block-size must be a "
                              "power of two in [")
             << Nf4TensorType::kMinBlockSize << ", "
             << Nf4TensorType::kMaxBlockSize
             << "] (bitsandbytes' block sizes), got " << int64_t(blockSize);
    if (doubleQuant && dqBlockSize != Nf4TensorType::kNestedBlockSize)
      return module.emitError("nf4-quantize-frozen: dq-block-size must be ")
             << Nf4TensorType::kNestedBlockSize
             << " (bitsandbytes' nested blocksize), got "
             << int64_t(dqBlockSize);
    return success();
  }

  FailureOr<QuantizedWeight> quantize(WeightOp weight, CheckpointCache &cache) {
    FailureOr<WeightBytes> data = getWeightBytes(weight, cache);
    if (failed(data))
      return failure();
    format::Nf4QuantizeOptions options;
    options.blocksize = blockSize;
    options.nestedBlocksize = doubleQuant ? int64_t(dqBlockSize) : 0;
    options.threads = threads;
    std::string error;
    std::optional<format::Nf4Pieces> pieces = format::quantizeNf4Tensor(
        data->bytes.data(), data->dtype, data->count, options, error);
    if (!pieces)
      return weight.emitOpError("cannot quantize '")
             << weight.getName() << "': " << error;
    QuantizedWeight result{weight,
                           weight.getName().str(),
                           getNf4Type(weight.getTensorType()),
                           std::move(*pieces),
                           {},
                           int64_t(data->bytes.size())};
    if (report)
      result.error = format::measureNf4Error(
          data->bytes.data(), data->dtype, data->count, result.pieces,
          *format::nf4LayoutFor(data->count, options), threads);
    return result;
  }

  /// `weight` -> nf4.dequantize(`quantized`), with every use redirected.
  void replaceWithDequantize(WeightOp weight, Value quantized,
                             RankedTensorType type) {
    OpBuilder builder(weight);
    Value dequantized =
        nf4::DequantizeOp::create(builder, weight.getLoc(), type, quantized);
    weight.getResult().replaceAllUsesWith(dequantized);
    weight.erase();
  }

  void replaceShapeOnly(WeightOp weight) {
    OpBuilder builder(weight);
    RankedTensorType type = weight.getTensorType();
    Value quantized =
        WeightOp::create(builder, weight.getLoc(), getNf4Type(type),
                         weight.getNameAttr(), SourceAttr(), ElementsAttr());
    replaceWithDequantize(weight, quantized, type);
  }

  /// An nf4.constant of `type` over the pieces' bytes (absmax: the 8-bit
  /// codes with double quantization, else fp32), which `owner` keeps alive;
  /// named `name` and its resources `<name>.codes`, `.absmax` and
  /// `.nested_absmax`.
  Value createConstant(OpBuilder &builder, Location loc, Nf4TensorType type,
                       StringAttr name, std::span<const std::byte> codes,
                       std::span<const std::byte> absmax,
                       std::span<const std::byte> nestedAbsmax, float offset,
                       const std::shared_ptr<const void> &owner) {
    MLIRContext *context = &getContext();
    auto u8 = IntegerType::get(context, 8, IntegerType::Unsigned);
    auto f32 = Float32Type::get(context);
    StringRef prefix = name.getValue();
    ElementsAttr codesAttr = borrowAsResource(
        RankedTensorType::get({type.getNumPackedBytes(), 1}, u8),
        (prefix + ".codes").str(), codes, owner);
    ElementsAttr absmaxAttr = borrowAsResource(
        RankedTensorType::get({type.getNumBlocks()},
                              type.isDoubleQuantized() ? Type(u8) : f32),
        (prefix + ".absmax").str(), absmax, owner);
    ElementsAttr nestedAttr;
    FloatAttr offsetAttr;
    if (type.isDoubleQuantized()) {
      nestedAttr = borrowAsResource(
          RankedTensorType::get({type.getNumNestedBlocks()}, f32),
          (prefix + ".nested_absmax").str(), nestedAbsmax, owner);
      offsetAttr = builder.getF32FloatAttr(offset);
    }
    return nf4::ConstantOp::create(builder, loc, type, codesAttr, absmaxAttr,
                                   nestedAttr, offsetAttr, name);
  }

  void replaceWithConstant(QuantizedWeight &weight) {
    OpBuilder builder(weight.op);
    auto pieces =
        std::make_shared<const format::Nf4Pieces>(std::move(weight.pieces));
    std::span<const std::byte> absmax =
        weight.type.isDoubleQuantized()
            ? std::as_bytes(std::span(pieces->absmaxCodes))
            : std::as_bytes(std::span(pieces->absmax));
    Value constant = createConstant(
        builder, weight.op.getLoc(), weight.type, weight.op.getNameAttr(),
        std::as_bytes(std::span(pieces->packed)), absmax,
        std::as_bytes(std::span(pieces->nestedAbsmax)), pieces->offset, pieces);
    replaceWithDequantize(weight.op, constant, weight.op.getTensorType());
  }

  /// A pre-quantized weight: the checkpoint's pieces, borrowed from the
  /// mapping, after checking they are what the weight's type says.
  LogicalResult replaceWithCheckpointPieces(WeightOp weight,
                                            CheckpointCache &cache) {
    SourceAttr source = *weight.getSource();
    auto file = cache.open(weight, weight.getName(), source.getFile());
    if (failed(file))
      return failure();
    std::string error;
    std::optional<format::BnbNf4Tensor> tensor =
        format::readBnbNf4Tensor(**file, source.getKey().str(), error);
    if (!tensor)
      return weight.emitOpError("'") << weight.getName() << "': " << error;
    auto type = cast<Nf4TensorType>(weight.getType());
    if (ArrayRef(tensor->shape) != type.getShape() ||
        tensor->blocksize != type.getBlockSize() ||
        tensor->nestedBlocksize != type.getDqBlockSize())
      return weight.emitOpError("'")
             << weight.getName() << "' is " << type << " but '"
             << source.getKey() << "' in '" << source.getFile()
             << "' has shape " << format::formatShape(tensor->shape)
             << ", blocksize " << tensor->blocksize << " and nested blocksize "
             << tensor->nestedBlocksize;
    OpBuilder builder(weight);
    Value constant =
        createConstant(builder, weight.getLoc(), type, weight.getNameAttr(),
                       std::as_bytes(tensor->packed), tensor->absmax,
                       tensor->nestedAbsmax, tensor->offset, *file);
    weight.getResult().replaceAllUsesWith(constant);
    weight.erase();
    return success();
  }

  void printReport(MutableArrayRef<QuantizedWeight> quantized,
                   size_t preQuantizedCount) {
    llvm::raw_ostream &os = *reportStream;
    os << "nf4 quantization: block " << blockSize;
    if (doubleQuant)
      os << ", double quantization (nested block " << dqBlockSize << ")";
    os << "\n";
    os << llvm::formatv("  {0,-48} {1,12} {2,12} {3,14} {4,13} {5,10}\n",
                        "tensor", "rmse", "max abs err", "bytes before",
                        "bytes after", "bits/param");
    int64_t before = 0, after = 0, params = 0;
    double maxError = 0;
    for (QuantizedWeight &weight : quantized) {
      int64_t bytes = weight.type.getStorageBits() / 8;
      os << llvm::formatv("  {0,-48} {1,12:e3} {2,12:e3} {3,14} {4,13} "
                          "{5,10:f3}\n",
                          weight.name, weight.error.rmse,
                          weight.error.maxAbsError, weight.bytesBefore, bytes,
                          weight.type.getBitsPerParameter());
      before += weight.bytesBefore;
      after += bytes;
      params += weight.type.getNumElements();
      maxError = std::max(maxError, weight.error.maxAbsError);
    }
    os << llvm::formatv("  total: {0} tensors, {1} parameters, {2} -> {3} "
                        "bytes ({4:f2}x smaller), {5:f3} bits/param, max abs "
                        "err {6:e3}\n",
                        quantized.size(), params, before, after,
                        after ? double(before) / double(after) : 0.0,
                        params ? 8.0 * double(after) / double(params) : 0.0,
                        maxError);
    if (preQuantizedCount)
      os << "  " << preQuantizedCount
         << " weight(s) were already NF4 in the checkpoint (kept as they "
            "are)\n";
  }
};

} // namespace

std::unique_ptr<Pass>
createNf4QuantizeFrozenPass(const Nf4QuantizeFrozenPassOptions &options,
                            llvm::raw_ostream &report) {
  auto pass = std::make_unique<Nf4QuantizeFrozenPass>(options);
  pass->reportStream = &report;
  return pass;
}

} // namespace mlir::qlora
