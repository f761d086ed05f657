//===- RawTokenFile.cpp - Memory-mapped uint16/uint32 token files ---------===//
//
// The file is mapped read-only and never copied: a batch converts its
// windows to int32 on the fly. Ids are assembled byte by byte, so the file is
// little-endian whatever the host and no load is misaligned.
//
//===----------------------------------------------------------------------===//
#include "runtime/data/DatasetFiles.h"

#include <fcntl.h>
#include <limits>
#include <sys/mman.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace qlora::data::detail {
namespace {

std::string errnoMessage(int err) {
  return std::error_code(err, std::generic_category()).message();
}

uint32_t loadLittleEndian(const uint8_t *bytes, size_t width) {
  uint32_t value = 0;
  for (size_t i = width; i-- > 0;)
    value = (value << 8) | bytes[i];
  return value;
}

/// A read-only mapping of a whole file; empty files are not mapped (mmap
/// refuses length 0) and read as no bytes.
class MappedFile {
public:
  MappedFile() = default;
  ~MappedFile() {
    if (data_)
      ::munmap(const_cast<uint8_t *>(data_), size_);
  }
  MappedFile(const MappedFile &) = delete;
  MappedFile &operator=(const MappedFile &) = delete;

  bool open(const std::string &path, std::string &error) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      error = path + ": cannot open: " + errnoMessage(errno);
      return false;
    }
    struct stat info;
    if (::fstat(fd, &info) != 0) {
      int err = errno;
      ::close(fd);
      error = path + ": cannot stat: " + errnoMessage(err);
      return false;
    }
    if (!S_ISREG(info.st_mode)) {
      ::close(fd);
      error = path + ": is not a regular file, expected a token file";
      return false;
    }
    size_ = static_cast<size_t>(info.st_size);
    if (size_ == 0) {
      ::close(fd);
      return true;
    }
    void *mapping = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    ::close(fd);
    if (mapping == MAP_FAILED) {
      error = path + ": cannot mmap " + std::to_string(size_) +
              " bytes: " + errnoMessage(err);
      return false;
    }
    data_ = static_cast<const uint8_t *>(mapping);
    // Windows are read front to back, batch after batch.
    ::madvise(mapping, size_, MADV_SEQUENTIAL);
    return true;
  }

  const uint8_t *data() const { return data_; }
  size_t size() const { return size_; }

private:
  const uint8_t *data_ = nullptr;
  size_t size_ = 0;
};

class RawTokenDataset final : public TokenDataset {
public:
  RawTokenDataset(DataFormat format, const DatasetShape &shape,
                  int64_t numWindows, size_t width,
                  std::unique_ptr<MappedFile> file)
      : TokenDataset(format, shape.batch, shape.seq, numWindows), width_(width),
        file_(std::move(file)) {}

private:
  void readSequence(int64_t index, std::span<int32_t> tokens,
                    std::span<int32_t> labels) const override {
    // Labels equal input_ids; the model shifts them (see TokenDataset.h).
    size_t windowTokens = tokens.size() + 1;
    const uint8_t *window =
        file_->data() + static_cast<size_t>(index) * windowTokens * width_;
    for (size_t i = 0; i < tokens.size(); ++i) {
      auto id =
          static_cast<int32_t>(loadLittleEndian(window + i * width_, width_));
      tokens[i] = id;
      labels[i] = id;
    }
  }

  size_t width_;
  std::unique_ptr<MappedFile> file_;
};

} // namespace

std::unique_ptr<TokenDataset> openRawTokens(const std::string &path,
                                            DataFormat format,
                                            const DatasetShape &shape,
                                            std::string &error) {
  size_t width = format == DataFormat::U32 ? 4 : 2;
  std::string elementName = format == DataFormat::U32 ? "uint32" : "uint16";
  auto file = std::make_unique<MappedFile>();
  if (!file->open(path, error))
    return nullptr;
  if (file->size() % width != 0) {
    error = path + ": file is " + std::to_string(file->size()) +
            " bytes, expected a multiple of " + std::to_string(width) +
            " (little-endian " + elementName + " token ids)";
    return nullptr;
  }
  auto numTokens = static_cast<int64_t>(file->size() / width);
  int64_t windowTokens = shape.seq + 1;
  int64_t numWindows = numTokens / windowTokens;
  if (!checkEnoughForOneBatch(
          path, numWindows,
          std::to_string(numTokens) + " tokens make " +
              std::to_string(numWindows) +
              " windows of seq+1 = " + std::to_string(windowTokens) + " tokens",
          shape, error))
    return nullptr;

  // Scanned whole, tail included: an out-of-range id anywhere means the file
  // was tokenized for another vocabulary.
  const uint8_t *bytes = file->data();
  for (int64_t i = 0; i < numTokens; ++i) {
    uint32_t id =
        loadLittleEndian(bytes + static_cast<size_t>(i) * width, width);
    if (id >= static_cast<uint64_t>(shape.vocab)) {
      error = path + ": token id " + std::to_string(id) + " at token index " +
              std::to_string(i) + " (byte offset " +
              std::to_string(static_cast<uint64_t>(i) * width) +
              ") is out of range for vocab_size " + std::to_string(shape.vocab);
      return nullptr;
    }
  }

  return std::make_unique<RawTokenDataset>(format, shape, numWindows, width,
                                           std::move(file));
}

} // namespace qlora::data::detail
