//===- AtomicFile.cpp - Replace a small file atomically -------------------===//
//
// The JSON half of an adapter directory gets the same guarantee that
// format::writeSafetensors gives the tensors: after a crash the file is the
// old one or the complete new one.
//
//===----------------------------------------------------------------------===//
#include "runtime/adapter/AdapterFiles.h"

#include <cerrno>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace qlora::adapter::detail {
namespace {

std::string errnoMessage(int err) {
  return std::error_code(err, std::generic_category()).message();
}

bool writeAll(int fd, const char *data, size_t size) {
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

} // namespace

bool writeFileAtomically(const std::string &path, std::string_view contents,
                         std::string &error) {
  std::string temp = path + ".tmp.XXXXXX";
  int fd = ::mkstemp(temp.data());
  if (fd < 0) {
    int err = errno;
    error = path + ": cannot create temporary file '" + temp +
            "': " + errnoMessage(err);
    return false;
  }
  auto fail = [&](const char *action) {
    int err = errno;
    if (fd >= 0)
      ::close(fd);
    ::unlink(temp.c_str());
    error = path + ": cannot " + action + " temporary file '" + temp +
            "': " + errnoMessage(err);
    return false;
  };
  // mkstemp creates the file 0600; an adapter is meant to be shared.
  if (::fchmod(fd, 0644) != 0)
    return fail("set permissions of");
  if (!writeAll(fd, contents.data(), contents.size()))
    return fail("write");
  if (::fsync(fd) != 0)
    return fail("sync");
  int result = ::close(fd);
  fd = -1;
  if (result != 0)
    return fail("close");
  if (::rename(temp.c_str(), path.c_str()) != 0)
    return fail("rename");
  // Best effort, as in format::writeSafetensors: makes the rename durable.
  std::filesystem::path directory = std::filesystem::path(path).parent_path();
  int dirFd = ::open(directory.empty() ? "." : directory.c_str(),
                     O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirFd >= 0) {
    ::fsync(dirFd);
    ::close(dirFd);
  }
  return true;
}

} // namespace qlora::adapter::detail
