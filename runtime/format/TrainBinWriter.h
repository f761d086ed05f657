//===- TrainBinWriter.h - Writes train.bin files ----------------*- C++ -*-===//
//
// Plain C++ descriptions of everything train.fbs stores, and the function
// that lays them out as the file TrainBinFile reads: size-prefixed flatbuffer,
// 4 KiB-aligned sections with their checksums, footer. The compiler fills a
// TrainBinDesc from the qrt module; no flatbuffers type appears here.
//
// The writer checks only what it needs to produce the bytes (element types
// the schema can store, the flatbuffer's 2 GiB limit). Whether indices and
// sizes in the plan agree is the loader's job, so a test can write a wrong
// plan and see the loader refuse it.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_FORMAT_TRAINBINWRITER_H
#define QLORACC_RUNTIME_FORMAT_TRAINBINWRITER_H

#include "runtime/format/DType.h"
#include "runtime/format/KernelParams.h"
#include "runtime/format/TrainBin.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace qlora::format {

/// Raw bytes stored after the flatbuffer. Either owned by the description
/// (`owned`) or borrowed from the caller (`borrowed`, used when `owned` is
/// empty), so that weights folded by the compiler or an mmap'd checkpoint
/// are written without a copy; borrowed bytes must outlive the write.
struct TrainBinSectionData {
  std::string name;
  std::vector<std::byte> owned;
  std::span<const std::byte> borrowed;

  std::span<const std::byte> bytes() const {
    return owned.empty() ? borrowed : std::span<const std::byte>(owned);
  }
};

/// fb::RandomInit (see train.fbs).
struct TrainBinRandomInit {
  enum class Kind : uint8_t { Normal, Ones, KaimingUniform, Nf4 };
  Kind kind = Kind::Normal;
  uint64_t seed = 0;
  std::string stream;
  float scale = 0;
  int64_t elements = 0, blockSize = 0, dqBlockSize = 0;
};

struct TrainBinBufferDesc {
  std::string name;
  BufferClass cls = BufferClass::Activation;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t size = 0;
  uint64_t alignment = 1;
  uint64_t offset = 0;
  /// Index into TrainBinDesc::sections of the initial bytes, or -1.
  int32_t initSection = -1;
  /// Values qlora-run draws instead (initSection is then -1).
  std::optional<TrainBinRandomInit> randomInit;
};

struct TrainBinKernelImageDesc {
  std::string arch; // "sm_80", ..., or "ptx"
  int32_t section = -1;
};

struct TrainBinKernelPhaseDesc {
  std::string entry;
  std::vector<uint32_t> grid, block;
};

struct TrainBinKernelDesc {
  std::string symbol;
  std::string templateName;
  KernelParams params;
  std::vector<TrainBinKernelImageDesc> images;
  std::vector<TrainBinKernelPhaseDesc> then;
};

struct TrainBinInstrDesc {
  InstrKind kind = InstrKind::Launch;
  // Launch
  uint32_t kernel = 0;
  std::vector<uint32_t> args;
  std::vector<uint32_t> grid;
  std::vector<uint32_t> block;
  uint32_t smem = 0;
  // Copy
  uint32_t src = 0;
  uint64_t srcOffset = 0;
  uint32_t dst = 0;
  uint64_t dstOffset = 0;
  uint64_t bytes = 0;

  static TrainBinInstrDesc launch(uint32_t kernel, std::vector<uint32_t> args,
                                  std::vector<uint32_t> grid,
                                  std::vector<uint32_t> block,
                                  uint32_t smem = 0);
  static TrainBinInstrDesc copy(uint32_t src, uint64_t srcOffset, uint32_t dst,
                                uint64_t dstOffset, uint64_t bytes);
};

struct TrainBinProgramDesc {
  std::string name;
  std::vector<TrainBinInstrDesc> instrs;
};

struct TrainBinModelInfo {
  std::string architecture;
  std::string nameOrPath;
  int64_t vocabSize = 0;
  int64_t hiddenSize = 0;
  int64_t numHiddenLayers = 0;
  int64_t batch = 0;
  int64_t seq = 0;
  int64_t gradAccum = 1;
};

/// Buffer indices of one LoRA-adapted linear layer.
struct TrainBinLoraModule {
  std::string module;
  uint32_t loraA = 0;
  uint32_t loraB = 0;
  uint32_t gradA = 0;
  uint32_t gradB = 0;
};

struct TrainBinLoraInfo {
  int32_t r = 0;
  double alpha = 0;
  double dropout = 0;
  bool useRslora = false;
  std::vector<std::string> targetModules;
  std::vector<TrainBinLoraModule> modules;
};

struct TrainBinOptimizerInfo {
  double beta1 = 0;
  double beta2 = 0;
  double epsilon = 0;
  double weightDecay = 0;
  double maxGradNorm = 0;
};

struct TrainBinMemoryClass {
  BufferClass cls = BufferClass::Activation;
  uint64_t peakBytes = 0;
  uint64_t totalBytes = 0;
};

struct TrainBinMemoryPlan {
  uint64_t arenaSize = 0;
  uint64_t peakBytes = 0;
  std::vector<TrainBinMemoryClass> byClass;
};

/// Everything a train.bin holds. Sections are laid out in this order; their
/// offsets and checksums are computed by the writer.
struct TrainBinDesc {
  std::string producer; // e.g. "qloracc 0.1"
  TrainBinModelInfo model;
  TrainBinLoraInfo lora;
  TrainBinOptimizerInfo optimizer;
  std::vector<TrainBinBufferDesc> buffers;
  std::vector<TrainBinKernelDesc> kernels;
  std::vector<TrainBinProgramDesc> programs;
  TrainBinMemoryPlan memory;
  std::vector<TrainBinSectionData> sections;
};

/// Writes `desc` to `path`, replacing any file there: the bytes go to a
/// temporary file in the same directory, which is synced and renamed over
/// `path`. On failure returns false, sets `error` to one line naming the file
/// and the problem, and leaves `path` and its directory as they were.
bool writeTrainBin(const std::string &path, const TrainBinDesc &desc,
                   std::string &error);

} // namespace qlora::format

#endif // QLORACC_RUNTIME_FORMAT_TRAINBINWRITER_H
