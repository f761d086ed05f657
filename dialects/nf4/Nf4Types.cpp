//===- Nf4Types.cpp - nf4 tensor type: syntax, verifier, sizes ------------===//
#include "dialects/nf4/Nf4Dialect.h"
#include "runtime/format/Nf4Layout.h"


#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/MathExtras.h"

using namespace mlir;
using namespace mlir::nf4;

#define GET_TYPEDEF_CLASSES
#include "dialects/nf4/Nf4Types.cpp.inc"

void Nf4Dialect::registerTypes() {
  addTypes<
#define GET_TYPEDEF_LIST
#include "dialects/nf4/Nf4Types.cpp.inc"
      >();
}

//===----------------------------------------------------------------------===//
// Syntax: !nf4.tensor<4096x4096, block = 64[, dq = 256]>
//===----------------------------------------------------------------------===//

Type Nf4TensorType::parse(AsmParser &parser) {
  SMLoc loc = parser.getCurrentLocation();
  SmallVector<int64_t> shape;
  int64_t blockSize = 0;
  int64_t dqBlockSize = 0;
  if (parser.parseLess() ||
      parser.parseDimensionList(shape, /*allowDynamic=*/false,
                                /*withTrailingX=*/false) ||
      parser.parseComma() || parser.parseKeyword("block") ||
      parser.parseEqual() || parser.parseInteger(blockSize))
    return {};
  if (succeeded(parser.parseOptionalComma()) &&
      (parser.parseKeyword("dq") || parser.parseEqual() ||
       parser.parseInteger(dqBlockSize)))
    return {};
  if (parser.parseGreater())
    return {};
  return getChecked([&] { return parser.emitError(loc); }, parser.getContext(),
                    shape, blockSize, dqBlockSize);
}

void Nf4TensorType::print(AsmPrinter &printer) const {
  printer << '<';
  llvm::interleave(getShape(), printer, "x");
  printer << ", block = " << getBlockSize();
  if (isDoubleQuantized())
    printer << ", dq = " << getDqBlockSize();
  printer << '>';
}

//===----------------------------------------------------------------------===//
// Verifier
//===----------------------------------------------------------------------===//

LogicalResult
Nf4TensorType::verify(function_ref<InFlightDiagnostic()> emitError,
                      ArrayRef<int64_t> shape, int64_t blockSize,
                      int64_t dqBlockSize) {
  if (shape.empty())
    return emitError() << "nf4 tensor needs at least one dimension";
  int64_t numElements = 1;
  for (auto [index, dim] : llvm::enumerate(shape)) {
    if (dim <= 0)
      return emitError() << "nf4 tensor dimension #" << index
                         << " must be a positive static size, got " << dim;
    if (llvm::MulOverflow(numElements, dim, numElements))
      return emitError() << "nf4 tensor of shape [" << shape
                         << "] has more than 2^63 elements";
  }
  if (blockSize < kMinBlockSize || blockSize > kMaxBlockSize ||
      !llvm::isPowerOf2_64(blockSize))
    return emitError() << "nf4 block size must be a power of two in ["
                       << kMinBlockSize << ", " << kMaxBlockSize
                       << "] (bitsandbytes' block sizes), got " << blockSize;
  if (dqBlockSize != 0 && dqBlockSize != kNestedBlockSize)
    return emitError() << "nf4 dq block size must be " << kNestedBlockSize
                       << " (bitsandbytes' nested blocksize) or 0 for no "
                          "double quantization, got "
                       << dqBlockSize;
  return success();
}

//===----------------------------------------------------------------------===//
// Sizes
//===----------------------------------------------------------------------===//

int64_t Nf4TensorType::getNumElements() const {
  int64_t numElements = 1;
  for (int64_t dim : getShape())
    numElements *= dim;
  return numElements;
}

int64_t Nf4TensorType::getNumBlocks() const {
  return llvm::divideCeil(getNumElements(), getBlockSize());
}

int64_t Nf4TensorType::getNumPackedBytes() const {
  return llvm::divideCeil(getNumElements(), 2);
}

int64_t Nf4TensorType::getNumNestedBlocks() const {
  if (!isDoubleQuantized())
    return 0;
  return llvm::divideCeil(getNumBlocks(), getDqBlockSize());
}

int64_t Nf4TensorType::getStorageBits() const {
  int64_t bits = getNumPackedBytes() * 8;
  if (!isDoubleQuantized())
    return bits + getNumBlocks() * 32;
  // 8-bit scale codes, fp32 nested scales and the fp32 offset.
  return bits + getNumBlocks() * 8 + getNumNestedBlocks() * 32 + 32;
}

int64_t Nf4TensorType::getStorageBytes() const {
  return qlora::format::Nf4Layout::compute(getNumElements(), getBlockSize(),
                                           getDqBlockSize())
      ->totalBytes;
}

double Nf4TensorType::getBitsPerParameter() const {
  return double(getStorageBits()) / double(getNumElements());
}
