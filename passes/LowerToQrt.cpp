//===- LowerToQrt.cpp - --qlora-lower-to-qrt ------------------------------===//
//
// Bufferizes @train_step and selects one kernel per op: every tensor and
// scalar value becomes a `!qrt.buffer` (the type converter), every op a
// pattern that allocates its result buffers and launches its kernel. This
// file holds the pass, the shared lowering state and the patterns for the
// function itself (arguments and results become `io` buffers), constants,
// token slices and scalar arithmetic; the model and training ops' patterns
// are in LowerToQrtModelOps.cpp and LowerToQrtTraining.cpp.
//
//===----------------------------------------------------------------------===//
#include "passes/LowerToQrt.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/ADT/TypeSwitch.h"

namespace mlir::qlora {
#define GEN_PASS_DEF_QLORALOWERTOQRTPASS
#include "passes/Passes.h.inc"

using qrt::BufferClass;

//===----------------------------------------------------------------------===//
// KernelParams and QrtLowering
//===----------------------------------------------------------------------===//

KernelParams &KernelParams::addInt(StringRef name, int64_t value) {
  attrs.push_back(builder.getNamedAttr(name, builder.getI64IntegerAttr(value)));
  return *this;
}

KernelParams &KernelParams::addFloat(StringRef name, double value) {
  attrs.push_back(builder.getNamedAttr(name, builder.getF64FloatAttr(value)));
  return *this;
}

KernelParams &KernelParams::addString(StringRef name, StringRef value) {
  attrs.push_back(builder.getNamedAttr(name, builder.getStringAttr(value)));
  return *this;
}

KernelParams &KernelParams::addInts(StringRef name, ArrayRef<int64_t> values) {
  attrs.push_back(
      builder.getNamedAttr(name, builder.getDenseI64ArrayAttr(values)));
  return *this;
}

Type QrtLowering::getStoredType(Type type, BufferClass bufferClass) const {
  auto tensor = dyn_cast<RankedTensorType>(type);
  if (!tensor || !isa<FloatType>(tensor.getElementType()))
    return type;
  switch (bufferClass) {
  case BufferClass::activation:
  case BufferClass::recompute:
  case BufferClass::gradient:
  case BufferClass::workspace:
  case BufferClass::io:
    return tensor.clone(activationType);
  default:
    return type;
  }
}

BufferClass QrtLowering::refineClass(OpBuilder &builder, Type storedType,
                                     BufferClass bufferClass) {
  if (bufferClass == BufferClass::weight && isa<nf4::Nf4TensorType>(storedType))
    return BufferClass::quantized_weight;
  if (bufferClass != BufferClass::activation)
    return bufferClass;
  // The conversion driver rewrites an op with the insertion point before it,
  // and no pattern moves it before allocating.
  Block *block = builder.getInsertionBlock();
  Block::iterator point = builder.getInsertionPoint();
  if (block && point != block->end() &&
      point->hasAttr(QloraDialect::kRecomputeAttrName))
    return BufferClass::recompute;
  return bufferClass;
}

Value QrtLowering::createBuffer(OpBuilder &builder, Location loc,
                                Type storedType, BufferClass bufferClass,
                                StringAttr name, Attribute init,
                                IntegerAttr seed) const {
  // The pre-checks reject every type without a static byte size.
  int64_t bytes = qrt::getStoredByteSize(storedType).value_or(1);
  return qrt::BufferOp::create(
      builder, loc, qrt::BufferType::get(builder.getContext()),
      std::max<int64_t>(bytes, 1), kAlignment,
      refineClass(builder, storedType, bufferClass), qrt::Placement::device,
      /*offset=*/IntegerAttr(), name, TypeAttr::get(storedType), init, seed);
}

Value QrtLowering::allocate(OpBuilder &builder, Location loc, Value result,
                            BufferClass bufferClass) const {
  return createBuffer(
      builder, loc, getStoredType(result.getType(), bufferClass), bufferClass);
}

BufferClass QrtLowering::getDerivedClass(ValueRange inputs) {
  bool fromGradient = llvm::any_of(inputs, [](Value input) {
    qrt::BufferOp buffer = getBufferOp(input);
    return buffer && buffer.getBufferClass() == BufferClass::gradient;
  });
  return fromGradient ? BufferClass::gradient : BufferClass::activation;
}

Value QrtLowering::allocateDerived(OpBuilder &builder, Location loc,
                                   Value result, ValueRange inputs) const {
  return allocate(builder, loc, result, getDerivedClass(inputs));
}

Value QrtLowering::allocateElementwise(OpBuilder &builder, Location loc,
                                       Value result, ValueRange inputs) const {
  BufferClass bufferClass = getDerivedClass(inputs);
  Type stored = getStoredType(result.getType(), bufferClass);
  Type element = getStoredElementType(inputs.front());
  bool sameElement = element && llvm::all_of(inputs, [&](Value input) {
                       return getStoredElementType(input) == element;
                     });
  if (auto tensor = dyn_cast<RankedTensorType>(stored); tensor && sameElement)
    stored = tensor.clone(element);
  return createBuffer(builder, loc, stored, bufferClass);
}

Value QrtLowering::allocateWorkspace(OpBuilder &builder, Location loc,
                                     RankedTensorType type) const {
  return createBuffer(builder, loc, getStoredType(type, BufferClass::workspace),
                      BufferClass::workspace);
}

Value QrtLowering::nameBuffer(ConversionPatternRewriter &rewriter, Location loc,
                              Value buffer, Type type, BufferClass bufferClass,
                              StringAttr name) const {
  qrt::BufferOp definition = getBufferOp(buffer);
  if (definition && !definition.getName() &&
      !qrt::isPersistent(definition.getBufferClass())) {
    rewriter.modifyOpInPlace(definition, [&] {
      definition.setBufferClass(bufferClass);
      definition.setNameAttr(name);
    });
    return buffer;
  }
  Type stored = definition && definition.getStoredType()
                    ? definition.getStoredType()
                    : getStoredType(type, bufferClass);
  Value named = createBuffer(rewriter, loc, stored, bufferClass, name);
  qrt::CopyOp::create(rewriter, loc, buffer, 0, named, 0,
                      qrt::getStoredByteSize(stored).value_or(1));
  return named;
}

void QrtLowering::launch(OpBuilder &builder, Location loc,
                         StringRef templateName, const KernelParams &params,
                         ValueRange args) {
  StringAttr name = builder.getStringAttr(templateName);
  DictionaryAttr dictionary = params.getDictionary();
  FlatSymbolRefAttr &kernel = kernels[{name, dictionary}];
  if (!kernel) {
    std::string symbol;
    do {
      symbol = (templateName + "_" + Twine(kernelCounts[templateName]++)).str();
    } while (SymbolTable::lookupSymbolIn(module, symbol));
    OpBuilder::InsertionGuard guard(builder);
    if (lastKernel)
      builder.setInsertionPointAfter(lastKernel);
    else
      builder.setInsertionPointToStart(module.getBody());
    lastKernel = qrt::KernelOp::create(builder, loc, symbol, name, dictionary);
    kernel = FlatSymbolRefAttr::get(builder.getContext(), symbol);
  }
  qrt::LaunchOp::create(
      builder, loc, kernel, args, builder.getDenseI64ArrayAttr({1, 1, 1}),
      builder.getDenseI64ArrayAttr({1, 1, 1}), builder.getI64IntegerAttr(0));
}

Type getStoredElementType(Value buffer) {
  qrt::BufferOp op = getBufferOp(buffer);
  if (!op || !op.getStoredType())
    return {};
  return getElementTypeOrSelf(op.getStoredType());
}

StringRef getDTypeName(Value buffer) {
  return getDTypeName(getStoredElementType(buffer));
}

StringRef getDTypeName(Type element) {
  if (!element || element.isF32())
    return "F32";
  if (element.isBF16())
    return "BF16";
  if (element.isF16())
    return "F16";
  if (element.isF64())
    return "F64";
  return "F32";
}

int64_t getRows(ShapedType type) {
  int64_t rows = 1;
  for (int64_t dim : type.getShape().drop_back())
    rows *= dim;
  return rows;
}

//===----------------------------------------------------------------------===//
// The function, its results, constants, token slices, scalar arithmetic
//===----------------------------------------------------------------------===//

static constexpr StringLiteral kInputAttr = "qlora.input";
static constexpr StringLiteral kOutputAttr = "qlora.output";
/// The input LoRA dropout kernels read the optimizer step from.
static constexpr StringLiteral kStepInput = "step";

namespace {

/// @train_step's arguments become `io` buffers named by `qlora.input`; the
/// function loses its arguments and results.
struct FuncLowering : QrtConversionPattern<func::FuncOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(func::FuncOp func, OpAdaptor,
                  ConversionPatternRewriter &rewriter) const override {
    Block &entry = func.front();
    rewriter.setInsertionPointToStart(&entry);
    TypeConverter::SignatureConversion signature(func.getNumArguments());
    for (BlockArgument arg : entry.getArguments()) {
      auto name =
          func.getArgAttrOfType<StringAttr>(arg.getArgNumber(), kInputAttr);
      Value buffer = lowering.createBuffer(
          rewriter, arg.getLoc(),
          lowering.getStoredType(arg.getType(), BufferClass::io),
          BufferClass::io, name);
      if (name && name.getValue() == kStepInput)
        lowering.stepBuffer = buffer;
      signature.remapInput(arg.getArgNumber(), buffer);
    }
    rewriter.applySignatureConversion(&entry, signature, getTypeConverter());
    rewriter.modifyOpInPlace(func, [&] {
      func.setFunctionType(rewriter.getFunctionType({}, {}));
      func.removeArgAttrsAttr();
      func.removeResAttrsAttr();
    });
    return success();
  }
};

/// Each result's buffer becomes the `io` buffer named by its `qlora.output`:
/// retagged when it is an unnamed transient buffer, else copied into one.
struct ReturnLowering : QrtConversionPattern<func::ReturnOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(func::ReturnOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    for (auto [value, buffer, name] : llvm::zip_equal(
             op.getOperands(), adaptor.getOperands(), lowering.outputNames))
      lowering.nameBuffer(rewriter, op.getLoc(), buffer, value.getType(),
                          BufferClass::io, name);
    rewriter.replaceOpWithNewOp<func::ReturnOp>(op);
    return success();
  }
};

/// A constant (the autodiff seed 1.0) is an `io` buffer named
/// `constant_<n>` whose `init` is its value: persistent, loaded once.
struct ConstantLowering : QrtConversionPattern<arith::ConstantOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(arith::ConstantOp op, OpAdaptor,
                  ConversionPatternRewriter &rewriter) const override {
    rewriter.replaceOp(op,
                       lowering.createBuffer(
                           rewriter, op.getLoc(), op.getType(), BufferClass::io,
                           lowering.getConstantName(rewriter), op.getValue()));
    return success();
  }
};

/// A micro-batch of token rows, `tensor.extract_slice %tokens[i*B, 0]
/// [B, S] [1, 1]`, is a copy of its bytes into a buffer of its own.
struct ExtractSliceLowering : QrtConversionPattern<tensor::ExtractSliceOp> {
  using QrtConversionPattern::QrtConversionPattern;

  LogicalResult
  matchAndRewrite(tensor::ExtractSliceOp op, OpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    RankedTensorType source = op.getSourceType();
    ArrayRef<int64_t> offsets = op.getStaticOffsets();
    ArrayRef<int64_t> sizes = op.getStaticSizes();
    ArrayRef<int64_t> strides = op.getStaticStrides();
    bool wholeRows = op.getOffsets().empty() && op.getSizes().empty() &&
                     op.getStrides().empty() && source.getRank() > 0;
    for (int64_t dim = 0; wholeRows && dim < source.getRank(); ++dim)
      wholeRows = strides[dim] == 1 &&
                  (dim == 0 ||
                   (offsets[dim] == 0 && sizes[dim] == source.getDimSize(dim)));
    if (!wholeRows)
      return op.emitOpError("only a static slice of whole rows (unit "
                            "strides, full trailing dimensions) lowers to "
                            "qrt.copy, got offsets [")
             << op.getStaticOffsets() << "], sizes [" << op.getStaticSizes()
             << "] and strides [" << op.getStaticStrides() << "] of " << source;
    int64_t rowBytes = *qrt::getStoredByteSize(source) / source.getDimSize(0);
    Value slice = lowering.allocate(rewriter, op.getLoc(), op.getResult(),
                                    BufferClass::activation);
    qrt::CopyOp::create(rewriter, op.getLoc(), adaptor.getSource(),
                        offsets[0] * rowBytes, slice, 0, sizes[0] * rowBytes);
    rewriter.replaceOp(op, slice);
    return success();
  }
};

/// f32 scalar arithmetic (summing micro-batch losses) is `scalar_binary`.
template <typename OpTy>
struct ScalarBinaryLowering : QrtConversionPattern<OpTy> {
  ScalarBinaryLowering(const TypeConverter &converter, MLIRContext *context,
                       QrtLowering &lowering, StringRef kind)
      : QrtConversionPattern<OpTy>(converter, context, lowering), kind(kind) {}

  LogicalResult
  matchAndRewrite(OpTy op, typename OpTy::Adaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    if (!op.getType().isF32())
      return op.emitOpError("only f32 scalars lower to scalar_binary, got ")
             << op.getType();
    Value out = this->lowering.allocateDerived(
        rewriter, op.getLoc(), op.getResult(), adaptor.getOperands());
    KernelParams params(rewriter);
    params.addString("op", kind);
    return this->lowering.replaceWithLaunch(
        rewriter, op, "scalar_binary", params,
        {adaptor.getLhs(), adaptor.getRhs(), out}, out);
  }

  StringRef kind;
};

} // namespace

void populateLowerStructureToQrtPatterns(const TypeConverter &converter,
                                         QrtLowering &lowering,
                                         RewritePatternSet &patterns) {
  MLIRContext *context = patterns.getContext();
  patterns.add<FuncLowering, ReturnLowering, ConstantLowering,
               ExtractSliceLowering>(converter, context, lowering);
  patterns.add<ScalarBinaryLowering<arith::AddFOp>>(converter, context,
                                                    lowering, "add");
  patterns.add<ScalarBinaryLowering<arith::SubFOp>>(converter, context,
                                                    lowering, "sub");
  patterns.add<ScalarBinaryLowering<arith::MulFOp>>(converter, context,
                                                    lowering, "mul");
  patterns.add<ScalarBinaryLowering<arith::DivFOp>>(converter, context,
                                                    lowering, "div");
}

void populateLowerToQrtPatterns(const TypeConverter &converter,
                                QrtLowering &lowering,
                                RewritePatternSet &patterns) {
  populateLowerStructureToQrtPatterns(converter, lowering, patterns);
  populateLowerModelOpsToQrtPatterns(converter, lowering, patterns);
  populateLowerLossAndOptimizerToQrtPatterns(converter, lowering, patterns);
  populateLowerNf4ToQrtPatterns(converter, lowering, patterns);
}

//===----------------------------------------------------------------------===//
// The pass
//===----------------------------------------------------------------------===//

namespace {

/// Tensors, NF4 tensors and the f32/i64 scalars become buffers; buffers
/// stay.
struct BufferTypeConverter : TypeConverter {
  explicit BufferTypeConverter(MLIRContext *context) {
    auto buffer = qrt::BufferType::get(context);
    addConversion([](qrt::BufferType type) { return type; });
    addConversion([buffer](RankedTensorType) -> Type { return buffer; });
    addConversion([buffer](nf4::Nf4TensorType) -> Type { return buffer; });
    addConversion([buffer](FloatType) -> Type { return buffer; });
    addConversion([buffer](IntegerType) -> Type { return buffer; });
  }
};

struct LowerToQrtPass : impl::QloraLowerToQrtPassBase<LowerToQrtPass> {
  using QloraLowerToQrtPassBase::QloraLowerToQrtPassBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *context = &getContext();
    FailureOr<FloatType> activation = parseActivationType();
    if (failed(activation))
      return signalPassFailure();
    QrtLowering lowering(module, *activation);
    lowering.dequantizeNf4Weights = nf4Gemm == Nf4Gemm::dequantize;
    BufferTypeConverter converter(context);
    RewritePatternSet patternList(context);
    populateLowerToQrtPatterns(converter, lowering, patternList);
    FrozenRewritePatternSet patterns(std::move(patternList));

    ConversionTarget target(*context);
    target.addLegalDialect<qrt::QrtDialect>();
    target.addDynamicallyLegalOp<func::FuncOp>([](func::FuncOp func) {
      return func.getFunctionType().getNumInputs() == 0 &&
             func.getFunctionType().getNumResults() == 0;
    });
    target.addDynamicallyLegalOp<func::ReturnOp>(
        [](func::ReturnOp op) { return op.getNumOperands() == 0; });
    ConversionConfig config;
    config.foldingMode = DialectConversionFoldingMode::Never;

    // @train_step, and in tests any function written like it.
    for (auto func :
         llvm::make_early_inc_range(module.getOps<func::FuncOp>())) {
      if (func.isExternal())
        continue;
      if (failed(checkLowerable(func, target, patterns, lowering)) ||
          failed(applyFullConversion(func, target, patterns, config)))
        return signalPassFailure();
      hoistBuffers(func);
    }
  }

private:
  FailureOr<FloatType> parseActivationType() {
    Builder b(&getContext());
    FloatType type = llvm::StringSwitch<FloatType>(activationType)
                         .Case("f32", b.getF32Type())
                         .Case("bf16", b.getBF16Type())
                         .Case("f16", b.getF16Type())
                         .Default(nullptr);
    if (!type) {
      getOperation().emitError("activation-type must be f32, bf16 or f16, "
                               "got '")
          << activationType << "'";
      return failure();
    }
    return type;
  }

  /// Rejects, with one error per cause, what the patterns cannot lower: an
  /// op without a pattern, dynamic shapes, token tensors that are not i32,
  /// weights without bytes, LoRA dropout without the stream, seed or step
  /// its mask needs, and unnamed arguments/results.
  /// Records the result names for ReturnLowering.
  LogicalResult checkLowerable(func::FuncOp func, ConversionTarget &target,
                               const FrozenRewritePatternSet &patterns,
                               QrtLowering &lowering) {
    bool ok = true;
    lowering.outputNames.clear();
    for (unsigned i = 0, e = func.getNumArguments(); i < e; ++i)
      if (!func.getArgAttrOfType<StringAttr>(i, kInputAttr)) {
        func.emitOpError("argument #")
            << i << " has no '" << kInputAttr
            << "' name for the runtime to bind it by";
        ok = false;
      }
    for (unsigned i = 0, e = func.getNumResults(); i < e; ++i) {
      auto name = func.getResultAttrOfType<StringAttr>(i, kOutputAttr);
      if (!name) {
        func.emitOpError("result #") << i << " has no '" << kOutputAttr
                                     << "' name for the runtime to read it by";
        ok = false;
      }
      lowering.outputNames.push_back(name);
    }

    const auto &lowerable = patterns.getOpSpecificNativePatterns();
    func.walk([&](Operation *op) {
      if (op != func.getOperation() && !lowerable.count(op->getName()) &&
          !target.isLegal(op)) {
        op->emitOpError("has no lowering to qrt (--qlora-lower-to-qrt lowers "
                        "qlora ops, tensor.extract_slice of token rows, "
                        "arith constants and f32 scalar arithmetic)");
        ok = false;
        return;
      }
      for (Value value : op->getResults())
        ok &= succeeded(checkValueType(op, value));
      ok &= succeeded(checkDropout(func, op));
    });
    for (BlockArgument arg : func.getArguments())
      ok &= succeeded(checkValueType(func, arg));
    return success(ok);
  }

  /// A linear or LoRA gradient with dropout above 0 needs what its kernels
  /// key the mask by: a `dropout_stream`, a lora_a that is a
  /// qlora.lora_param (its seed) and the function's i64 `step` input.
  static LogicalResult checkDropout(func::FuncOp func, Operation *op) {
    auto [dropout, stream, loraA] =
        llvm::TypeSwitch<Operation *, std::tuple<double, StringAttr, Value>>(op)
            .Case<LinearOp, LinearGradInputOp, LoraGradOp>([](auto op) {
              return std::make_tuple(op.getDropout().convertToDouble(),
                                     op.getDropoutStreamAttr(),
                                     Value(op.getLoraA()));
            })
            .Default([](Operation *) {
              return std::make_tuple(0.0, StringAttr(), Value());
            });
    if (dropout == 0)
      return success();
    if (!stream)
      return op->emitOpError("has LoRA dropout ")
             << dropout
             << " but no dropout_stream to key its mask by (set by "
                "--qlora-build-training-step)";
    if (!loraA.getDefiningOp<LoraParamOp>())
      return op->emitOpError("has LoRA dropout but its lora_a is not a "
                             "qlora.lora_param, whose seed keys the mask");
    for (unsigned i = 0, e = func.getNumArguments(); i < e; ++i) {
      auto name = func.getArgAttrOfType<StringAttr>(i, kInputAttr);
      if (name && name.getValue() == kStepInput &&
          func.getArgument(i).getType().isInteger(64))
        return success();
    }
    return op->emitOpError("has LoRA dropout but the function has no i64 '")
           << kStepInput << "' input to draw a fresh mask per step from";
  }

  /// Static shapes, element types with a byte size, i32 token ids.
  static LogicalResult checkValueType(Operation *op, Value value) {
    Type type = value.getType();
    auto tensor = dyn_cast<RankedTensorType>(type);
    if (isa<ShapedType>(type) && (!tensor || !tensor.hasStaticShape()))
      return op->emitOpError("dynamic shapes are not supported: ")
             << value << " has type " << type;
    if (!qrt::getStoredByteSize(type))
      return op->emitOpError("has a value of type ")
             << type << ", which no qrt buffer can hold";
    if (tensor && isa<IntegerType>(tensor.getElementType()) &&
        !tensor.getElementType().isInteger(32))
      return op->emitOpError("token ids and labels must be i32 tensors, got ")
             << type;
    return success();
  }

  /// Puts every `qrt.buffer` first, in creation order, so that the body
  /// reads as declarations followed by the program.
  static void hoistBuffers(func::FuncOp func) {
    Block &entry = func.front();
    Operation *insertionPoint = nullptr;
    for (Operation &op : llvm::make_early_inc_range(entry)) {
      if (!isa<qrt::BufferOp>(op))
        continue;
      if (insertionPoint)
        op.moveAfter(insertionPoint);
      else
        op.moveBefore(&entry, entry.begin());
      insertionPoint = &op;
    }
  }
};

} // namespace
} // namespace mlir::qlora
