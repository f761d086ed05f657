//===- Nf4WeightData.cpp - Weight bytes for --nf4-quantize-frozen ---------===//
#include "passes/Nf4WeightData.h"

#include "dialects/qrt/QrtDialect.h"

#include "mlir/IR/DialectResourceBlobManager.h"

#include <cstring>

using namespace mlir;
using namespace mlir::qlora;
namespace format = ::qlora::format;

FailureOr<std::shared_ptr<const format::SafetensorsFile>>
CheckpointCache::open(Operation *op, StringRef weight, StringRef path) {
  auto it = files.find(path);
  if (it != files.end())
    return it->second;
  std::string error;
  std::shared_ptr<const format::SafetensorsFile> file =
      format::SafetensorsFile::open(path.str(), error);
  if (!file)
    return op->emitOpError("cannot read the bytes of weight '")
           << weight << "': " << error;
  files[path] = file;
  return file;
}

std::optional<format::DType> mlir::qlora::getFloatDType(Type elementType) {
  std::optional<format::DType> dtype = qrt::getFormatDType(elementType);
  if (!dtype || !format::isFloatDType(*dtype) || *dtype == format::DType::F64)
    return std::nullopt;
  return dtype;
}

/// The bytes of an inline value: a dense_resource blob, or dense elements
/// (a splat expanded to every element).
static FailureOr<WeightBytes> getValueBytes(WeightOp weight, ElementsAttr value,
                                            WeightBytes result) {
  if (auto resource = dyn_cast<DenseResourceElementsAttr>(value)) {
    AsmResourceBlob *blob = resource.getRawHandle().getBlob();
    if (!blob)
      return weight.emitOpError("'")
             << weight.getName() << "' names resource '"
             << resource.getRawHandle().getKey()
             << "', which the file does not hold (elided?)";
    ArrayRef<char> data = blob->getData();
    result.bytes = std::as_bytes(std::span(data.data(), data.size()));
  } else if (auto dense = dyn_cast<DenseIntOrFPElementsAttr>(value)) {
    ArrayRef<char> raw = dense.getRawData();
    if (dense.isSplat()) {
      auto expanded = std::make_shared<std::vector<std::byte>>(
          size_t(result.count) * raw.size());
      for (size_t at = 0; at < expanded->size(); at += raw.size())
        std::memcpy(expanded->data() + at, raw.data(), raw.size());
      result.bytes = std::span<const std::byte>(*expanded);
      result.owner = expanded;
    } else {
      result.bytes = std::as_bytes(std::span(raw.data(), raw.size()));
    }
  } else {
    return weight.emitOpError("'")
           << weight.getName()
           << "' has an inline value that is neither dense nor a "
              "dense_resource";
  }
  size_t expected = size_t(result.count) * format::dtypeSize(result.dtype);
  if (result.bytes.size() != expected)
    return weight.emitOpError("'")
           << weight.getName() << "' has " << result.bytes.size()
           << " bytes inline, expected " << expected;
  return result;
}

FailureOr<WeightBytes> mlir::qlora::getWeightBytes(WeightOp weight,
                                                   CheckpointCache &cache) {
  RankedTensorType type = weight.getTensorType();
  WeightBytes result;
  result.count = type.getNumElements();
  std::optional<format::DType> dtype = getFloatDType(type.getElementType());
  if (!dtype)
    return weight.emitOpError("'")
           << weight.getName() << "' is " << type
           << "; only f32, bf16 and f16 weights can be quantized";
  result.dtype = *dtype;
  if (std::optional<ElementsAttr> value = weight.getValue())
    return getValueBytes(weight, *value, std::move(result));

  SourceAttr source = *weight.getSource();
  auto file = cache.open(weight, weight.getName(), source.getFile());
  if (failed(file))
    return failure();
  const format::TensorView *tensor = (*file)->find(source.getKey().str());
  if (!tensor)
    return weight.emitOpError("'")
           << weight.getName() << "': '" << source.getFile()
           << "' has no tensor '" << source.getKey() << "'";
  if (tensor->dtype != *dtype || ArrayRef(tensor->shape) != type.getShape())
    return weight.emitOpError("'")
           << weight.getName() << "': tensor '" << source.getKey() << "' in '"
           << source.getFile() << "' is " << format::dtypeName(tensor->dtype)
           << " " << format::formatShape(tensor->shape) << ", expected "
           << type;
  result.bytes = std::as_bytes(tensor->bytes);
  result.owner = *file;
  return result;
}

DenseResourceElementsAttr
mlir::qlora::borrowAsResource(ShapedType type, StringRef name,
                              std::span<const std::byte> bytes,
                              std::shared_ptr<const void> owner) {
  // The element's natural alignment, so that equal pieces print equally
  // wherever they live; bytes borrowed from a mapped file may sit at any
  // offset, so claim no more alignment than they have.
  size_t alignment = std::max<size_t>(1, type.getElementTypeBitWidth() / 8);
  if (reinterpret_cast<uintptr_t>(bytes.data()) % alignment)
    alignment = 1;
  AsmResourceBlob blob(
      ArrayRef<char>(reinterpret_cast<const char *>(bytes.data()),
                     bytes.size()),
      alignment,
      [owner = std::move(owner)](void *, size_t, size_t) mutable {
        owner.reset();
      },
      /*dataIsMutable=*/false);
  return DenseResourceElementsAttr::get(type, name, std::move(blob));
}
