//===- TrainBinWriter.cpp - Writes train.bin files ------------------------===//
//
// Section offsets and checksums go into the flatbuffer, which comes first in
// the file, so each section is read twice: once for its own checksum before
// the flatbuffer is built, once while it is written (and hashed into the
// footer's whole-file checksum). Nothing is buffered beyond the flatbuffer.
//
// The temporary file is removed on every failure, so `path` only ever
// changes by one atomic rename.
//
//===----------------------------------------------------------------------===//
#include "runtime/format/TrainBinWriter.h"

#include "runtime/format/AtomicFile.h"

#include "runtime/format/Checksum.h"
#include "runtime/format/Safetensors.h"
#include "runtime/format/train_generated.h"

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>
#include <variant>

namespace qlora::format {
namespace {

using flatbuffers::FlatBufferBuilder;
using flatbuffers::Offset;

uint64_t alignUp(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

/// Writes the file, hashing every byte into the footer checksum.
class HashingWriter {
public:
  HashingWriter(AtomicFileWriter &file, std::string &error)
      : file(file), error(error) {}

  bool write(const void *data, size_t size) {
    hash.update(data, size);
    position += size;
    return file.write(data, size, error);
  }
  /// Writes zeros up to file offset `target` (>= the current position).
  bool padTo(uint64_t target) {
    static constexpr unsigned char kZeros[4096] = {};
    while (position < target) {
      size_t chunk = std::min<uint64_t>(target - position, sizeof(kZeros));
      if (!write(kZeros, chunk))
        return false;
    }
    return true;
  }
  uint64_t digest() const { return hash.digest(); }
  uint64_t offset() const { return position; }

private:
  AtomicFileWriter &file;
  std::string &error;
  Xxh64 hash;
  uint64_t position = 0;
};

void appendLe(std::vector<unsigned char> &out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i)
    out.push_back(static_cast<unsigned char>(value >> (8 * i)));
}

/// Where each section goes, relative to the section base, and its checksum.
struct SectionPlacement {
  uint64_t offset = 0;
  uint64_t checksum = 0;
};

std::vector<SectionPlacement>
placeSections(const std::vector<TrainBinSectionData> &sections) {
  std::vector<SectionPlacement> placements;
  placements.reserve(sections.size());
  uint64_t cursor = 0;
  for (const TrainBinSectionData &section : sections) {
    std::span<const std::byte> bytes = section.bytes();
    SectionPlacement placement;
    placement.checksum = xxh64(bytes);
    // An empty section owns no byte; placing it at the base keeps it from
    // adding padding (or a page past the end of the file).
    if (!bytes.empty()) {
      placement.offset = alignUp(cursor, kTrainBinSectionAlignment);
      cursor = placement.offset + bytes.size();
    }
    placements.push_back(placement);
  }
  return placements;
}

/// Builds the flatbuffer; the only descriptions it can refuse are element
/// types the schema has no value for.
class PlanBuilder {
public:
  PlanBuilder(const TrainBinDesc &desc,
              const std::vector<SectionPlacement> &placements)
      : desc(desc), placements(placements) {}

  bool build(std::string &problem);
  const FlatBufferBuilder &builder() const { return fbb; }

private:
  Offset<fb::ModelInfo> buildModel();
  Offset<fb::LoraInfo> buildLora();
  Offset<fb::OptimizerInfo> buildOptimizer();
  bool buildBuffers(Offset<flatbuffers::Vector<Offset<fb::Buffer>>> &result,
                    std::string &problem);
  Offset<fb::KernelParam> buildParam(const std::string &name,
                                     const KernelParams::Value &value);
  Offset<fb::Kernel> buildKernel(const TrainBinKernelDesc &kernel);
  Offset<fb::Instr> buildInstr(const TrainBinInstrDesc &instr);
  Offset<fb::Program> buildProgram(const TrainBinProgramDesc &program);
  Offset<fb::MemoryPlan> buildMemory();
  Offset<flatbuffers::Vector<Offset<fb::Section>>> buildSections();

  template <typename Desc, typename BuildOne>
  auto buildAll(const std::vector<Desc> &descs, BuildOne buildOne) {
    std::vector<decltype(buildOne(descs.front()))> offsets;
    offsets.reserve(descs.size());
    for (const Desc &item : descs)
      offsets.push_back(buildOne(item));
    return fbb.CreateVector(offsets);
  }

  const TrainBinDesc &desc;
  const std::vector<SectionPlacement> &placements;
  FlatBufferBuilder fbb{1 << 16};
};

Offset<fb::ModelInfo> PlanBuilder::buildModel() {
  const TrainBinModelInfo &model = desc.model;
  return fb::CreateModelInfo(
      fbb, fbb.CreateString(model.architecture),
      fbb.CreateString(model.nameOrPath), model.vocabSize, model.hiddenSize,
      model.numHiddenLayers, model.batch, model.seq, model.gradAccum);
}

Offset<fb::LoraInfo> PlanBuilder::buildLora() {
  const TrainBinLoraInfo &lora = desc.lora;
  auto targets = fbb.CreateVectorOfStrings(lora.targetModules);
  auto modules = buildAll(lora.modules, [&](const TrainBinLoraModule &module) {
    return fb::CreateLoraModule(fbb, fbb.CreateString(module.module),
                                module.loraA, module.loraB, module.gradA,
                                module.gradB);
  });
  return fb::CreateLoraInfo(fbb, lora.r, lora.alpha, lora.dropout,
                            lora.useRslora, targets, modules);
}

Offset<fb::OptimizerInfo> PlanBuilder::buildOptimizer() {
  const TrainBinOptimizerInfo &opt = desc.optimizer;
  return fb::CreateOptimizerInfo(fbb, opt.beta1, opt.beta2, opt.epsilon,
                                 opt.weightDecay, opt.maxGradNorm);
}

bool PlanBuilder::buildBuffers(
    Offset<flatbuffers::Vector<Offset<fb::Buffer>>> &result,
    std::string &problem) {
  std::vector<Offset<fb::Buffer>> buffers;
  buffers.reserve(desc.buffers.size());
  for (size_t i = 0; i < desc.buffers.size(); ++i) {
    const TrainBinBufferDesc &buffer = desc.buffers[i];
    std::optional<fb::DType> dtype = toSchemaDType(buffer.dtype);
    if (!dtype) {
      problem = "buffer " + std::to_string(i) + " '" + buffer.name +
                "': dtype " + std::string(dtypeName(buffer.dtype)) +
                " cannot be stored in train.bin, expected one of F32, BF16, "
                "F16, I32, I64, U8";
      return false;
    }
    Offset<fb::RandomInit> randomInit;
    if (const auto &random = buffer.randomInit)
      randomInit = fb::CreateRandomInit(
          fbb, static_cast<fb::RandomInitKind>(random->kind), random->seed,
          fbb.CreateString(random->stream), random->scale, random->elements,
          random->blockSize, random->dqBlockSize);
    buffers.push_back(fb::CreateBuffer(
        fbb, fbb.CreateString(buffer.name),
        static_cast<fb::BufferClass>(buffer.cls), *dtype,
        fbb.CreateVector(buffer.shape), buffer.size, buffer.alignment,
        buffer.offset, buffer.initSection, randomInit));
  }
  result = fbb.CreateVector(buffers);
  return true;
}

Offset<fb::KernelParam>
PlanBuilder::buildParam(const std::string &name,
                        const KernelParams::Value &value) {
  auto nameOffset = fbb.CreateString(name);
  return std::visit(
      [&](const auto &v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, int64_t>)
          return fb::CreateKernelParam(fbb, nameOffset, fb::ParamKind::Int, v);
        else if constexpr (std::is_same_v<T, double>)
          return fb::CreateKernelParam(fbb, nameOffset, fb::ParamKind::Float, 0,
                                       v);
        else if constexpr (std::is_same_v<T, std::string>)
          return fb::CreateKernelParam(fbb, nameOffset, fb::ParamKind::String,
                                       0, 0.0, fbb.CreateString(v));
        else
          return fb::CreateKernelParam(fbb, nameOffset, fb::ParamKind::Ints, 0,
                                       0.0, 0, fbb.CreateVector(v));
      },
      value);
}

Offset<fb::Kernel> PlanBuilder::buildKernel(const TrainBinKernelDesc &kernel) {
  std::vector<Offset<fb::KernelParam>> params;
  for (const auto &[name, value] : kernel.params.all())
    params.push_back(buildParam(name, value));
  // `name` is the table's key: readers look parameters up by binary search.
  auto paramVector = fbb.CreateVectorOfSortedTables(&params);
  auto images =
      buildAll(kernel.images, [&](const TrainBinKernelImageDesc &image) {
        return fb::CreateKernelImage(fbb, fbb.CreateString(image.arch),
                                     image.section);
      });
  auto then = buildAll(kernel.then, [&](const TrainBinKernelPhaseDesc &phase) {
    return fb::CreateKernelPhase(fbb, fbb.CreateString(phase.entry),
                                 fbb.CreateVector(phase.grid),
                                 fbb.CreateVector(phase.block));
  });
  return fb::CreateKernel(fbb, fbb.CreateString(kernel.symbol),
                          fbb.CreateString(kernel.templateName), paramVector,
                          images, then);
}

Offset<fb::Instr> PlanBuilder::buildInstr(const TrainBinInstrDesc &instr) {
  return fb::CreateInstr(
      fbb, static_cast<fb::InstrKind>(instr.kind), instr.kernel,
      fbb.CreateVector(instr.args), fbb.CreateVector(instr.grid),
      fbb.CreateVector(instr.block), instr.smem, instr.src, instr.srcOffset,
      instr.dst, instr.dstOffset, instr.bytes);
}

Offset<fb::Program>
PlanBuilder::buildProgram(const TrainBinProgramDesc &program) {
  auto instrs = buildAll(program.instrs, [&](const TrainBinInstrDesc &instr) {
    return buildInstr(instr);
  });
  return fb::CreateProgram(fbb, fbb.CreateString(program.name), instrs);
}

Offset<fb::MemoryPlan> PlanBuilder::buildMemory() {
  const TrainBinMemoryPlan &memory = desc.memory;
  auto byClass =
      buildAll(memory.byClass, [&](const TrainBinMemoryClass &entry) {
        return fb::CreateMemoryClassBytes(
            fbb, static_cast<fb::BufferClass>(entry.cls), entry.peakBytes,
            entry.totalBytes);
      });
  return fb::CreateMemoryPlan(fbb, memory.arenaSize, memory.peakBytes, byClass);
}

Offset<flatbuffers::Vector<Offset<fb::Section>>> PlanBuilder::buildSections() {
  std::vector<Offset<fb::Section>> sections;
  sections.reserve(desc.sections.size());
  for (size_t i = 0; i < desc.sections.size(); ++i)
    sections.push_back(fb::CreateSection(
        fbb, fbb.CreateString(desc.sections[i].name), placements[i].offset,
        desc.sections[i].bytes().size(), placements[i].checksum));
  return fbb.CreateVector(sections);
}

bool PlanBuilder::build(std::string &problem) {
  Offset<flatbuffers::Vector<Offset<fb::Buffer>>> buffers;
  if (!buildBuffers(buffers, problem))
    return false;
  auto producer = fbb.CreateString(desc.producer);
  auto model = buildModel();
  auto lora = buildLora();
  auto optimizer = buildOptimizer();
  auto kernels = buildAll(desc.kernels, [&](const TrainBinKernelDesc &kernel) {
    return buildKernel(kernel);
  });
  auto programs =
      buildAll(desc.programs, [&](const TrainBinProgramDesc &program) {
        return buildProgram(program);
      });
  auto sections = buildSections();
  auto memory = buildMemory();
  auto root = fb::CreateTrainBin(fbb, kTrainBinSchemaVersion, producer, model,
                                 lora, optimizer, buffers, kernels, programs,
                                 sections, memory);
  fb::FinishSizePrefixedTrainBinBuffer(fbb, root);
  if (fbb.GetSize() - kTrainBinSizePrefixBytes >= FLATBUFFERS_MAX_BUFFER_SIZE) {
    problem = "the plan takes " + std::to_string(fbb.GetSize()) +
              " bytes, more than a flatbuffer can hold (2 GiB); large data "
              "belongs in sections";
    return false;
  }
  return true;
}

} // namespace

TrainBinInstrDesc TrainBinInstrDesc::launch(uint32_t kernel,
                                            std::vector<uint32_t> args,
                                            std::vector<uint32_t> grid,
                                            std::vector<uint32_t> block,
                                            uint32_t smem) {
  TrainBinInstrDesc instr;
  instr.kind = InstrKind::Launch;
  instr.kernel = kernel;
  instr.args = std::move(args);
  instr.grid = std::move(grid);
  instr.block = std::move(block);
  instr.smem = smem;
  return instr;
}

TrainBinInstrDesc TrainBinInstrDesc::copy(uint32_t src, uint64_t srcOffset,
                                          uint32_t dst, uint64_t dstOffset,
                                          uint64_t bytes) {
  TrainBinInstrDesc instr;
  instr.kind = InstrKind::Copy;
  instr.src = src;
  instr.srcOffset = srcOffset;
  instr.dst = dst;
  instr.dstOffset = dstOffset;
  instr.bytes = bytes;
  return instr;
}

bool writeTrainBin(const std::string &path, const TrainBinDesc &desc,
                   std::string &error) {
  auto fail = [&](const std::string &problem) {
    error = escapeForMessage(path + ": " + problem);
    return false;
  };
  std::vector<SectionPlacement> placements = placeSections(desc.sections);
  PlanBuilder plan(desc, placements);
  std::string problem;
  if (!plan.build(problem))
    return fail(problem);
  const FlatBufferBuilder &fbb = plan.builder();
  uint64_t base = alignUp(fbb.GetSize(), kTrainBinSectionAlignment);

  AtomicFileWriter file(path);
  std::string ioError;
  auto failIo = [&] {
    error = escapeForMessage(ioError);
    return false;
  };
  if (!file.open(ioError))
    return failIo();
  HashingWriter out(file, ioError);
  if (!out.write(fbb.GetBufferPointer(), fbb.GetSize()))
    return failIo();
  // Padded to the base even when every section is empty, so that each
  // section's start lies inside the file.
  if (!desc.sections.empty() && !out.padTo(base))
    return failIo();
  for (size_t i = 0; i < desc.sections.size(); ++i) {
    std::span<const std::byte> bytes = desc.sections[i].bytes();
    if (!out.padTo(base + placements[i].offset) ||
        !out.write(bytes.data(), bytes.size()))
      return failIo();
  }
  std::vector<unsigned char> footer;
  appendLe(footer, out.digest(), 8);
  appendLe(footer, kTrainBinSchemaVersion, 4);
  footer.insert(footer.end(), kTrainBinFooterMagic.begin(),
                kTrainBinFooterMagic.end());
  if (!out.write(footer.data(), footer.size()))
    return failIo();

  if (!file.commit(ioError))
    return failIo();
  return true;
}

} // namespace qlora::format
