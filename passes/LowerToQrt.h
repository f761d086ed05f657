//===- LowerToQrt.h - Shared state of --qlora-lower-to-qrt ------*- C++ -*-===//
//
// What every conversion pattern of `--qlora-lower-to-qrt` shares: the type
// converter's target (`!qrt.buffer`), how a value's buffer is allocated
// (class, stored type, name), and the module's deduplicated `qrt.kernel`s.
// The patterns live in LowerToQrt*.cpp, one file per op family.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_PASSES_LOWERTOQRT_H
#define QLORACC_PASSES_LOWERTOQRT_H

#include "dialects/qrt/QrtDialect.h"

#include "mlir/Transforms/DialectConversion.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"

namespace mlir::qlora {

/// The static parameters of one kernel instantiation, in KernelAbi.h's
/// kinds: i64 integers, f64 floats, strings and i64 arrays.
class KernelParams {
public:
  explicit KernelParams(Builder &builder) : builder(builder) {}

  KernelParams &addInt(StringRef name, int64_t value);
  KernelParams &addFloat(StringRef name, double value);
  KernelParams &addString(StringRef name, StringRef value);
  KernelParams &addInts(StringRef name, ArrayRef<int64_t> values);

  DictionaryAttr getDictionary() const {
    return builder.getDictionaryAttr(attrs);
  }

private:
  Builder &builder;
  SmallVector<NamedAttribute> attrs;
};

/// The state of one lowering: options, the kernel table and counters.
/// Patterns create buffers and launches only through it, so every buffer
/// carries its stored type and every launch a deduplicated kernel.
class QrtLowering {
public:
  QrtLowering(ModuleOp module, FloatType activationType)
      : module(module), activationType(activationType) {}

  /// The type a value of IR type `type` is stored in when its buffer has
  /// class `bufferClass`: float tensors of activations, gradients,
  /// workspaces and io in the activation type; weights, LoRA matrices,
  /// optimizer moments and scalars as they are.
  Type getStoredType(Type type, qrt::BufferClass bufferClass) const;

  /// The class a buffer of `storedType` that a pattern asks for as
  /// `bufferClass` gets: an `!nf4.tensor` weight is `quantized_weight`, and
  /// an activation of the op being rewritten is `recompute` when
  /// `--qlora-remat` marked that op `qlora.recompute`; every buffer's class
  /// is decided here.
  static qrt::BufferClass refineClass(OpBuilder &builder, Type storedType,
                                      qrt::BufferClass bufferClass);

  /// A new device buffer holding `storedType`, sized from it, of the class
  /// refineClass gives `bufferClass`.
  Value createBuffer(OpBuilder &builder, Location loc, Type storedType,
                     qrt::BufferClass bufferClass, StringAttr name = {},
                     Attribute init = {}, IntegerAttr seed = {}) const;

  /// A buffer for `result` of class `bufferClass`, stored per
  /// getStoredType.
  Value allocate(OpBuilder &builder, Location loc, Value result,
                 qrt::BufferClass bufferClass) const;

  /// `gradient` when any of `inputs` (converted operands) is a gradient
  /// buffer, else `activation`: values computed from gradients (sums of
  /// gradient contributions, the global norm) are gradients too.
  static qrt::BufferClass getDerivedClass(ValueRange inputs);

  /// A buffer for `result` of an op that may run in either pass: a gradient
  /// when any of `inputs` (converted operands) is one, else an activation.
  Value allocateDerived(OpBuilder &builder, Location loc, Value result,
                        ValueRange inputs) const;

  /// A buffer for the elementwise `result`, stored in the element type all
  /// of `inputs` are stored in (so LoRA gradients summed across
  /// micro-batches stay f32 whatever the activation type), else as
  /// getStoredType says; with the class allocateDerived picks.
  Value allocateElementwise(OpBuilder &builder, Location loc, Value result,
                            ValueRange inputs) const;

  /// Scratch for one launch: a `workspace` buffer of `type`.
  Value allocateWorkspace(OpBuilder &builder, Location loc,
                          RankedTensorType type) const;

  /// `buffer` as the buffer `name` of class `bufferClass`: renamed and
  /// reclassed in place when it is an unnamed transient buffer (nothing
  /// else refers to it by name), else copied into a new buffer so named.
  Value nameBuffer(ConversionPatternRewriter &rewriter, Location loc,
                   Value buffer, Type type, qrt::BufferClass bufferClass,
                   StringAttr name) const;

  /// Emits `qrt.launch @kernel(args)` with the `qrt.kernel` for
  /// (`templateName`, `params`), creating it at module level the first time
  /// this pair is seen. Grid and block are [1, 1, 1] until the CUDA code
  /// generator sets them.
  void launch(OpBuilder &builder, Location loc, StringRef templateName,
              const KernelParams &params, ValueRange args);

  /// Launches (`launch`) and replaces `op` with the buffers `results`: the
  /// end of most patterns.
  LogicalResult replaceWithLaunch(ConversionPatternRewriter &rewriter,
                                  Operation *op, StringRef templateName,
                                  const KernelParams &params, ValueRange args,
                                  ValueRange results) {
    launch(rewriter, op->getLoc(), templateName, params, args);
    rewriter.replaceOp(op, results);
    return success();
  }

  /// The buffer holding the product `lhs`·Aᵀ (x·Aᵀ, `t_ws`) or `lhs`·B
  /// (dy·B, `dt_ws`) for the converted operands `lhs` and `loraMatrix` (A or
  /// B), as linear_fwd and linear_grad_input leave it for lora_grad; null
  /// when no launch computed it.
  Value lookupLoraProduct(Value lhs, Value loraMatrix) const {
    return loraProducts.lookup({lhs, loraMatrix});
  }
  void recordLoraProduct(Value lhs, Value loraMatrix, Value product) {
    loraProducts[{lhs, loraMatrix}] = product;
  }

  /// `nf4-gemm=dequantize`: a linear reads its NF4 weight from a dense
  /// workspace that a `dequantize_nf4` launch fills just before it
  /// (lowerLinearWeight), instead of dequantizing each tile it loads.
  bool dequantizeNf4Weights = false;

  /// The `io` buffer of the function's `step` input (the 1-based optimizer
  /// step, i64), which LoRA dropout kernels read; null when there is none.
  Value stepBuffer;

  /// A fresh name for a constant's buffer: `constant_<n>`.
  StringAttr getConstantName(Builder &builder) {
    return builder.getStringAttr("constant_" + Twine(constantCount++));
  }

  /// The names of the lowered function's results (`qlora.output`), in
  /// order.
  SmallVector<StringAttr> outputNames;

  /// Buffer alignment in bytes that the lowering asks for.
  static constexpr int64_t kAlignment = 64;

private:
  ModuleOp module;
  FloatType activationType;
  llvm::DenseMap<std::pair<Attribute, Attribute>, FlatSymbolRefAttr> kernels;
  llvm::StringMap<unsigned> kernelCounts;
  llvm::DenseMap<std::pair<Value, Value>, Value> loraProducts;
  Operation *lastKernel = nullptr;
  unsigned constantCount = 0;
};

/// The `qrt.buffer` that defines `buffer`, or null.
inline qrt::BufferOp getBufferOp(Value buffer) {
  return buffer.getDefiningOp<qrt::BufferOp>();
}

/// The element type stored in `buffer`, or null when it does not say.
Type getStoredElementType(Value buffer);

/// The safetensors spelling of the element type stored in `buffer` ("F32",
/// "BF16", "F16"), as kernels take it in `w_dtype`, `from` and `to`.
StringRef getDTypeName(Value buffer);
/// The same for an element type ("F32" when null or unknown).
StringRef getDTypeName(Type element);

/// Product of all dimensions but the last: the rows (tokens) of a
/// row-major [..., features] tensor.
int64_t getRows(ShapedType type);

/// The base of every lowering pattern: an OpConversionPattern that can
/// reach the lowering's state.
template <typename OpTy>
class QrtConversionPattern : public OpConversionPattern<OpTy> {
public:
  QrtConversionPattern(const TypeConverter &converter, MLIRContext *context,
                       QrtLowering &lowering)
      : OpConversionPattern<OpTy>(converter, context), lowering(lowering) {}

protected:
  QrtLowering &lowering;
};

/// Patterns for parameters, model ops and their vector-Jacobian products
/// (LowerToQrtModelOps.cpp).
void populateLowerModelOpsToQrtPatterns(const TypeConverter &converter,
                                        QrtLowering &lowering,
                                        RewritePatternSet &patterns);

/// Patterns for the loss, its gradient and normaliser, gradient clipping and
/// AdamW (LowerToQrtTraining.cpp).
void populateLowerLossAndOptimizerToQrtPatterns(const TypeConverter &converter,
                                                QrtLowering &lowering,
                                                RewritePatternSet &patterns);

/// Patterns for NF4 constants and their dequantization (LowerToQrtNf4.cpp).
void populateLowerNf4ToQrtPatterns(const TypeConverter &converter,
                                   QrtLowering &lowering,
                                   RewritePatternSet &patterns);

/// The weight argument of a linear kernel whose weight operand is `weight`,
/// lowered to `weightBuffer`, and its `w_dtype` in `params`. When `weight`
/// is an nf4.dequantize (whose result is then the NF4 buffer): that buffer,
/// "NF4" and the [nf4] block sizes, or with dequantizeNf4Weights a
/// workspace that a `dequantize_nf4` launch emitted here fills, in its
/// stored dtype. Else `weightBuffer` and its stored dtype.
Value lowerLinearWeight(QrtLowering &lowering, OpBuilder &builder, Location loc,
                        KernelParams &params, Value weight, Value weightBuffer);

/// Patterns for the function, its scalars, constants and token slices
/// (LowerToQrt.cpp).
void populateLowerStructureToQrtPatterns(const TypeConverter &converter,
                                         QrtLowering &lowering,
                                         RewritePatternSet &patterns);

/// Every pattern of --qlora-lower-to-qrt.
void populateLowerToQrtPatterns(const TypeConverter &converter,
                                QrtLowering &lowering,
                                RewritePatternSet &patterns);

} // namespace mlir::qlora

#endif // QLORACC_PASSES_LOWERTOQRT_H
