//===- SafetensorsWriter.cpp - Writes safetensors files -------------------===//
//
// Everything that can be checked is checked before the temporary file is
// created, so most errors touch nothing on disk; I/O errors afterwards remove
// the temporary file, so `path` only ever changes by one atomic rename.
//
//===----------------------------------------------------------------------===//
#include "runtime/format/SafetensorsWriter.h"

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

std::string errnoMessage(int err) {
  return std::error_code(err, std::generic_category()).message();
}

bool writeAll(int fd, const uint8_t *data, size_t size) {
  while (size > 0) {
    ssize_t written = ::write(fd, data, size);
    if (written < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    data += written;
    size -= static_cast<size_t>(written);
  }
  return true;
}

/// A temporary file that is removed unless it was renamed into place.
class TempFile {
public:
  explicit TempFile(const std::string &target) : path(target + ".tmp.XXXXXX") {}
  ~TempFile() {
    if (fd >= 0)
      ::close(fd);
    if (created)
      ::unlink(path.c_str());
  }
  TempFile(const TempFile &) = delete;
  TempFile &operator=(const TempFile &) = delete;

  bool create() {
    // mkstemp fills in the X's in place, so path holds the real name after;
    // on failure the pattern is put back, since that is what was attempted.
    std::string pattern = path;
    fd = ::mkstemp(path.data());
    created = fd >= 0;
    if (!created) {
      int err = errno;
      path = std::move(pattern);
      errno = err;
    }
    return created;
  }
  /// Closes the descriptor, reporting the error close() may be the first to
  /// see on network file systems.
  bool close() {
    int result = ::close(fd);
    fd = -1;
    return result == 0;
  }
  bool renameTo(const std::string &target) {
    if (::rename(path.c_str(), target.c_str()) != 0)
      return false;
    created = false;
    return true;
  }

  std::string path;
  int fd = -1;

private:
  bool created = false;
};

/// Permission bits for the new file. mkstemp creates it 0600, which would
/// hide a checkpoint from other users; a replaced file keeps its own bits.
mode_t permissionsFor(const std::string &path) {
  struct stat info;
  if (::stat(path.c_str(), &info) == 0)
    return info.st_mode & 07777;
  return 0644;
}

/// Makes the rename itself durable. Best effort: some file systems refuse
/// fsync on a directory, and the file is already complete under its name.
void syncDirectoryOf(const std::string &path) {
  std::filesystem::path directory = std::filesystem::path(path).parent_path();
  if (directory.empty())
    directory = ".";
  int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return;
  ::fsync(fd);
  ::close(fd);
}

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

  TempFile temp(path);
  // errno is read before any string is built, since allocating may set it.
  if (!temp.create()) {
    int err = errno;
    return fail("cannot create temporary file '" + temp.path +
                "': " + errnoMessage(err));
  }
  auto failIo = [&](const char *action) {
    int err = errno;
    return fail("cannot " + std::string(action) + " temporary file '" +
                temp.path + "': " + errnoMessage(err));
  };
  if (::fchmod(temp.fd, permissionsFor(path)) != 0)
    return failIo("set permissions of");
  if (!writeAll(temp.fd, length, sizeof(length)) ||
      !writeAll(temp.fd, reinterpret_cast<const uint8_t *>(header.data()),
                header.size()))
    return failIo("write");
  for (const TensorToWrite &tensor : tensors)
    if (!writeAll(temp.fd, tensor.bytes.data(), tensor.bytes.size()))
      return failIo("write");
  // Synced before the rename so that after a crash `path` holds either the
  // old file or the complete new one, never a renamed empty file.
  if (::fsync(temp.fd) != 0)
    return failIo("sync");
  if (!temp.close())
    return failIo("close");
  if (!temp.renameTo(path))
    return failIo("rename");
  syncDirectoryOf(path);
  return true;
}

} // namespace qlora::format
