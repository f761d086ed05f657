//===- InitSections.cpp - Initial buffer bytes as train.bin sections ------===//
#include "compiler/TrainBinWriter/InitSections.h"

#include "dialects/qlora/QloraDialect.h"
#include "runtime/format/CounterRng.h"
#include "runtime/format/Nf4Layout.h"
#include "runtime/format/TrainBin.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/Endian.h"

#include <cmath>
#include <cstring>

using namespace mlir;

namespace format = ::qlora::format;

namespace qloracc {

// Attribute storage, checkpoints and train.bin are all little-endian; the
// bytes are copied as the host holds them.
static_assert(llvm::endianness::native == llvm::endianness::little,
              "train.bin sections are written in host byte order");

/// Spells a dtype and shape as "F32 [4, 64]" for error messages.
static std::string describe(format::DType dtype, ArrayRef<int64_t> shape) {
  return std::string(format::dtypeName(dtype)) + " " +
         format::formatShape(std::span<const int64_t>(shape));
}

FailureOr<StoredLayout> getStoredLayout(qrt::BufferOp buffer) {
  StoredLayout layout;
  Type stored = buffer.getStoredType();
  if (auto nf4 = dyn_cast_or_null<nf4::Nf4TensorType>(stored)) {
    // Raw bytes in the runtime's one-buffer NF4 layout.
    layout.shape.push_back(nf4.getStorageBytes());
    layout.valueBytes = nf4.getStorageBytes();
    layout.elementType = nf4;
    return layout;
  }
  if (!stored) {
    layout.shape.push_back(buffer.getSize());
    layout.valueBytes = buffer.getSize();
    return layout;
  }
  Type element = stored;
  if (auto tensor = dyn_cast<RankedTensorType>(stored)) {
    element = tensor.getElementType();
    llvm::append_range(layout.shape, tensor.getShape());
  }
  std::optional<format::DType> dtype = qrt::getFormatDType(element);
  if (!dtype || !format::toSchemaDType(*dtype))
    return buffer.emitOpError("stores ")
           << stored
           << ", whose element type train.bin cannot hold (f32, bf16, f16, "
              "i32, i64 or ui8)";
  layout.dtype = *dtype;
  layout.elementType = element;
  // The verifier checked that `type` has a static shape and fits in `size`.
  layout.valueBytes = *qrt::getStoredByteSize(stored);
  return layout;
}

int32_t InitSectionBuilder::addOwnedSection(StringRef name,
                                            std::vector<std::byte> data) {
  format::TrainBinSectionData section;
  section.name = name.str();
  section.owned = std::move(data);
  contents.desc.sections.push_back(std::move(section));
  return int32_t(contents.desc.sections.size() - 1);
}

int32_t InitSectionBuilder::addSection(qrt::BufferOp buffer, StringRef name,
                                       std::span<const std::byte> data) {
  uint64_t size = buffer.getSize();
  if (data.size() != size) {
    std::vector<std::byte> padded(size);
    std::memcpy(padded.data(), data.data(),
                std::min<uint64_t>(size, data.size()));
    return addOwnedSection(name, std::move(padded));
  }
  format::TrainBinSectionData section;
  section.name = name.str();
  section.borrowed = data;
  contents.desc.sections.push_back(std::move(section));
  return int32_t(contents.desc.sections.size() - 1);
}

int32_t InitSectionBuilder::addZeros(uint64_t bytes) {
  auto [it, inserted] = zeroSectionBySize.try_emplace(bytes, -1);
  if (inserted)
    it->second = addOwnedSection(("zeros." + Twine(bytes)).str(),
                                 std::vector<std::byte>(bytes));
  return it->second;
}

const format::SafetensorsFile *
InitSectionBuilder::openCheckpoint(qrt::BufferOp buffer, StringRef name,
                                   StringRef path) {
  auto it = checkpointByPath.find(path);
  if (it != checkpointByPath.end())
    return it->second;
  std::string error;
  std::unique_ptr<format::SafetensorsFile> file =
      format::SafetensorsFile::open(path.str(), error);
  if (!file) {
    buffer.emitOpError("cannot read the bytes of weight '")
        << name << "': " << error;
    return nullptr;
  }
  const format::SafetensorsFile *opened = file.get();
  contents.checkpoints.push_back(std::move(file));
  checkpointByPath[path] = opened;
  return opened;
}

FailureOr<int32_t>
InitSectionBuilder::addCheckpointTensor(qrt::BufferOp buffer, StringRef name,
                                        const StoredLayout &layout,
                                        StringRef path, StringRef key) {
  const format::SafetensorsFile *file = openCheckpoint(buffer, name, path);
  if (!file)
    return failure();
  const format::TensorView *tensor = file->find(key.str());
  if (!tensor)
    return buffer.emitOpError("weight '")
           << name << "': '" << path << "' has no tensor '" << key << "'";
  if (tensor->dtype != layout.dtype || ArrayRef(tensor->shape) != layout.shape)
    return buffer.emitOpError("weight '")
           << name << "': tensor '" << key << "' in '" << path << "' is "
           << describe(tensor->dtype, tensor->shape) << ", expected "
           << describe(layout.dtype, layout.shape);
  contents.checkpointBytes += tensor->bytes.size();
  return addSection(buffer, name, std::as_bytes(tensor->bytes));
}

/// The little-endian bytes of `elements`, which must be `expectedBytes`
/// long: a dense_resource's blob or dense elements' raw data, a splat
/// expanded into `expanded`.
static FailureOr<std::span<const std::byte>>
getElementBytes(qrt::BufferOp buffer, StringRef name, ElementsAttr elements,
                uint64_t expectedBytes, std::vector<std::byte> &expanded) {
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(elements)) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob)
      return buffer.emitOpError("the inline value of '")
             << name << "' names resource '" << resource.getRawHandle().getKey()
             << "', which the file does not hold (elided?)";
    ArrayRef<char> data = blob->getData();
    if (data.size() != expectedBytes)
      return buffer.emitOpError("the inline value of '")
             << name << "' holds " << data.size() << " bytes, expected "
             << expectedBytes;
    return std::as_bytes(std::span(data.data(), data.size()));
  }
  auto dense = dyn_cast<DenseIntOrFPElementsAttr>(elements);
  if (!dense || dense.getElementType().isInteger(1))
    return buffer.emitOpError("the inline value of '")
           << name << "' is neither dense nor a dense_resource: " << elements;
  ArrayRef<char> raw = dense.getRawData();
  std::span<const std::byte> bytes =
      std::as_bytes(std::span(raw.data(), raw.size()));
  if (!dense.isSplat())
    return bytes;
  // A splat stores one element; the buffer needs every one.
  expanded.assign(expectedBytes, std::byte(0));
  for (uint64_t at = 0; at + bytes.size() <= expectedBytes; at += bytes.size())
    std::memcpy(expanded.data() + at, bytes.data(), bytes.size());
  return std::span<const std::byte>(expanded);
}

FailureOr<int32_t> InitSectionBuilder::addElements(qrt::BufferOp buffer,
                                                   StringRef name,
                                                   const StoredLayout &layout,
                                                   ElementsAttr elements) {
  ShapedType type = elements.getShapedType();
  if (type.getElementType() != layout.elementType ||
      type.getShape() != ArrayRef(layout.shape))
    return buffer.emitOpError("the inline value of '")
           << name << "' is " << type << ", expected "
           << buffer.getStoredType();
  std::vector<std::byte> expanded;
  FailureOr<std::span<const std::byte>> bytes =
      getElementBytes(buffer, name, elements, layout.valueBytes, expanded);
  if (failed(bytes))
    return failure();
  if (!expanded.empty())
    return addOwnedSection(name, std::move(expanded));
  return addSection(buffer, name, *bytes);
}

FailureOr<int32_t> InitSectionBuilder::addNf4Pieces(qrt::BufferOp buffer,
                                                    StringRef name,
                                                    nf4::Nf4TensorType type,
                                                    DictionaryAttr pieces) {
  if (!nf4::ConstantOp::isValueDictionary(pieces))
    return buffer.emitOpError("NF4 weight '")
           << name << "' has an 'init' that is not an nf4.constant's pieces: "
           << pieces;
  format::Nf4Layout layout = *format::Nf4Layout::compute(
      type.getNumElements(), type.getBlockSize(), type.getDqBlockSize());
  std::vector<std::byte> data(buffer.getSize());
  auto copyPiece = [&](StringRef piece, int64_t offset,
                       int64_t bytes) -> LogicalResult {
    std::vector<std::byte> expanded;
    FailureOr<std::span<const std::byte>> source =
        getElementBytes(buffer, (name + "." + piece).str(),
                        cast<ElementsAttr>(pieces.get(piece)), bytes, expanded);
    if (failed(source))
      return failure();
    std::memcpy(data.data() + offset, source->data(), source->size());
    return success();
  };
  if (failed(copyPiece("codes", layout.codesOffset, layout.codesBytes)) ||
      failed(copyPiece("absmax", layout.absmaxOffset, layout.absmaxBytes)))
    return failure();
  if (layout.isDoubleQuantized()) {
    if (failed(copyPiece("nested_absmax", layout.nestedAbsmaxOffset,
                         layout.nestedAbsmaxBytes)))
      return failure();
    float offset = float(
        cast<FloatAttr>(pieces.get("offset")).getValue().convertToFloat());
    std::memcpy(data.data() + layout.offsetOffset, &offset, sizeof(float));
  }
  contents.nf4Bytes += layout.totalBytes;
  return addOwnedSection(name, std::move(data));
}

FailureOr<int32_t>
InitSectionBuilder::addKaimingUniform(qrt::BufferOp buffer, StringRef name,
                                      const StoredLayout &layout) {
  if (layout.dtype != format::DType::F32 || layout.shape.size() != 2)
    return buffer.emitOpError("kaiming_uniform initialises an f32 [r, in] "
                              "matrix, but '")
           << name << "' stores " << buffer.getStoredType();
  std::optional<int64_t> seed = buffer.getSeed();
  if (!seed)
    return buffer.emitOpError("kaiming_uniform init of '")
           << name << "' has no 'seed'";
  // PEFT's kaiming_uniform_(a=sqrt(5)) on [r, in] is U(-1/sqrt(in),
  // 1/sqrt(in)); the values are qloracc's counter-based stream for
  // (seed, name), the same the runtime would draw.
  int64_t in = layout.shape[1];
  float bound = float(1.0 / std::sqrt(double(in)));
  format::CounterRng rng(uint64_t(*seed), name.str());
  uint64_t count = uint64_t(layout.shape[0] * in);
  std::vector<std::byte> data(buffer.getSize());
  for (uint64_t i = 0; i < count; ++i) {
    float value = rng.uniform(i, -bound, bound);
    std::memcpy(data.data() + i * sizeof(float), &value, sizeof(float));
  }
  return addOwnedSection(name, std::move(data));
}

FailureOr<int32_t> InitSectionBuilder::addScalar(qrt::BufferOp buffer,
                                                 StringRef name,
                                                 const StoredLayout &layout,
                                                 TypedAttr scalar) {
  if (scalar.getType() != layout.elementType || !layout.shape.empty())
    return buffer.emitOpError("the constant value of '")
           << name << "' is " << scalar.getType() << ", expected "
           << buffer.getStoredType();
  APInt bits = isa<FloatAttr>(scalar)
                   ? cast<FloatAttr>(scalar).getValue().bitcastToAPInt()
                   : cast<IntegerAttr>(scalar).getValue();
  std::vector<std::byte> data(buffer.getSize());
  unsigned width = bits.getBitWidth();
  for (unsigned byte = 0; byte * 8 < width; ++byte)
    data[byte] = std::byte(
        bits.extractBitsAsZExtValue(std::min(8u, width - byte * 8), byte * 8));
  return addOwnedSection(name, std::move(data));
}

FailureOr<int32_t>
InitSectionBuilder::addInitSection(qrt::BufferOp buffer, StringRef name,
                                   const StoredLayout &layout) {
  std::optional<Attribute> init = buffer.getInit();
  if (!init) {
    if (buffer.getBufferClass() == qrt::BufferClass::weight)
      return buffer.emitOpError("weight '")
             << name
             << "' has no bytes: the graph is shape-only (a shape-only "
                "preset, or imported with --no-weights); import it with "
                "weights, or let qlora-run draw random weights with "
                "--random-weights (for benchmarks)";
    return -1;
  }
  if (!layout.elementType)
    return buffer.emitOpError("'")
           << name << "' has an 'init' but no 'type' to check it against";

  if (auto nf4 = dyn_cast<nf4::Nf4TensorType>(layout.elementType)) {
    auto pieces = dyn_cast<DictionaryAttr>(*init);
    if (!pieces)
      return buffer.emitOpError("NF4 weight '")
             << name << "' needs its nf4.constant pieces as 'init', got "
             << *init;
    return addNf4Pieces(buffer, name, nf4, pieces);
  }
  if (auto source = dyn_cast<mlir::qlora::SourceAttr>(*init))
    return addCheckpointTensor(buffer, name, layout, source.getFile(),
                               source.getKey());
  if (auto loraInit = dyn_cast<mlir::qlora::LoraInitAttr>(*init)) {
    if (loraInit.getValue() == mlir::qlora::LoraInit::zeros)
      return addZeros(buffer.getSize());
    return addKaimingUniform(buffer, name, layout);
  }
  if (auto elements = dyn_cast<ElementsAttr>(*init))
    return addElements(buffer, name, layout, elements);
  if (isa<FloatAttr, IntegerAttr>(*init))
    return addScalar(buffer, name, layout, cast<TypedAttr>(*init));
  return buffer.emitOpError("'")
         << name << "' has an 'init' train.bin cannot hold: " << *init;
}

} // namespace qloracc
