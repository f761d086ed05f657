//===- AtomicFile.cpp - Files replaced all at once
//-------------------------===//
#include "runtime/format/AtomicFile.h"

#include <cerrno>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace qlora::format {

namespace {

/// mkstemp creates files 0600, which would hide a checkpoint from other
/// users; a replaced file keeps its own bits.
mode_t permissionsFor(const std::string &path) {
  struct stat info;
  if (::stat(path.c_str(), &info) == 0)
    return info.st_mode & 07777;
  return 0644;
}

/// Best effort: some file systems refuse fsync on a directory, and the file
/// is already complete under its name.
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

} // namespace

AtomicFileWriter::AtomicFileWriter(std::string path)
    : path_(std::move(path)), tempPath_(path_ + ".tmp.XXXXXX") {}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0)
    ::close(fd_);
  if (created_)
    ::unlink(tempPath_.c_str());
}

bool AtomicFileWriter::fail(const char *action, std::string &error) {
  // errno is read before any string is built, since allocating may set it.
  int err = errno;
  error = path_ + ": cannot " + action + " temporary file '" + tempPath_ +
          "': " + std::error_code(err, std::generic_category()).message();
  return false;
}

bool AtomicFileWriter::open(std::string &error) {
  // mkstemp fills in the X's in place; on failure the pattern is kept, since
  // that is what was attempted.
  std::string pattern = tempPath_;
  fd_ = ::mkstemp(tempPath_.data());
  created_ = fd_ >= 0;
  if (!created_) {
    int err = errno;
    tempPath_ = std::move(pattern);
    errno = err;
    return fail("create", error);
  }
  if (::fchmod(fd_, permissionsFor(path_)) != 0)
    return fail("set permissions of", error);
  return true;
}

bool AtomicFileWriter::write(const void *data, size_t size,
                             std::string &error) {
  const auto *bytes = static_cast<const unsigned char *>(data);
  while (size > 0) {
    ssize_t written = ::write(fd_, bytes, size);
    if (written < 0) {
      if (errno == EINTR)
        continue;
      return fail("write", error);
    }
    bytes += written;
    size -= static_cast<size_t>(written);
  }
  return true;
}

bool AtomicFileWriter::commit(std::string &error) {
  // Synced before the rename so that after a crash the target is never a
  // renamed empty file.
  if (::fsync(fd_) != 0)
    return fail("sync", error);
  int result = ::close(fd_);
  fd_ = -1;
  // close() may be the first to see an error on network file systems.
  if (result != 0)
    return fail("close", error);
  if (::rename(tempPath_.c_str(), path_.c_str()) != 0)
    return fail("rename", error);
  created_ = false;
  syncDirectoryOf(path_);
  return true;
}

bool writeFileAtomically(const std::string &path, std::string_view contents,
                         std::string &error) {
  AtomicFileWriter file(path);
  return file.open(error) &&
         file.write(contents.data(), contents.size(), error) &&
         file.commit(error);
}

} // namespace qlora::format
