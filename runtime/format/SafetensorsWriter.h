//===- SafetensorsWriter.h - Writes safetensors files -----------*- C++ -*-===//
//
// Writes the format that SafetensorsFile reads, as the Python `safetensors`
// package lays it out (header padded with spaces so that the data buffer
// starts 8-byte aligned), atomically: the file appears complete under its
// name or not at all, so a crash never leaves a truncated checkpoint.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_FORMAT_SAFETENSORSWRITER_H
#define QLORACC_RUNTIME_FORMAT_SAFETENSORSWRITER_H

#include "runtime/format/DType.h"

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace qlora::format {

/// One tensor to store; `bytes` must stay valid during the call.
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::span<const uint8_t> bytes;
};

/// Writes `tensors`, in the order given with contiguous data offsets, and the
/// optional `metadata` (the "__metadata__" string map) to `path`, replacing
/// any file there. The bytes go to a temporary file in the same directory,
/// which is synced and then renamed over `path`. On failure returns false,
/// sets `error` to one line naming the file and the problem, and leaves
/// `path` and its directory as they were.
bool writeSafetensors(const std::string &path,
                      std::span<const TensorToWrite> tensors,
                      const std::map<std::string, std::string> &metadata,
                      std::string &error);

} // namespace qlora::format

#endif // QLORACC_RUNTIME_FORMAT_SAFETENSORSWRITER_H
