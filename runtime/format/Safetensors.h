//===- Safetensors.h - Memory-mapped safetensors files ----------*- C++ -*-===//
//
// Reads the safetensors format (an 8-byte little-endian header length, a JSON
// header, then raw tensor bytes) through mmap. Every offset in the header is
// checked against the file before a byte is handed out, so a damaged or
// malicious file yields an error message, never an out-of-bounds read.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_FORMAT_SAFETENSORS_H
#define QLORACC_RUNTIME_FORMAT_SAFETENSORS_H

#include "runtime/format/DType.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qlora::format {

/// Size of the little-endian u64 header length that starts every file.
inline constexpr uint64_t kSafetensorsLengthBytes = 8;
/// The header key of the optional string->string metadata map.
inline constexpr std::string_view kSafetensorsMetadataKey = "__metadata__";

/// Bytes taken by a tensor of `dtype` and `shape`; std::nullopt when a
/// dimension is negative, the element count does not fit int64_t or the byte
/// size does not fit uint64_t. Shared by the reader and the writer so that
/// both accept exactly the same shapes.
std::optional<uint64_t> tensorByteSize(DType dtype,
                                       std::span<const int64_t> shape);

/// Spells a shape as "[2, 3]" for error messages ("[]" for a scalar).
std::string formatShape(std::span<const int64_t> shape);

/// True when `text` is well-formed UTF-8, as every JSON string must be.
bool isValidUtf8(std::string_view text);

/// `text` with control characters escaped as \xNN, and every byte from 0x80
/// on too when `text` is not valid UTF-8: names taken from a file then keep
/// an error message on one line and printable or loggable as JSON.
std::string escapeForMessage(std::string_view text);

/// One tensor of a safetensors file: its header entry and its bytes.
struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  /// Offset of the first byte from the start of the file.
  uint64_t fileOffset = 0;
  /// The bytes, inside the file's mapping; valid while the file is open.
  /// Not necessarily aligned for `dtype`: the format only promises 8-byte
  /// alignment of the data buffer when the writer padded the header (ours
  /// and the Python package do), and tensors follow each other unpadded.
  std::span<const uint8_t> bytes;

  int64_t numElements() const;
};

/// A safetensors file, mapped read-only for as long as the object lives.
class SafetensorsFile {
public:
  /// Opens and validates `path`. On failure returns nullptr and sets `error`
  /// to one line naming the file, the byte offset or key, what was expected
  /// and what was found.
  static std::unique_ptr<SafetensorsFile> open(const std::string &path,
                                               std::string &error);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile &) = delete;
  SafetensorsFile &operator=(const SafetensorsFile &) = delete;

  const std::string &path() const { return path_; }
  /// Tensors in the order of their data offsets.
  const std::vector<TensorView> &tensors() const { return tensors_; }
  /// The tensor called `name`, or nullptr.
  const TensorView *find(const std::string &name) const;
  /// The optional "__metadata__" string map.
  const std::map<std::string, std::string> &metadata() const {
    return metadata_;
  }

private:
  SafetensorsFile() = default;

  std::string path_;
  const uint8_t *mapping_ = nullptr;
  uint64_t mappingSize_ = 0;
  std::vector<TensorView> tensors_;
  /// Indices into tensors_ sorted by name, for find()'s binary search;
  /// tensors_ itself is kept in data-offset order.
  std::vector<size_t> byName_;
  std::map<std::string, std::string> metadata_;
};

} // namespace qlora::format

#endif // QLORACC_RUNTIME_FORMAT_SAFETENSORS_H
