//===- QrtOps.cpp - qrt op verifiers --------------------------------------===//
//
// Every diagnostic names the attribute or operand at fault and gives the
// expected and the actual value. Checks that need a buffer's size or
// placement look through to its defining `qrt.buffer` when that is visible
// (function arguments are trusted: the caller's ops were checked).
//
//===----------------------------------------------------------------------===//
#include "dialects/nf4/Nf4Dialect.h"
#include "dialects/qrt/QrtDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/MathExtras.h"

using namespace mlir;
using namespace mlir::qrt;

#define GET_OP_CLASSES
#include "dialects/qrt/QrtOps.cpp.inc"

//===----------------------------------------------------------------------===//
// BufferOp
//===----------------------------------------------------------------------===//

std::optional<::qlora::format::DType> mlir::qrt::getFormatDType(Type type) {
  if (type.isF64())
    return ::qlora::format::DType::F64;
  if (type.isF32())
    return ::qlora::format::DType::F32;
  if (type.isF16())
    return ::qlora::format::DType::F16;
  if (type.isBF16())
    return ::qlora::format::DType::BF16;
  auto integer = dyn_cast<IntegerType>(type);
  if (!integer)
    return std::nullopt;
  switch (integer.getWidth()) {
  case 1:
    return ::qlora::format::DType::Bool;
  case 8:
    return integer.isUnsigned() ? ::qlora::format::DType::U8
                                : ::qlora::format::DType::I8;
  case 16:
    return integer.isUnsigned() ? std::nullopt
                                : std::optional(::qlora::format::DType::I16);
  case 32:
    return integer.isUnsigned() ? std::nullopt
                                : std::optional(::qlora::format::DType::I32);
  case 64:
    return integer.isUnsigned() ? std::nullopt
                                : std::optional(::qlora::format::DType::I64);
  default:
    return std::nullopt;
  }
}

FailureOr<::qlora::format::KernelParams>
mlir::qrt::getKernelParams(KernelOp kernel) {
  ::qlora::format::KernelParams params;
  for (NamedAttribute param : kernel.getParams()) {
    std::string name = param.getName().str();
    Attribute value = param.getValue();
    if (auto flag = dyn_cast<BoolAttr>(value))
      params.set(name, int64_t(flag.getValue()));
    else if (auto integer = dyn_cast<IntegerAttr>(value))
      params.set(name, integer.getValue().getSExtValue());
    else if (auto real = dyn_cast<FloatAttr>(value))
      params.set(name, real.getValueAsDouble());
    else if (auto text = dyn_cast<StringAttr>(value))
      params.set(name, text.str());
    else if (auto ints = dyn_cast<DenseI64ArrayAttr>(value))
      params.set(name, std::vector<int64_t>(ints.asArrayRef().begin(),
                                            ints.asArrayRef().end()));
    else
      return kernel.emitOpError("parameter '")
             << name << "' is " << value
             << ", not an integer, float, string or array<i64>";
  }
  return params;
}

std::optional<int64_t> mlir::qrt::getStoredByteSize(Type type) {
  auto bytesOf = [](Type element, int64_t count) -> std::optional<int64_t> {
    if (!element.isIntOrFloat())
      return std::nullopt;
    return (count * int64_t(element.getIntOrFloatBitWidth()) + 7) / 8;
  };
  if (auto nf4 = dyn_cast<nf4::Nf4TensorType>(type))
    return nf4.getStorageBytes();
  if (auto tensor = dyn_cast<RankedTensorType>(type)) {
    if (!tensor.hasStaticShape())
      return std::nullopt;
    return bytesOf(tensor.getElementType(), tensor.getNumElements());
  }
  return bytesOf(type, 1);
}

bool mlir::qrt::isPersistent(BufferClass bufferClass) {
  switch (bufferClass) {
  case BufferClass::weight:
  case BufferClass::quantized_weight:
  case BufferClass::lora:
  case BufferClass::optimizer:
  case BufferClass::io:
    return true;
  case BufferClass::activation:
  case BufferClass::recompute:
  case BufferClass::gradient:
  case BufferClass::workspace:
    return false;
  }
  llvm_unreachable("unknown buffer class");
}

LogicalResult BufferOp::verify() {
  if (getSize() <= 0)
    return emitOpError("'size' must be a positive number of bytes, got ")
           << getSize();
  int64_t alignment = getAlignment();
  if (alignment <= 0 || !llvm::isPowerOf2_64(alignment))
    return emitOpError("'alignment' must be a positive power of two, got ")
           << alignment;
  if (Type stored = getStoredType()) {
    std::optional<int64_t> bytes = getStoredByteSize(stored);
    if (!bytes)
      return emitOpError("'type' must be a statically shaped tensor or a "
                         "scalar of integers or floats, got ")
             << stored;
    if (getSize() < *bytes)
      return emitOpError("'size' ")
             << getSize() << " is smaller than the " << *bytes
             << " bytes of its 'type' " << stored;
    // The memory report counts NF4 bytes by class, so the two must agree.
    bool quantized = getBufferClass() == BufferClass::quantized_weight;
    if (quantized != isa<nf4::Nf4TensorType>(stored))
      return emitOpError("class <")
             << stringifyBufferClass(getBufferClass()) << "> with 'type' "
             << stored << ": a buffer stores an !nf4.tensor if and only if "
             << "its class is <quantized_weight>";
  }
  if (getSeed() && !getInit())
    return emitOpError("'seed' needs an 'init' to seed");
  std::optional<int64_t> offset = getOffset();
  if (!offset)
    return success();
  if (*offset < 0)
    return emitOpError("'offset' must be non-negative, got ") << *offset;
  if (*offset % alignment != 0)
    return emitOpError("'offset' must be a multiple of the alignment ")
           << alignment << ", got " << *offset;
  return success();
}

//===----------------------------------------------------------------------===//
// CopyOp
//===----------------------------------------------------------------------===//

/// Checks `bytes` bytes at `offset` of the operand `name` against the size
/// of its defining `qrt.buffer`, if visible.
static LogicalResult verifyCopyRange(CopyOp op, StringRef name, Value buffer,
                                     int64_t offset, int64_t bytes) {
  if (offset < 0)
    return op.emitOpError("'")
           << name << "_offset' must be non-negative, got " << offset;
  auto definition = buffer.getDefiningOp<BufferOp>();
  if (!definition)
    return success();
  int64_t size = definition.getSize();
  if (offset > size || bytes > size - offset)
    return op.emitOpError("'")
           << name << "' range of " << bytes << " bytes at offset " << offset
           << " exceeds its buffer of " << size << " bytes";
  return success();
}

LogicalResult CopyOp::verify() {
  int64_t bytes = getBytes();
  if (bytes <= 0)
    return emitOpError("'bytes' must be positive, got ") << bytes;
  if (failed(verifyCopyRange(*this, "src", getSrc(), getSrcOffset(), bytes)) ||
      failed(verifyCopyRange(*this, "dst", getDst(), getDstOffset(), bytes)))
    return failure();
  if (getSrc() != getDst())
    return success();
  int64_t distance = getSrcOffset() > getDstOffset()
                         ? getSrcOffset() - getDstOffset()
                         : getDstOffset() - getSrcOffset();
  if (distance < bytes)
    return emitOpError("copies between overlapping ranges of one buffer: "
                       "'src_offset' ")
           << getSrcOffset() << " and 'dst_offset' " << getDstOffset()
           << " must be at least 'bytes' (" << bytes << ") apart";
  return success();
}

//===----------------------------------------------------------------------===//
// PrefetchOp / EvictOp
//===----------------------------------------------------------------------===//

/// Paging only makes sense for buffers placed `paged`.
static LogicalResult verifyPagedBuffer(Operation *op, Value buffer) {
  auto definition = buffer.getDefiningOp<BufferOp>();
  if (!definition || definition.getPlacement() == Placement::paged)
    return success();
  return op->emitOpError("'buffer' must have placement <paged>, got <")
         << stringifyPlacement(definition.getPlacement()) << ">";
}

LogicalResult PrefetchOp::verify() {
  return verifyPagedBuffer(*this, getBuffer());
}

LogicalResult EvictOp::verify() {
  return verifyPagedBuffer(*this, getBuffer());
}

//===----------------------------------------------------------------------===//
// KernelOp
//===----------------------------------------------------------------------===//

static bool isCppIdentifier(StringRef name) {
  if (name.empty() || llvm::isDigit(name.front()))
    return false;
  return llvm::all_of(name,
                      [](char c) { return llvm::isAlnum(c) || c == '_'; });
}

LogicalResult KernelOp::verify() {
  if (!isCppIdentifier(getTemplateName()))
    return emitOpError("'template_name' must be a C++ identifier naming a "
                       "template in kernels/, got \"")
           << getTemplateName() << "\"";
  for (NamedAttribute param : getParams()) {
    Attribute value = param.getValue();
    if (!isa<IntegerAttr, FloatAttr, StringAttr, TypeAttr, DenseI64ArrayAttr>(
            value))
      return emitOpError("param '")
             << param.getName().getValue()
             << "' must be an integer, float, bool, string, type or i64 "
                "array, got "
             << value;
  }
  return success();
}

//===----------------------------------------------------------------------===//
// LaunchOp
//===----------------------------------------------------------------------===//

/// Checks a (x, y, z) launch extent `name` against CUDA's per-axis limits.
static LogicalResult verifyDim3(LaunchOp op, StringRef name,
                                ArrayRef<int64_t> dims,
                                ArrayRef<int64_t> limits) {
  if (dims.size() != 3)
    return op.emitOpError("'")
           << name << "' must have 3 entries (x, y, z), got " << dims.size();
  static constexpr StringLiteral kAxes[] = {"x", "y", "z"};
  for (auto [axis, dim, limit] : llvm::zip_equal(kAxes, dims, limits)) {
    if (dim <= 0)
      return op.emitOpError("'")
             << name << "' " << axis << " must be positive, got " << dim;
    if (dim > limit)
      return op.emitOpError("'") << name << "' " << axis << " must be at most "
                                 << limit << ", got " << dim;
  }
  return success();
}

LogicalResult LaunchOp::verify() {
  static constexpr int64_t kGridLimits[] = {(int64_t(1) << 31) - 1, 65535,
                                            65535};
  static constexpr int64_t kBlockLimits[] = {1024, 1024, 64};
  if (failed(verifyDim3(*this, "grid", getGrid(), kGridLimits)) ||
      failed(verifyDim3(*this, "block", getBlock(), kBlockLimits)))
    return failure();
  ArrayRef<int64_t> block = getBlock();
  int64_t threads = block[0] * block[1] * block[2];
  if (threads > kMaxThreadsPerBlock)
    return emitOpError("'block' must have at most ")
           << kMaxThreadsPerBlock << " threads, got " << threads << " ("
           << block[0] << " x " << block[1] << " x " << block[2] << ")";
  if (getSmem() < 0 || getSmem() > kMaxSharedMemoryBytes)
    return emitOpError("'smem' must be in [0, ")
           << kMaxSharedMemoryBytes << "] bytes, got " << getSmem();
  return success();
}

LogicalResult LaunchOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  Operation *symbol =
      symbolTable.lookupNearestSymbolFrom(*this, getKernelAttr());
  if (!symbol)
    return emitOpError("'kernel' references an undefined symbol ")
           << getKernelAttr();
  if (!isa<KernelOp>(symbol))
    return emitOpError("'kernel' ")
           << getKernelAttr() << " must be a 'qrt.kernel', got '"
           << symbol->getName() << "'";
  return success();
}
