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
#include <span>
#include <string>
#include <vector>

namespace qlora::format {

/// One tensor of a safetensors file: its header entry and its bytes.
struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  /// Offset of the first byte from the start of the file.
  uint64_t fileOffset = 0;
  /// The bytes, inside the file's mapping; valid while the file is open.
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
  std::map<std::string, std::string> metadata_;
};

} // namespace qlora::format

#endif // QLORACC_RUNTIME_FORMAT_SAFETENSORS_H
