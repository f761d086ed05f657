//===- TrainBin.h - Memory-mapped train.bin files ---------------*- C++ -*-===//
//
// The layout constants of train.bin (train.fbs describes the layout), the
// enums that the compiler's writer and the runtime share, and the loader.
//
// TrainBinFile::open maps the file and checks it completely before handing
// out anything: footer, schema version, whole-file checksum, the flatbuffer
// (identifier and flatbuffers::Verifier), every section's bounds and
// checksum, and every index and byte range in the plan. Code that walks
// root() afterwards may therefore index buffers, kernels and sections
// without checking again.
//
// This header does not pull in flatbuffers: root() returns the generated
// table, declared here; include "runtime/format/train_generated.h" to read
// its fields.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_FORMAT_TRAINBIN_H
#define QLORACC_RUNTIME_FORMAT_TRAINBIN_H

#include "runtime/format/DType.h"
#include "runtime/format/KernelParams.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qlora::fb {
struct TrainBin;
enum class BufferClass : uint8_t;
enum class DType : uint8_t;
} // namespace qlora::fb

namespace qlora::format {

/// Stored in the flatbuffer's schema_version and in the footer. Bump it on
/// any change to train.fbs that an older reader would misread; the loader
/// refuses every other version.
inline constexpr uint32_t kTrainBinSchemaVersion = 1;

/// The u32 flatbuffer size at byte offset 0.
inline constexpr uint64_t kTrainBinSizePrefixBytes = 4;
/// Sections start at multiples of this many bytes, counted from the file's
/// start (the section base is itself a multiple).
inline constexpr uint64_t kTrainBinSectionAlignment = 4096;
/// u64 XXH64 + u32 schema version + "QLTE".
inline constexpr uint64_t kTrainBinFooterBytes = 16;
inline constexpr std::string_view kTrainBinIdentifier = "QLTB";
inline constexpr std::string_view kTrainBinFooterMagic = "QLTE";
/// The smallest file that can be valid: the size prefix, a flatbuffer's root
/// offset and identifier, and the footer.
inline constexpr uint64_t kTrainBinMinBytes =
    kTrainBinSizePrefixBytes + 8 + kTrainBinFooterBytes;

/// What a buffer holds; the same values as fb::BufferClass.
enum class BufferClass : uint8_t {
  Weight = 0,
  Lora = 1,
  Gradient = 2,
  Optimizer = 3,
  Activation = 4,
  Workspace = 5,
  Io = 6,
  QuantizedWeight = 7,
  Recompute = 8,
};
inline constexpr unsigned kNumBufferClasses = 9;

/// "weight", "lora", "gradient", "optimizer", "activation", "workspace",
/// "io", "quantized_weight", "recompute": qrt's spelling (#qrt.class).
std::string_view bufferClassName(BufferClass cls);
/// True for the classes live over the whole step (frozen and quantized
/// weights, LoRA matrices, optimizer moments, io); the others live from the
/// first instruction that uses them to the last.
bool isPersistent(BufferClass cls);
/// The inverse of bufferClassName; std::nullopt for any other string.
std::optional<BufferClass> parseBufferClass(std::string_view name);
BufferClass toBufferClass(fb::BufferClass cls);

/// The element types train.bin can store; std::nullopt for the others.
std::optional<fb::DType> toSchemaDType(DType dtype);
/// The loader has checked every stored dtype, so this cannot fail on a
/// buffer of an open TrainBinFile.
DType fromSchemaDType(fb::DType dtype);

/// One step of a program; the same values as fb::InstrKind.
enum class InstrKind : uint8_t { Launch = 0, Copy = 1 };

/// A train.bin file, mapped read-only for as long as the object lives.
class TrainBinFile {
public:
  /// Opens and checks `path`. On failure returns nullptr and sets `error` to
  /// one line naming the file, the byte offset or entry, what was expected
  /// and what was found.
  static std::unique_ptr<TrainBinFile> open(const std::string &path,
                                            std::string &error);
  ~TrainBinFile();
  TrainBinFile(const TrainBinFile &) = delete;
  TrainBinFile &operator=(const TrainBinFile &) = delete;

  const std::string &path() const { return path_; }
  uint64_t fileSize() const { return size_; }
  /// The plan; valid while the file is open.
  const fb::TrainBin &root() const { return *root_; }

  size_t numSections() const { return sections_.size(); }
  /// The bytes of section `index` inside the mapping (empty when `index` is
  /// out of range); valid while the file is open and 4096-byte aligned.
  std::span<const std::byte> section(uint32_t index) const {
    return index < sections_.size() ? sections_[index]
                                    : std::span<const std::byte>();
  }

  /// The static parameters of kernel `kernelIndex`, converted from the
  /// flatbuffer; empty when the index is out of range.
  KernelParams kernelParams(uint32_t kernelIndex) const;

private:
  TrainBinFile() = default;

  std::string path_;
  const std::byte *mapping_ = nullptr;
  uint64_t size_ = 0;
  const fb::TrainBin *root_ = nullptr;
  std::vector<std::span<const std::byte>> sections_;
};

} // namespace qlora::format

#endif // QLORACC_RUNTIME_FORMAT_TRAINBIN_H
