//===- SafetensorsWriter.cpp - Writes safetensors files -------------------===//
//
// Everything that can be checked is checked before the temporary file is
// created, so most errors touch nothing on disk; I/O errors afterwards remove
// the temporary file, so `path` only ever changes by one atomic rename.
//
//===----------------------------------------------------------------------===//
#include "runtime/format/SafetensorsWriter.h"

#include "runtime/format/AtomicFile.h"

#include "runtime/format/Safetensors.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <fcntl.h>
#include <filesystem>
#include <set>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace qlora::format {
namespace {

/// Keeps keys in insertion order: "__metadata__" first, then the tensors in
/// the caller's order, each as dtype, shape, data_offsets, like the Python
/// package writes them.
using OrderedJson = nlohmann::ordered_json;

/// The data buffer starts at a multiple of this many bytes, so that readers
/// mapping the file can use every element type in place.
constexpr size_t kDataAlignment = 8;
constexpr size_t kLengthFieldBytes = kSafetensorsLengthBytes;
constexpr std::string_view kMetadataKey = kSafetensorsMetadataKey;

/// Checks the tensors and metadata and builds the padded header; returns
/// false with `problem` set (without the path prefix).
bool buildHeader(std::span<const TensorToWrite> tensors,
                 const std::map<std::string, std::string> &metadata,
                 std::string &header, std::string &problem) {
  OrderedJson json = OrderedJson::object();
  if (!metadata.empty()) {
    OrderedJson entries = OrderedJson::object();
    for (const auto &[key, value] : metadata) {
      // Checked up front to name the offending string: nlohmann's dump()
      // would throw (or, with the replace handler used below, alter it).
      if (!isValidUtf8(key) || !isValidUtf8(value)) {
        problem = "metadata key '" + key + "' or its value is not UTF-8";
        return false;
      }
      entries[key] = value;
    }
    json[kMetadataKey] = std::move(entries);
  }

  std::set<std::string_view> names;
  uint64_t offset = 0;
  for (const TensorToWrite &tensor : tensors) {
    std::string where = "tensor '" + tensor.name + "': ";
    if (!isValidUtf8(tensor.name)) {
      problem = where + "name is not UTF-8";
      return false;
    }
    if (tensor.name == kMetadataKey) {
      problem = where + "name is reserved for the metadata map";
      return false;
    }
    if (!names.insert(tensor.name).second) {
      problem = where + "name appears twice, expected unique names";
      return false;
    }
    std::optional<uint64_t> expected =
        tensorByteSize(tensor.dtype, tensor.shape);
    if (!expected) {
      problem = where + "shape " + formatShape(tensor.shape) +
                " has a negative dimension or more elements than fit in 64 "
                "bits";
      return false;
    }
    if (tensor.bytes.size() != *expected) {
      problem = where + std::to_string(tensor.bytes.size()) +
                " bytes given, expected " + std::to_string(*expected) +
                " for " + std::string(dtypeName(tensor.dtype)) + " shape " +
                formatShape(tensor.shape);
      return false;
    }
    OrderedJson entry = OrderedJson::object();
    entry["dtype"] = std::string(dtypeName(tensor.dtype));
    entry["shape"] = tensor.shape;
    entry["data_offsets"] = {offset, offset + *expected};
    json[tensor.name] = std::move(entry);
    offset += *expected;
  }

  // The replace handler never fires (the strings were checked above); it is
  // there because the default handler throws.
  header = json.dump(-1, ' ', false, OrderedJson::error_handler_t::replace);
  size_t unaligned = (kLengthFieldBytes + header.size()) % kDataAlignment;
  if (unaligned)
    header.append(kDataAlignment - unaligned, ' ');
  return true;
}

} // namespace

bool writeSafetensors(const std::string &path,
                      std::span<const TensorToWrite> tensors,
                      const std::map<std::string, std::string> &metadata,
                      std::string &error) {
  auto fail = [&](const std::string &problem) {
    error = escapeForMessage(path + ": " + problem);
    return false;
  };
  std::string header, problem;
  if (!buildHeader(tensors, metadata, header, problem))
    return fail(problem);

  uint8_t length[kLengthFieldBytes];
  for (size_t i = 0; i < kLengthFieldBytes; ++i)
    length[i] = static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i));

  AtomicFileWriter file(path);
  std::string ioError;
  bool written = file.open(ioError) &&
                 file.write(length, sizeof(length), ioError) &&
                 file.write(header.data(), header.size(), ioError);
  for (const TensorToWrite &tensor : tensors)
    written = written &&
              file.write(tensor.bytes.data(), tensor.bytes.size(), ioError);
  if (!written || !file.commit(ioError)) {
    error = escapeForMessage(ioError);
    return false;
  }
  return true;
}

} // namespace qlora::format
