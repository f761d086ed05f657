//===- Safetensors.cpp - Memory-mapped safetensors files ------------------===//
//
// The header is untrusted input: every field is type-checked with nlohmann's
// non-throwing accessors (this file is also linked into code built with
// -fno-exceptions), and every offset and size is checked with overflow-safe
// arithmetic before a TensorView pointing into the mapping is created.
//
//===----------------------------------------------------------------------===//
#include "runtime/format/Safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fcntl.h>
#include <limits>
#include <numeric>
#include <sys/mman.h>
#include <sys/stat.h>
#include <system_error>
#include <tuple>
#include <unistd.h>
#include <unordered_set>

namespace qlora::format {
namespace {

using Json = nlohmann::json;

constexpr uint64_t kLengthFieldBytes = kSafetensorsLengthBytes;
/// The reference implementation (the Rust `safetensors` crate) refuses
/// headers over 100 MB; a longer one is damage or an attack, and parsing it
/// would only exhaust memory.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr std::string_view kMetadataKey = kSafetensorsMetadataKey;

std::string errnoMessage(int err) {
  return std::error_code(err, std::generic_category()).message();
}

std::string singleQuoted(std::string_view name) {
  return "'" + std::string(name) + "'";
}

/// "number 3", "string \"x\"", "array [1,2]": what a header value was, cut
/// short so that a huge value cannot swamp the message.
std::string describe(const Json &value) {
  constexpr size_t kMaxChars = 40;
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > kMaxChars) {
    // Cut at a character boundary so the message stays valid UTF-8.
    size_t cut = kMaxChars;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xc0) == 0x80)
      --cut;
    text = text.substr(0, cut) + "...";
  }
  return std::string(value.type_name()) + " " + text;
}

std::string knownDTypeNames() {
  std::string names;
  for (auto i = static_cast<unsigned>(DType::F64);
       i <= static_cast<unsigned>(DType::Bool); ++i) {
    if (!names.empty())
      names += ", ";
    names += dtypeName(static_cast<DType>(i));
  }
  return names;
}

std::string formatOffsets(uint64_t begin, uint64_t end) {
  return "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
         "]";
}

/// Records where nlohmann's parser gave up. The DOM parser called with
/// allow_exceptions=false only says *that* it failed, so a failed header is
/// parsed a second time through this handler to say *where* and *why*.
class ParseErrorRecorder final : public nlohmann::json_sax<Json> {
public:
  size_t position = 0;
  std::string reason;

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t &) override { return true; }
  bool string(string_t &) override { return true; }
  bool binary(binary_t &) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t &) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t pos, const std::string &,
                   const nlohmann::detail::exception &ex) override {
    position = pos;
    reason = ex.what();
    return false;
  }
};

/// A header entry that passed its own checks; `begin`/`end` are relative to
/// the data buffer and are still needed for the overlap check.
struct ParsedTensor {
  TensorView view;
  uint64_t begin = 0;
  uint64_t end = 0;
};

/// Validates one header against the mapped file. Every check returns false
/// through fail(), which leaves the one-line message in `error`.
class HeaderValidator {
public:
  HeaderValidator(const std::string &path, std::string &error)
      : path(path), error(error) {}

  bool fail(const std::string &message) {
    error = escapeForMessage(path + ": " + message);
    return false;
  }

  /// Checks the length field and sets headerBytes, dataStart and dataSize.
  bool checkLayout(const uint8_t *file, uint64_t fileSize);
  bool parseHeader(const uint8_t *file, Json &header);
  bool parseMetadata(const Json &value,
                     std::map<std::string, std::string> &metadata);
  bool parseTensor(const std::string &key, const Json &entry,
                   const uint8_t *file, ParsedTensor &tensor);
  /// Sorts by data offset and rejects two tensors sharing a byte.
  bool sortAndCheckOverlaps(std::vector<ParsedTensor> &tensors);

private:
  bool parseDType(const std::string &key, const Json &entry, DType &dtype);
  bool parseShape(const std::string &key, const Json &entry,
                  std::vector<int64_t> &shape);
  bool parseOffsets(const std::string &key, const Json &entry, uint64_t &begin,
                    uint64_t &end);

  const std::string &path;
  std::string &error;
  uint64_t headerBytes = 0;
  uint64_t dataStart = 0;
  uint64_t dataSize = 0;
};

bool HeaderValidator::checkLayout(const uint8_t *file, uint64_t fileSize) {
  // Assembled byte by byte: the format is little-endian whatever the host.
  headerBytes = 0;
  for (size_t i = kLengthFieldBytes; i-- > 0;)
    headerBytes = (headerBytes << 8) | file[i];
  std::string found =
      "header length " + std::to_string(headerBytes) + " at byte offset 0";
  if (headerBytes > kMaxHeaderBytes)
    return fail(found + " exceeds the limit of " +
                std::to_string(kMaxHeaderBytes) + " bytes");
  uint64_t room = fileSize - kLengthFieldBytes;
  if (headerBytes > room)
    return fail(found + " runs past the end of the file (" +
                std::to_string(fileSize) + " bytes, so at most " +
                std::to_string(room) + ")");
  dataStart = kLengthFieldBytes + headerBytes;
  dataSize = fileSize - dataStart;
  return true;
}

bool HeaderValidator::parseHeader(const uint8_t *file, Json &header) {
  const uint8_t *begin = file + kLengthFieldBytes;
  const uint8_t *end = begin + headerBytes;
  // nlohmann keeps the last of two equal keys; a silently dropped tensor
  // entry could hide bytes from the overlap check, so duplicates are errors.
  std::unordered_set<std::string> topLevelKeys;
  std::string duplicate;
  auto noteKey = [&](int depth, Json::parse_event_t event, Json &parsed) {
    if (event == Json::parse_event_t::key && depth == 1 && duplicate.empty()) {
      if (const auto *name = parsed.get_ptr<const Json::string_t *>())
        if (!topLevelKeys.insert(*name).second)
          duplicate = *name;
    }
    return true;
  };
  header = Json::parse(begin, end, noteKey, /*allow_exceptions=*/false);
  if (header.is_discarded()) {
    ParseErrorRecorder recorder;
    Json::sax_parse(begin, end, &recorder);
    // nlohmann counts the offending byte as read; end of input counts too.
    uint64_t offset = recorder.position == 0 ? 0 : recorder.position - 1;
    offset = kLengthFieldBytes + std::min(offset, headerBytes);
    // Drop "[json.exception.parse_error.101] parse error at line 1, column
    // 15: ": the file offset replaces line and column.
    std::string reason = recorder.reason;
    size_t column = reason.find("column ");
    size_t colon = reason.find(": ", column == std::string::npos ? 0 : column);
    if (colon != std::string::npos)
      reason = reason.substr(colon + 2);
    return fail("malformed JSON header at byte offset " +
                std::to_string(offset) + ": " + reason);
  }
  if (!header.is_object())
    return fail("header at byte offset " + std::to_string(kLengthFieldBytes) +
                " is " + describe(header) + ", expected a JSON object");
  if (!duplicate.empty())
    return fail("key " + singleQuoted(duplicate) +
                " appears twice in the header, expected unique keys");
  return true;
}

bool HeaderValidator::parseMetadata(
    const Json &value, std::map<std::string, std::string> &metadata) {
  std::string where = "\"" + std::string(kMetadataKey) + "\"";
  if (!value.is_object())
    return fail(where + " is " + describe(value) +
                ", expected an object of strings");
  for (const auto &[key, item] : value.items()) {
    const auto *text = item.get_ptr<const Json::string_t *>();
    if (!text)
      return fail(where + " key " + singleQuoted(key) + " is " +
                  describe(item) + ", expected a string");
    metadata.emplace(key, *text);
  }
  return true;
}

bool HeaderValidator::parseDType(const std::string &key, const Json &entry,
                                 DType &dtype) {
  std::string where = "tensor " + singleQuoted(key) + ": \"dtype\"";
  auto it = entry.find("dtype");
  if (it == entry.end())
    return fail(where + " is missing, expected a string such as \"F32\"");
  const auto *name = it->get_ptr<const Json::string_t *>();
  if (!name)
    return fail(where + " is " + describe(*it) +
                ", expected a string such as \"F32\"");
  std::optional<DType> parsed = qlora::format::parseDType(*name);
  if (!parsed)
    return fail(where + " is unknown dtype " + singleQuoted(*name) +
                ", expected one of " + knownDTypeNames());
  dtype = *parsed;
  return true;
}

bool HeaderValidator::parseShape(const std::string &key, const Json &entry,
                                 std::vector<int64_t> &shape) {
  std::string where = "tensor " + singleQuoted(key) + ": ";
  auto it = entry.find("shape");
  if (it == entry.end())
    return fail(where +
                "\"shape\" is missing, expected an array of dimensions");
  if (!it->is_array())
    return fail(where + "\"shape\" is " + describe(*it) +
                ", expected an array of dimensions");
  for (size_t i = 0; i < it->size(); ++i) {
    const Json &dim = (*it)[i];
    // Non-negative integers parse as number_unsigned; negative ones and
    // fractions take other types and fall through to the error.
    const auto *value = dim.get_ptr<const Json::number_unsigned_t *>();
    if (!value ||
        *value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return fail(where + "shape[" + std::to_string(i) + "] is " +
                  describe(dim) + ", expected a non-negative integer below " +
                  "2^63");
    shape.push_back(static_cast<int64_t>(*value));
  }
  return true;
}

bool HeaderValidator::parseOffsets(const std::string &key, const Json &entry,
                                   uint64_t &begin, uint64_t &end) {
  std::string where = "tensor " + singleQuoted(key) + ": \"data_offsets\"";
  constexpr const char *kExpected =
      ", expected an array of two non-negative integers [begin, end]";
  auto it = entry.find("data_offsets");
  if (it == entry.end())
    return fail(where + " is missing" + kExpected);
  const uint64_t *values[2] = {nullptr, nullptr};
  if (it->is_array() && it->size() == 2)
    for (size_t i = 0; i < 2; ++i)
      values[i] = (*it)[i].get_ptr<const Json::number_unsigned_t *>();
  if (!values[0] || !values[1])
    return fail(where + " is " + describe(*it) + kExpected);
  begin = *values[0];
  end = *values[1];
  return true;
}

bool HeaderValidator::parseTensor(const std::string &key, const Json &entry,
                                  const uint8_t *file, ParsedTensor &tensor) {
  std::string where = "tensor " + singleQuoted(key) + ": ";
  if (!entry.is_object())
    return fail(where + "entry is " + describe(entry) +
                ", expected an object with dtype, shape and data_offsets");
  TensorView &view = tensor.view;
  view.name = key;
  if (!parseDType(key, entry, view.dtype) ||
      !parseShape(key, entry, view.shape) ||
      !parseOffsets(key, entry, tensor.begin, tensor.end))
    return false;
  uint64_t begin = tensor.begin, end = tensor.end;
  std::string offsets = formatOffsets(begin, end);
  if (begin > end)
    return fail(where + offsets + " begin after they end");
  if (end > dataSize)
    return fail(where + offsets + " run past the data buffer (" +
                std::to_string(dataSize) + " bytes at byte offset " +
                std::to_string(dataStart) + ")");
  std::optional<uint64_t> expected = tensorByteSize(view.dtype, view.shape);
  if (!expected)
    return fail(where + "shape " + formatShape(view.shape) +
                " has more elements than fit in 64 bits");
  if (end - begin != *expected)
    return fail(where + offsets + " span " + std::to_string(end - begin) +
                " bytes, expected " + std::to_string(*expected) + " for " +
                std::string(dtypeName(view.dtype)) + " shape " +
                formatShape(view.shape));
  view.fileOffset = dataStart + begin;
  view.bytes = std::span<const uint8_t>(file + view.fileOffset, end - begin);
  return true;
}

bool HeaderValidator::sortAndCheckOverlaps(std::vector<ParsedTensor> &tensors) {
  // Ties are broken by size then name so that the order never depends on
  // the header's key order.
  std::sort(tensors.begin(), tensors.end(),
            [](const ParsedTensor &a, const ParsedTensor &b) {
              return std::tie(a.begin, a.end, a.view.name) <
                     std::tie(b.begin, b.end, b.view.name);
            });
  // Sorted by begin, a tensor overlaps an earlier one exactly when it starts
  // before the furthest end seen so far. Empty tensors own no byte, so they
  // can neither overlap nor be overlapped.
  const ParsedTensor *furthest = nullptr;
  for (const ParsedTensor &tensor : tensors) {
    if (tensor.begin == tensor.end)
      continue;
    if (furthest && tensor.begin < furthest->end)
      return fail("tensor " + singleQuoted(tensor.view.name) + ": " +
                  formatOffsets(tensor.begin, tensor.end) + " overlap tensor " +
                  singleQuoted(furthest->view.name) + " at " +
                  formatOffsets(furthest->begin, furthest->end));
    if (!furthest || tensor.end > furthest->end)
      furthest = &tensor;
  }
  return true;
}

} // namespace

std::optional<uint64_t> tensorByteSize(DType dtype,
                                       std::span<const int64_t> shape) {
  // Multiplied in order, like the Rust crate, so a shape is rejected when a
  // prefix overflows even if a later dimension is 0: both implementations
  // then agree on which files are valid.
  uint64_t numElements = 1;
  for (int64_t dim : shape)
    if (dim < 0 || __builtin_mul_overflow(
                       numElements, static_cast<uint64_t>(dim), &numElements))
      return std::nullopt;
  if (numElements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return std::nullopt;
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(numElements, dtypeSize(dtype), &bytes))
    return std::nullopt;
  return bytes;
}

std::string formatShape(std::span<const int64_t> shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i)
      text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

bool isValidUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    auto lead = static_cast<unsigned char>(text[i++]);
    if (lead < 0x80)
      continue;
    int continuations;
    uint32_t codePoint, smallest;
    if ((lead & 0xe0) == 0xc0) {
      continuations = 1, codePoint = lead & 0x1f, smallest = 0x80;
    } else if ((lead & 0xf0) == 0xe0) {
      continuations = 2, codePoint = lead & 0x0f, smallest = 0x800;
    } else if ((lead & 0xf8) == 0xf0) {
      continuations = 3, codePoint = lead & 0x07, smallest = 0x10000;
    } else {
      return false;
    }
    for (; continuations > 0; --continuations, ++i) {
      if (i >= text.size())
        return false;
      auto next = static_cast<unsigned char>(text[i]);
      if ((next & 0xc0) != 0x80)
        return false;
      codePoint = (codePoint << 6) | (next & 0x3f);
    }
    // Overlong forms, UTF-16 surrogates and values past Unicode's range are
    // refused by nlohmann too.
    if (codePoint < smallest || codePoint > 0x10ffff ||
        (codePoint >= 0xd800 && codePoint <= 0xdfff))
      return false;
  }
  return true;
}

std::string escapeForMessage(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  // nlohmann's "last read" excerpt of a bad header can hold stray bytes;
  // escaping them all is cruder than finding the bad ones, and rarer.
  bool escapeHigh = !isValidUtf8(text);
  std::string result;
  result.reserve(text.size());
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte != 0x7f && (byte < 0x80 || !escapeHigh)) {
      result += c;
      continue;
    }
    result += "\\x";
    result += kHex[byte >> 4];
    result += kHex[byte & 0xf];
  }
  return result;
}

int64_t TensorView::numElements() const {
  // open() has checked that this product fits int64_t.
  return std::accumulate(shape.begin(), shape.end(), int64_t{1},
                         std::multiplies<int64_t>());
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string &path,
                                                       std::string &error) {
  HeaderValidator validator(path, error);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    validator.fail("cannot open: " + errnoMessage(errno));
    return nullptr;
  }
  struct stat info;
  if (::fstat(fd, &info) != 0) {
    int err = errno;
    ::close(fd);
    validator.fail("cannot stat: " + errnoMessage(err));
    return nullptr;
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    validator.fail("is not a regular file");
    return nullptr;
  }
  auto fileSize = static_cast<uint64_t>(info.st_size);
  // Also keeps mmap away from empty files, where it fails with EINVAL.
  if (fileSize < kLengthFieldBytes) {
    ::close(fd);
    validator.fail("file is " + std::to_string(fileSize) +
                   " bytes, expected at least " +
                   std::to_string(kLengthFieldBytes) +
                   " for the header length at byte offset 0");
    return nullptr;
  }
  if (fileSize > std::numeric_limits<size_t>::max()) {
    ::close(fd);
    validator.fail("file is " + std::to_string(fileSize) +
                   " bytes, more than this process can map");
    return nullptr;
  }
  void *mapping = ::mmap(nullptr, static_cast<size_t>(fileSize), PROT_READ,
                         MAP_PRIVATE, fd, 0);
  int mmapErrno = errno;
  // The mapping keeps the file alive; the descriptor is no longer needed.
  ::close(fd);
  if (mapping == MAP_FAILED) {
    validator.fail("cannot mmap " + std::to_string(fileSize) +
                   " bytes: " + errnoMessage(mmapErrno));
    return nullptr;
  }

  // From here on the destructor unmaps on every failure path.
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->mapping_ = static_cast<const uint8_t *>(mapping);
  file->mappingSize_ = fileSize;

  Json header;
  if (!validator.checkLayout(file->mapping_, fileSize) ||
      !validator.parseHeader(file->mapping_, header))
    return nullptr;

  std::vector<ParsedTensor> parsed;
  parsed.reserve(header.size());
  for (const auto &[key, value] : header.items()) {
    if (key == kMetadataKey) {
      if (!validator.parseMetadata(value, file->metadata_))
        return nullptr;
      continue;
    }
    parsed.emplace_back();
    if (!validator.parseTensor(key, value, file->mapping_, parsed.back()))
      return nullptr;
  }
  if (!validator.sortAndCheckOverlaps(parsed))
    return nullptr;

  file->tensors_.reserve(parsed.size());
  for (ParsedTensor &tensor : parsed)
    file->tensors_.push_back(std::move(tensor.view));
  file->byName_.resize(file->tensors_.size());
  std::iota(file->byName_.begin(), file->byName_.end(), size_t{0});
  const std::vector<TensorView> &tensors = file->tensors_;
  std::sort(
      file->byName_.begin(), file->byName_.end(),
      [&](size_t a, size_t b) { return tensors[a].name < tensors[b].name; });
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_)
    ::munmap(const_cast<uint8_t *>(mapping_),
             static_cast<size_t>(mappingSize_));
}

const TensorView *SafetensorsFile::find(const std::string &name) const {
  auto it = std::lower_bound(byName_.begin(), byName_.end(), name,
                             [&](size_t index, const std::string &key) {
                               return tensors_[index].name < key;
                             });
  if (it == byName_.end() || tensors_[*it].name != name)
    return nullptr;
  return &tensors_[*it];
}

} // namespace qlora::format
