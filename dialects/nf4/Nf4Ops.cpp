//===- Nf4Ops.cpp - nf4 op verifiers and folders --------------------------===//
//
// Every diagnostic names the attribute or operand at fault and gives the
// expected and the actual value, in terms of the nf4 type's layout.
//
//===----------------------------------------------------------------------===//
#include "dialects/nf4/Nf4Dialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Diagnostics.h"
#include "llvm/Support/FormatVariadic.h"

using namespace mlir;
using namespace mlir::nf4;

#define GET_OP_CLASSES
#include "dialects/nf4/Nf4Ops.cpp.inc"

//===----------------------------------------------------------------------===//
// ConstantOp
//===----------------------------------------------------------------------===//

namespace {
/// What one storage attribute of an nf4.constant must look like.
struct StorageSpec {
  StringRef name;
  /// True for 8-bit codes (ui8, or i8), false for f32 values.
  bool isByte;
  SmallVector<int64_t, 2> shape;
  /// Why it has that shape, e.g. "ceil(128 / 2) packed bytes".
  std::string why;
};
} // namespace

static bool isByteType(Type type) {
  auto intType = dyn_cast<IntegerType>(type);
  return intType && intType.getWidth() == 8 && !intType.isSigned();
}

static LogicalResult verifyStorage(ConstantOp op, ElementsAttr value,
                                   const StorageSpec &spec) {
  Type elementType = value.getElementType();
  if (spec.isByte ? !isByteType(elementType) : !elementType.isF32())
    return op.emitOpError("'")
           << spec.name << "' must hold " << (spec.isByte ? "ui8" : "f32")
           << " elements, got " << elementType;
  ArrayRef<int64_t> shape = value.getShapedType().getShape();
  if (shape != ArrayRef<int64_t>(spec.shape))
    return op.emitOpError("'")
           << spec.name << "' must have shape [" << spec.shape << "] ("
           << spec.why << "), got [" << shape << "]";
  return success();
}

LogicalResult ConstantOp::verify() {
  Nf4TensorType type = getType();
  int64_t numElements = type.getNumElements();
  int64_t numBlocks = type.getNumBlocks();
  bool dq = type.isDoubleQuantized();

  if (failed(verifyStorage(
          *this, getCodes(),
          {"codes",
           true,
           {type.getNumPackedBytes(), 1},
           llvm::formatv("ceil({0} / 2) packed bytes", numElements).str()})))
    return failure();
  if (failed(verifyStorage(
          *this, getAbsmax(),
          {"absmax",
           dq,
           {numBlocks},
           llvm::formatv("one {0} per block of {1}",
                         dq ? "8-bit code" : "scale", type.getBlockSize())
               .str()})))
    return failure();

  if (!dq) {
    if (getNestedAbsmax())
      return emitOpError("'nested_absmax' is only allowed with double "
                         "quantization, but the result type ")
             << type << " has no dq";
    if (getOffset())
      return emitOpError("'offset' is only allowed with double "
                         "quantization, but the result type ")
             << type << " has no dq";
    return success();
  }

  std::optional<ElementsAttr> nested = getNestedAbsmax();
  if (!nested)
    return emitOpError("needs 'nested_absmax' because the result type ")
           << type << " is double quantized";
  if (failed(verifyStorage(*this, *nested,
                           {"nested_absmax",
                            false,
                            {type.getNumNestedBlocks()},
                            llvm::formatv("ceil({0} blocks / {1})", numBlocks,
                                          type.getDqBlockSize())
                                .str()})))
    return failure();
  std::optional<APFloat> offset = getOffset();
  if (!offset)
    return emitOpError("needs 'offset' (the mean of absmax) because the "
                       "result type ")
           << type << " is double quantized";
  if (!offset->isFinite())
    return emitOpError("'offset' must be finite, got ")
           << offset->convertToFloat();
  return success();
}

DictionaryAttr ConstantOp::getValueDictionary() {
  Builder builder(getContext());
  SmallVector<NamedAttribute, 4> fields = {
      builder.getNamedAttr(getCodesAttrName(), getCodes()),
      builder.getNamedAttr(getAbsmaxAttrName(), getAbsmax())};
  if (ElementsAttr nested = getNestedAbsmaxAttr())
    fields.push_back(builder.getNamedAttr(getNestedAbsmaxAttrName(), nested));
  if (FloatAttr offset = getOffsetAttr())
    fields.push_back(builder.getNamedAttr(getOffsetAttrName(), offset));
  return builder.getDictionaryAttr(fields);
}

bool ConstantOp::isValueDictionary(Attribute value) {
  auto dict = dyn_cast<DictionaryAttr>(value);
  if (!dict || !isa_and_present<ElementsAttr>(dict.get("codes")) ||
      !isa_and_present<ElementsAttr>(dict.get("absmax")))
    return false;
  Attribute nested = dict.get("nested_absmax");
  Attribute offset = dict.get("offset");
  return (!nested || isa<ElementsAttr>(nested)) &&
         (!offset || isa<FloatAttr>(offset));
}

ConstantOp ConstantOp::createFromValueDictionary(OpBuilder &builder,
                                                 Location loc,
                                                 DictionaryAttr value,
                                                 Nf4TensorType type) {
  return ConstantOp::create(
      builder, loc, type, cast<ElementsAttr>(value.get("codes")),
      cast<ElementsAttr>(value.get("absmax")),
      dyn_cast_or_null<ElementsAttr>(value.get("nested_absmax")),
      dyn_cast_or_null<FloatAttr>(value.get("offset")), StringAttr());
}

OpFoldResult ConstantOp::fold(FoldAdaptor) { return getValueDictionary(); }

//===----------------------------------------------------------------------===//
// QuantizeOp / DequantizeOp
//===----------------------------------------------------------------------===//

/// Checks that the float side `floatType` (named `role`) of a conversion has
/// a static shape equal to the nf4 side's.
static LogicalResult verifySameShape(Operation *op, StringRef role,
                                     RankedTensorType floatType,
                                     Nf4TensorType nf4Type) {
  if (!floatType.hasStaticShape())
    return op->emitOpError()
           << role << " must have a static shape, got " << floatType;
  if (floatType.getShape() != nf4Type.getShape())
    return op->emitOpError()
           << role << " shape must equal the nf4 shape [" << nf4Type.getShape()
           << "], got [" << floatType.getShape() << "]";
  return success();
}

LogicalResult QuantizeOp::verify() {
  return verifySameShape(*this, "input", getInput().getType(), getType());
}

LogicalResult DequantizeOp::verify() {
  return verifySameShape(*this, "result", getType(), getInput().getType());
}
