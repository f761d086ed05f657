//===- TrainBin.cpp - Memory-mapped train.bin files -----------------------===//
//
// The file is untrusted input. The checks run from the outside in, so that
// each one may rely on the ones before it: footer, schema version and
// whole-file checksum first (a truncated or damaged file is named as such
// before any of its contents is interpreted), then the flatbuffer's framing
// and flatbuffers::Verifier, and only then the meaning of the plan: section
// bounds and checksums, buffer, kernel, instruction and LoRA indices. All
// arithmetic on values read from the file is overflow-checked.
//
//===----------------------------------------------------------------------===//
#include "runtime/format/TrainBin.h"

#include "runtime/format/Checksum.h"
#include "runtime/format/Safetensors.h"
#include "runtime/format/train_generated.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <sys/mman.h>
#include <sys/stat.h>
#include <system_error>
#include <tuple>
#include <unistd.h>

namespace qlora::format {

static_assert(static_cast<unsigned>(fb::BufferClass::MAX) + 1 ==
                  kNumBufferClasses,
              "BufferClass mirrors fb::BufferClass");
static_assert(static_cast<uint8_t>(BufferClass::Io) ==
                  static_cast<uint8_t>(fb::BufferClass::Io) &&
              static_cast<uint8_t>(BufferClass::QuantizedWeight) ==
                  static_cast<uint8_t>(fb::BufferClass::QuantizedWeight) &&
              static_cast<uint8_t>(BufferClass::Recompute) ==
                  static_cast<uint8_t>(fb::BufferClass::Recompute) &&
              static_cast<uint8_t>(BufferClass::Workspace) ==
                  static_cast<uint8_t>(fb::BufferClass::Workspace) &&
              static_cast<uint8_t>(BufferClass::Weight) ==
                  static_cast<uint8_t>(fb::BufferClass::Weight));
static_assert(static_cast<uint8_t>(InstrKind::Launch) ==
                  static_cast<uint8_t>(fb::InstrKind::Launch) &&
              static_cast<uint8_t>(InstrKind::Copy) ==
                  static_cast<uint8_t>(fb::InstrKind::Copy) &&
              fb::InstrKind::MAX == fb::InstrKind::Copy);

namespace {

constexpr std::array<std::string_view, kNumBufferClasses> kBufferClassNames = {
    "weight",    "lora", "gradient",         "optimizer", "activation",
    "workspace", "io",   "quantized_weight", "recompute"};

struct DTypePair {
  DType dtype;
  fb::DType schema;
};
constexpr std::array<DTypePair, 6> kSchemaDTypes = {{
    {DType::F32, fb::DType::F32},
    {DType::BF16, fb::DType::BF16},
    {DType::F16, fb::DType::F16},
    {DType::I32, fb::DType::I32},
    {DType::I64, fb::DType::I64},
    {DType::U8, fb::DType::U8},
}};
static_assert(kSchemaDTypes.size() == static_cast<size_t>(fb::DType::MAX) + 1);

std::string errnoMessage(int err) {
  return std::error_code(err, std::generic_category()).message();
}

std::string hex(uint64_t value) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text = "0x";
  for (int shift = 60; shift >= 0; shift -= 4)
    text += kDigits[(value >> shift) & 0xf];
  return text;
}

std::string range(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

uint64_t readLe(const std::byte *bytes, int count) {
  uint64_t value = 0;
  for (int i = count; i-- > 0;)
    value = (value << 8) | std::to_integer<uint64_t>(bytes[i]);
  return value;
}

/// `bytes` as printable text for a message: "'QLTE'" or "'\x00\x01..'".
std::string quoteBytes(const std::byte *bytes, size_t count) {
  return "'" + std::string(reinterpret_cast<const char *>(bytes), count) + "'";
}

std::string quoteName(const flatbuffers::String *name) {
  return name ? "'" + name->str() + "'" : "(unnamed)";
}

template <typename T> uint32_t sizeOf(const flatbuffers::Vector<T> *vector) {
  return vector ? vector->size() : 0;
}

bool isPowerOfTwo(uint64_t value) {
  return value != 0 && (value & (value - 1)) == 0;
}

/// Checks one mapped file; every check returns false through fail(), which
/// leaves the one-line message in `error`.
class Validator {
public:
  Validator(const std::string &path, const std::byte *file, uint64_t size,
            std::string &error)
      : path(path), file(file), size(size), error(error) {}

  bool fail(const std::string &message) {
    error = escapeForMessage(path + ": " + message);
    return false;
  }

  bool checkFooter();
  bool checkFlatbuffer();
  bool checkSections(std::vector<std::span<const std::byte>> &spans);
  bool checkBuffers();
  bool checkKernels();
  bool checkPrograms();
  bool checkLora();

  const fb::TrainBin *root = nullptr;

private:
  bool checkSectionIndex(int64_t index, const std::string &where);
  bool checkBufferIndex(uint32_t index, const std::string &where);
  bool checkRange(uint64_t offset, uint64_t bytes, uint32_t bufferIndex,
                  const std::string &where);

  const std::string &path;
  const std::byte *file;
  uint64_t size;
  std::string &error;
  uint64_t footerOffset = 0;
  uint32_t footerVersion = 0;
  uint64_t sectionBase = 0;
  uint32_t numSections = 0;
  uint32_t numBuffers = 0;
};

bool Validator::checkFooter() {
  std::string sizeText = "file is " + std::to_string(size) + " bytes";
  if (size < kTrainBinMinBytes)
    return fail("not a qloracc train.bin or truncated (" + sizeText +
                ", expected at least " + std::to_string(kTrainBinMinBytes) +
                ": a 4-byte size prefix, the flatbuffer and a 16-byte "
                "footer)");
  footerOffset = size - kTrainBinFooterBytes;
  const std::byte *footer = file + footerOffset;
  const std::byte *magic = footer + 12;
  if (std::memcmp(magic, kTrainBinFooterMagic.data(), 4) != 0)
    return fail("not a qloracc train.bin or truncated (no '" +
                std::string(kTrainBinFooterMagic) +
                "' footer in the last 16 bytes: found " + quoteBytes(magic, 4) +
                " at byte offset " + std::to_string(footerOffset + 12) + "; " +
                sizeText + ")");
  footerVersion = static_cast<uint32_t>(readLe(footer + 8, 4));
  if (footerVersion != kTrainBinSchemaVersion)
    return fail("schema version " + std::to_string(footerVersion) +
                " (footer at byte offset " + std::to_string(footerOffset) +
                "), but this qlora-run reads version " +
                std::to_string(kTrainBinSchemaVersion) +
                "; recompile with the matching qloracc");
  uint64_t expected = readLe(footer, 8);
  uint64_t computed = xxh64(file, footerOffset);
  if (expected != computed)
    return fail("checksum mismatch: the file is corrupted (expected " +
                hex(expected) + " at byte offset " +
                std::to_string(footerOffset) + ", computed " + hex(computed) +
                " over bytes " + range(0, footerOffset) + ")");
  return true;
}

bool Validator::checkFlatbuffer() {
  uint64_t flatbufferBytes = readLe(file, 4);
  uint64_t room = footerOffset - kTrainBinSizePrefixBytes;
  std::string found = "flatbuffer size " + std::to_string(flatbufferBytes) +
                      " at byte offset 0";
  if (flatbufferBytes < 8)
    return fail(found + " is too small, expected at least 8 for the root "
                        "offset and the identifier");
  if (flatbufferBytes > room)
    return fail(found + " runs into the footer at byte offset " +
                std::to_string(footerOffset) + " (at most " +
                std::to_string(room) + ")");
  uint64_t framed = kTrainBinSizePrefixBytes + flatbufferBytes;
  sectionBase = (framed + kTrainBinSectionAlignment - 1) /
                kTrainBinSectionAlignment * kTrainBinSectionAlignment;

  const std::byte *identifier = file + 8;
  if (std::memcmp(identifier, kTrainBinIdentifier.data(), 4) != 0)
    return fail("flatbuffer identifier at byte offset 8 is " +
                quoteBytes(identifier, 4) + ", expected '" +
                std::string(kTrainBinIdentifier) + "'");

  const auto *bytes = reinterpret_cast<const uint8_t *>(file);
  if (framed >= FLATBUFFERS_MAX_BUFFER_SIZE)
    return fail(found + " exceeds the flatbuffer limit of 2 GiB");
  flatbuffers::Verifier::Options options;
  // Every table takes at least 4 bytes, so this bounds the work without
  // refusing a large valid plan.
  options.max_tables = static_cast<flatbuffers::uoffset_t>(flatbufferBytes);
  flatbuffers::Verifier verifier(bytes, framed, options);
  if (!fb::VerifySizePrefixedTrainBinBuffer(verifier))
    return fail("flatbuffer at byte offset 4 (" +
                std::to_string(flatbufferBytes) +
                " bytes) fails verification: an offset, table or vector "
                "lies outside it or is misaligned");
  root = fb::GetSizePrefixedTrainBin(bytes);
  if (root->schema_version() != footerVersion)
    return fail(
        "flatbuffer schema_version " + std::to_string(root->schema_version()) +
        " differs from the footer's version " + std::to_string(footerVersion));
  return true;
}

bool Validator::checkSections(std::vector<std::span<const std::byte>> &spans) {
  const auto *sections = root->sections();
  numSections = sizeOf(sections);
  struct Extent {
    uint64_t begin, end;
    uint32_t index;
  };
  std::vector<Extent> extents;
  extents.reserve(numSections);
  for (uint32_t i = 0; i < numSections; ++i) {
    const fb::Section *section = sections->Get(i);
    std::string where = "section " + std::to_string(i) + " " +
                        quoteName(section->name()) + ": ";
    uint64_t offset = section->offset(), bytes = section->size();
    if (offset % kTrainBinSectionAlignment != 0)
      return fail(where + "offset " + std::to_string(offset) +
                  " is not a multiple of " +
                  std::to_string(kTrainBinSectionAlignment));
    uint64_t begin = 0, end = 0;
    if (__builtin_add_overflow(sectionBase, offset, &begin) ||
        __builtin_add_overflow(begin, bytes, &end) || end > footerOffset)
      return fail(where + "offset " + std::to_string(offset) + " and size " +
                  std::to_string(bytes) + " from the section base at byte " +
                  "offset " + std::to_string(sectionBase) +
                  " run past the section area, which ends at the footer at "
                  "byte offset " +
                  std::to_string(footerOffset));
    extents.push_back({begin, end, i});
  }
  // Sorted by start, a section overlaps an earlier one exactly when it
  // starts before the furthest end so far. Empty sections own no byte.
  std::vector<Extent> sorted = extents;
  std::sort(sorted.begin(), sorted.end(), [](const Extent &a, const Extent &b) {
    return std::tie(a.begin, a.end, a.index) <
           std::tie(b.begin, b.end, b.index);
  });
  const Extent *furthest = nullptr;
  for (const Extent &extent : sorted) {
    if (extent.begin == extent.end)
      continue;
    if (furthest && extent.begin < furthest->end)
      return fail("section " + std::to_string(extent.index) + " " +
                  quoteName(sections->Get(extent.index)->name()) + ": bytes " +
                  range(extent.begin, extent.end) + " overlap section " +
                  std::to_string(furthest->index) + " " +
                  quoteName(sections->Get(furthest->index)->name()) +
                  " at bytes " + range(furthest->begin, furthest->end));
    if (!furthest || extent.end > furthest->end)
      furthest = &extent;
  }
  spans.reserve(numSections);
  for (const Extent &extent : extents) {
    const fb::Section *section = sections->Get(extent.index);
    std::span<const std::byte> bytes(file + extent.begin,
                                     extent.end - extent.begin);
    uint64_t computed = xxh64(bytes);
    if (computed != section->checksum())
      return fail("section " + std::to_string(extent.index) + " " +
                  quoteName(section->name()) +
                  ": checksum mismatch (expected " + hex(section->checksum()) +
                  ", computed " + hex(computed) + " over bytes " +
                  range(extent.begin, extent.end) + ")");
    spans.push_back(bytes);
  }
  return true;
}

bool Validator::checkSectionIndex(int64_t index, const std::string &where) {
  if (index < 0 || index >= numSections)
    return fail(where + std::to_string(index) + " is out of range, expected " +
                (numSections ? "0 to " + std::to_string(numSections - 1)
                             : std::string("none: the file has no sections")));
  return true;
}

bool Validator::checkBufferIndex(uint32_t index, const std::string &where) {
  if (index >= numBuffers)
    return fail(where + "buffer " + std::to_string(index) +
                " is out of range, expected " +
                (numBuffers ? "0 to " + std::to_string(numBuffers - 1)
                            : std::string("none: the plan has no buffers")));
  return true;
}

bool Validator::checkBuffers() {
  const fb::MemoryPlan *memory = root->memory();
  if (!memory)
    return fail("the plan has no memory table, expected the arena size");
  uint64_t arenaSize = memory->arena_size();
  if (const auto *byClass = memory->by_class())
    for (uint32_t i = 0; i < byClass->size(); ++i)
      if (byClass->Get(i)->buffer_class() > fb::BufferClass::MAX)
        return fail("memory.by_class[" + std::to_string(i) +
                    "]: buffer class " +
                    std::to_string(unsigned(byClass->Get(i)->buffer_class())) +
                    " is unknown, expected 0 to " +
                    std::to_string(unsigned(fb::BufferClass::MAX)));

  const auto *buffers = root->buffers();
  numBuffers = sizeOf(buffers);
  for (uint32_t i = 0; i < numBuffers; ++i) {
    const fb::Buffer *buffer = buffers->Get(i);
    std::string where =
        "buffer " + std::to_string(i) + " " + quoteName(buffer->name()) + ": ";
    if (buffer->buffer_class() > fb::BufferClass::MAX)
      return fail(where + "buffer class " +
                  std::to_string(unsigned(buffer->buffer_class())) +
                  " is unknown, expected 0 to " +
                  std::to_string(unsigned(fb::BufferClass::MAX)));
    if (buffer->dtype() > fb::DType::MAX)
      return fail(where + "dtype " + std::to_string(unsigned(buffer->dtype())) +
                  " is unknown, expected 0 to " +
                  std::to_string(unsigned(fb::DType::MAX)));
    uint64_t offset = buffer->offset(), bytes = buffer->size();
    uint64_t end = 0;
    if (__builtin_add_overflow(offset, bytes, &end) || end > arenaSize)
      return fail(where + "arena offset " + std::to_string(offset) +
                  " and size " + std::to_string(bytes) +
                  " run past the arena of " + std::to_string(arenaSize) +
                  " bytes");
    uint64_t alignment = buffer->alignment();
    if (!isPowerOfTwo(alignment))
      return fail(where + "alignment " + std::to_string(alignment) +
                  " is not a power of two");
    if (offset % alignment != 0)
      return fail(where + "arena offset " + std::to_string(offset) +
                  " is not a multiple of its alignment " +
                  std::to_string(alignment));
    int32_t init = buffer->init_section();
    if (init == -1)
      continue;
    if (!checkSectionIndex(init, where + "init_section "))
      return false;
    uint64_t sectionBytes = root->sections()->Get(init)->size();
    if (sectionBytes != bytes)
      return fail(where + "init_section " + std::to_string(init) + " holds " +
                  std::to_string(sectionBytes) + " bytes, expected " +
                  std::to_string(bytes) + " (the buffer's size)");
  }
  return true;
}

bool Validator::checkKernels() {
  const auto *kernels = root->kernels();
  for (uint32_t k = 0; k < sizeOf(kernels); ++k) {
    const fb::Kernel *kernel = kernels->Get(k);
    std::string where = "kernel " + std::to_string(k) + " " +
                        quoteName(kernel->symbol()) + ": ";
    const auto *params = kernel->params();
    for (uint32_t p = 0; p < sizeOf(params); ++p) {
      const fb::KernelParam *param = params->Get(p);
      std::string at = where + "params[" + std::to_string(p) + "] ";
      // `name` is the key readers binary-search on: present, sorted, unique.
      if (!param->name())
        return fail(at + "has no name");
      if (p > 0 && !(params->Get(p - 1)->name()->str() < param->name()->str()))
        return fail(at + quoteName(param->name()) + " is not after params[" +
                    std::to_string(p - 1) + "] " +
                    quoteName(params->Get(p - 1)->name()) +
                    ", expected names sorted and unique");
      if (param->kind() > fb::ParamKind::MAX)
        return fail(at + quoteName(param->name()) + ": kind " +
                    std::to_string(unsigned(param->kind())) +
                    " is unknown, expected 0 to " +
                    std::to_string(unsigned(fb::ParamKind::MAX)));
    }
    const auto *images = kernel->images();
    for (uint32_t i = 0; i < sizeOf(images); ++i)
      if (!checkSectionIndex(images->Get(i)->section(), where + "images[" +
                                                            std::to_string(i) +
                                                            "] section "))
        return false;
    const auto *then = kernel->then();
    for (uint32_t i = 0; i < sizeOf(then); ++i)
      if (!then->Get(i)->entry() || then->Get(i)->entry()->size() == 0)
        return fail(where + "then[" + std::to_string(i) +
                    "] has no entry, expected the name of a function in the "
                    "kernel's images");
  }
  return true;
}

bool Validator::checkRange(uint64_t offset, uint64_t bytes,
                           uint32_t bufferIndex, const std::string &where) {
  uint64_t bufferBytes = root->buffers()->Get(bufferIndex)->size();
  uint64_t end = 0;
  if (__builtin_add_overflow(offset, bytes, &end) || end > bufferBytes)
    return fail(where + std::to_string(bytes) + " bytes at offset " +
                std::to_string(offset) + " of buffer " +
                std::to_string(bufferIndex) + " " +
                quoteName(root->buffers()->Get(bufferIndex)->name()) +
                " run past its " + std::to_string(bufferBytes) + " bytes");
  return true;
}

bool Validator::checkPrograms() {
  const auto *programs = root->programs();
  uint32_t numKernels = sizeOf(root->kernels());
  for (uint32_t p = 0; p < sizeOf(programs); ++p) {
    const fb::Program *program = programs->Get(p);
    const auto *instrs = program->instrs();
    for (uint32_t i = 0; i < sizeOf(instrs); ++i) {
      const fb::Instr *instr = instrs->Get(i);
      std::string where = "program " + quoteName(program->name()) + " instr " +
                          std::to_string(i) + ": ";
      switch (instr->kind()) {
      case fb::InstrKind::Launch: {
        if (instr->kernel() >= numKernels)
          return fail(where + "kernel " + std::to_string(instr->kernel()) +
                      " is out of range, expected " +
                      (numKernels ? "0 to " + std::to_string(numKernels - 1)
                                  : std::string("none: no kernels")));
        const auto *args = instr->args();
        for (uint32_t a = 0; a < sizeOf(args); ++a)
          if (!checkBufferIndex(args->Get(a),
                                where + "args[" + std::to_string(a) + "] "))
            return false;
        break;
      }
      case fb::InstrKind::Copy:
        if (!checkBufferIndex(instr->src(), where + "src ") ||
            !checkBufferIndex(instr->dst(), where + "dst ") ||
            !checkRange(instr->src_offset(), instr->bytes(), instr->src(),
                        where + "src ") ||
            !checkRange(instr->dst_offset(), instr->bytes(), instr->dst(),
                        where + "dst "))
          return false;
        break;
      default:
        return fail(where + "kind " + std::to_string(unsigned(instr->kind())) +
                    " is unknown, expected 0 to " +
                    std::to_string(unsigned(fb::InstrKind::MAX)));
      }
    }
  }
  return true;
}

bool Validator::checkLora() {
  const fb::LoraInfo *lora = root->lora();
  if (!lora)
    return true;
  const auto *modules = lora->modules();
  for (uint32_t m = 0; m < sizeOf(modules); ++m) {
    const fb::LoraModule *module = modules->Get(m);
    std::string where = "lora module " + std::to_string(m) + " " +
                        quoteName(module->module_()) + ": ";
    if (!checkBufferIndex(module->lora_a(), where + "lora_a ") ||
        !checkBufferIndex(module->lora_b(), where + "lora_b ") ||
        !checkBufferIndex(module->grad_a(), where + "grad_a ") ||
        !checkBufferIndex(module->grad_b(), where + "grad_b "))
      return false;
  }
  return true;
}

} // namespace

std::string_view bufferClassName(BufferClass cls) {
  return kBufferClassNames[static_cast<size_t>(cls)];
}

bool isPersistent(BufferClass cls) {
  switch (cls) {
  case BufferClass::Weight:
  case BufferClass::QuantizedWeight:
  case BufferClass::Lora:
  case BufferClass::Optimizer:
  case BufferClass::Io:
    return true;
  case BufferClass::Gradient:
  case BufferClass::Activation:
  case BufferClass::Recompute:
  case BufferClass::Workspace:
    return false;
  }
  return false;
}

std::optional<BufferClass> parseBufferClass(std::string_view name) {
  for (size_t i = 0; i < kBufferClassNames.size(); ++i)
    if (kBufferClassNames[i] == name)
      return static_cast<BufferClass>(i);
  return std::nullopt;
}

BufferClass toBufferClass(fb::BufferClass cls) {
  return static_cast<BufferClass>(cls);
}

std::optional<fb::DType> toSchemaDType(DType dtype) {
  for (const DTypePair &pair : kSchemaDTypes)
    if (pair.dtype == dtype)
      return pair.schema;
  return std::nullopt;
}

DType fromSchemaDType(fb::DType dtype) {
  return kSchemaDTypes[static_cast<size_t>(dtype)].dtype;
}

TrainBinFile::~TrainBinFile() {
  if (mapping_)
    ::munmap(const_cast<std::byte *>(mapping_), static_cast<size_t>(size_));
}

std::unique_ptr<TrainBinFile> TrainBinFile::open(const std::string &path,
                                                 std::string &error) {
  auto fail = [&](const std::string &message) {
    error = escapeForMessage(path + ": " + message);
    return nullptr;
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return fail("cannot open: " + errnoMessage(errno));
  struct stat info;
  if (::fstat(fd, &info) != 0) {
    int err = errno;
    ::close(fd);
    return fail("cannot stat: " + errnoMessage(err));
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    return fail("is not a regular file");
  }
  auto fileSize = static_cast<uint64_t>(info.st_size);
  // Also keeps mmap away from empty files, where it fails with EINVAL.
  if (fileSize < kTrainBinMinBytes) {
    ::close(fd);
    Validator(path, nullptr, fileSize, error).checkFooter();
    return nullptr;
  }
  if (fileSize > std::numeric_limits<size_t>::max()) {
    ::close(fd);
    return fail("file is " + std::to_string(fileSize) +
                " bytes, more than this process can map");
  }
  void *mapping = ::mmap(nullptr, static_cast<size_t>(fileSize), PROT_READ,
                         MAP_PRIVATE, fd, 0);
  int mmapErrno = errno;
  // The mapping keeps the file alive; the descriptor is no longer needed.
  ::close(fd);
  if (mapping == MAP_FAILED)
    return fail("cannot mmap " + std::to_string(fileSize) +
                " bytes: " + errnoMessage(mmapErrno));

  // From here on the destructor unmaps on every failure path.
  std::unique_ptr<TrainBinFile> file(new TrainBinFile());
  file->path_ = path;
  file->mapping_ = static_cast<const std::byte *>(mapping);
  file->size_ = fileSize;

  Validator validator(path, file->mapping_, fileSize, error);
  if (!validator.checkFooter() || !validator.checkFlatbuffer() ||
      !validator.checkSections(file->sections_) || !validator.checkBuffers() ||
      !validator.checkKernels() || !validator.checkPrograms() ||
      !validator.checkLora())
    return nullptr;
  file->root_ = validator.root;
  return file;
}

KernelParams TrainBinFile::kernelParams(uint32_t kernelIndex) const {
  KernelParams result;
  const auto *kernels = root_->kernels();
  if (!kernels || kernelIndex >= kernels->size())
    return result;
  const auto *params = kernels->Get(kernelIndex)->params();
  for (uint32_t i = 0; i < sizeOf(params); ++i) {
    const fb::KernelParam *param = params->Get(i);
    std::string name = param->name()->str();
    switch (param->kind()) {
    case fb::ParamKind::Int:
      result.set(std::move(name), param->int_value());
      break;
    case fb::ParamKind::Float:
      result.set(std::move(name), param->float_value());
      break;
    case fb::ParamKind::String:
      result.set(std::move(name), param->string_value()
                                      ? param->string_value()->str()
                                      : std::string());
      break;
    case fb::ParamKind::Ints: {
      std::vector<int64_t> values;
      if (const auto *ints = param->ints_value())
        values.assign(ints->begin(), ints->end());
      result.set(std::move(name), std::move(values));
      break;
    }
    }
  }
  return result;
}

} // namespace qlora::format
