//===- AtomicFile.h - Files replaced all at once ----------------*- C++ -*-===//
//
// Every file qloracc and qlora-run write (train.bin, safetensors, adapter
// JSON) goes through this: the bytes go to a temporary file beside the
// target, which is synced and renamed over it, so after a crash or an error
// the target is the old file or the complete new one, never a part.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_FORMAT_ATOMICFILE_H
#define QLORACC_RUNTIME_FORMAT_ATOMICFILE_H

#include <cstddef>
#include <string>
#include <string_view>

namespace qlora::format {

class AtomicFileWriter {
public:
  /// Will replace `path`; nothing happens until open().
  explicit AtomicFileWriter(std::string path);
  /// Removes the temporary file unless commit() renamed it.
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter &) = delete;
  AtomicFileWriter &operator=(const AtomicFileWriter &) = delete;

  /// Creates the temporary file with the permissions of the file it
  /// replaces (0644 for a new one). Every failure sets `error` to
  /// "<path>: cannot <action> temporary file '<temp>': <reason>".
  bool open(std::string &error);
  bool write(const void *data, size_t size, std::string &error);
  /// Syncs, closes and renames the temporary file over the target, then
  /// syncs the directory (best effort) so that the rename is durable.
  bool commit(std::string &error);

private:
  bool fail(const char *action, std::string &error);

  std::string path_;
  std::string tempPath_;
  int fd_ = -1;
  bool created_ = false;
};

/// Replaces `path` with `contents` through an AtomicFileWriter.
bool writeFileAtomically(const std::string &path, std::string_view contents,
                         std::string &error);

} // namespace qlora::format

#endif // QLORACC_RUNTIME_FORMAT_ATOMICFILE_H
