//===- Executor.cpp - Runs the step program of a train.bin ----------------===//
#include "runtime/exec/Executor.h"

#include "runtime/exec/KernelFlops.h"
#include "runtime/exec/RandomInit.h"

#include "runtime/format/train_generated.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace qlora::exec {

namespace {

constexpr std::string_view kStepProgram = "train_step";

const fb::Program *findProgram(const fb::TrainBin &root,
                               std::string_view name) {
  if (!root.programs())
    return nullptr;
  for (const fb::Program *program : *root.programs())
    if (program->name() && program->name()->string_view() == name)
      return program;
  return nullptr;
}

/// The arena ranges of a launch's buffer arguments, into `args`.
void argumentRanges(const fb::TrainBin &root, const fb::Instr &instr,
                    std::vector<ArenaRange> &args) {
  args.clear();
  if (instr.args())
    for (uint32_t arg : *instr.args()) {
      const fb::Buffer &buffer = *root.buffers()->Get(arg);
      args.push_back({buffer.offset(), buffer.size()});
    }
}

/// Copies up to three of `dims` (a train.bin grid or block) into `out`.
void fillDims(const flatbuffers::Vector<uint32_t> *dims,
              std::array<uint32_t, 3> &out) {
  if (dims)
    for (uint32_t i = 0; i < dims->size() && i < out.size(); ++i)
      out[i] = dims->Get(i);
}

} // namespace

LaunchGeometry launchGeometry(const fb::KernelPhase &phase) {
  LaunchGeometry geometry;
  fillDims(phase.grid(), geometry.grid);
  fillDims(phase.block(), geometry.block);
  return geometry;
}

LaunchGeometry launchGeometry(const fb::Instr &instr) {
  LaunchGeometry geometry;
  fillDims(instr.grid(), geometry.grid);
  fillDims(instr.block(), geometry.block);
  geometry.sharedBytes = instr.smem();
  return geometry;
}

Executor::Executor(const format::TrainBinFile &file, Backend &backend,
                   const fb::Program &program)
    : file_(file), backend_(backend), program_(program),
      liveness_(file.root(), program) {}

std::unique_ptr<Executor> Executor::create(const format::TrainBinFile &file,
                                           Backend &backend,
                                           std::string &error) {
  const fb::Program *program = findProgram(file.root(), kStepProgram);
  if (!program) {
    error = file.path() + ": has no '" + std::string(kStepProgram) +
            "' program; was it written by qloracc -o?";
    return nullptr;
  }
  std::unique_ptr<Executor> executor(new Executor(file, backend, *program));
  if (!executor->load(error))
    return nullptr;
  return executor;
}

bool Executor::drawRandomInits(std::string &error) {
  const fb::TrainBin &root = file_.root();
  uint64_t total = 0;
  for (const fb::Buffer *buffer : *root.buffers())
    if (buffer->random_init())
      total += buffer->size();
  if (total >= (uint64_t(1) << 30))
    std::fprintf(stderr,
                 "drawing %.1f GiB of random weights "
                 "(qloracc --random-weights)\n",
                 double(total) / double(uint64_t(1) << 30));
  std::vector<std::byte> bytes;
  for (const fb::Buffer *buffer : *root.buffers()) {
    if (!buffer->random_init())
      continue;
    if (!drawRandomInit(*buffer, bytes, error)) {
      error = file_.path() + ": " + error;
      return false;
    }
    backend_.upload(buffer->offset(), bytes);
  }
  return true;
}

bool Executor::load(std::string &error) {
  const fb::TrainBin &root = file_.root();
  if (!backend_.allocateArena(root.memory()->arena_size(), error))
    return false;

  // Initial bytes: weights, LoRA initialisation, constants. Everything else
  // starts at zero, which is what AdamW's moments need.
  for (const fb::Buffer *buffer : *root.buffers())
    if (buffer->init_section() >= 0)
      backend_.upload(buffer->offset(),
                      file_.section(uint32_t(buffer->init_section())));
  if (!drawRandomInits(error))
    return false;

  std::vector<ArenaRange> args;
  const auto &instrs = *program_.instrs();
  for (uint32_t i = 0; i < instrs.size(); ++i) {
    const fb::Instr &instr = *instrs[i];
    if (instr.kind() != fb::InstrKind::Launch)
      continue;
    const fb::Kernel &kernel = *root.kernels()->Get(instr.kernel());
    argumentRanges(root, instr, args);
    std::string why;
    if (!backend_.prepareLaunch(
            instr.kernel(), kernel.template_name()->string_view(),
            file_.kernelParams(instr.kernel()), args, why)) {
      error = file_.path() + ": instruction " + std::to_string(i) +
              " (kernel '" + kernel.symbol()->str() + "'): " + why;
      return false;
    }
  }
  return true;
}

std::optional<uint32_t> Executor::findBuffer(std::string_view name) const {
  const auto &buffers = *file_.root().buffers();
  for (uint32_t i = 0; i < buffers.size(); ++i)
    if (buffers[i]->name() && buffers[i]->name()->string_view() == name)
      return i;
  return std::nullopt;
}

const fb::Buffer &Executor::buffer(uint32_t index) const {
  return *file_.root().buffers()->Get(index);
}

bool Executor::write(uint32_t index, std::span<const std::byte> bytes,
                     std::string &error) {
  const fb::Buffer &target = buffer(index);
  if (bytes.size() != target.size()) {
    error = "buffer '" + target.name()->str() + "' holds " +
            std::to_string(target.size()) + " bytes, got " +
            std::to_string(bytes.size());
    return false;
  }
  backend_.upload(target.offset(), bytes);
  return true;
}

bool Executor::read(uint32_t index, std::span<std::byte> bytes,
                    std::string &error) {
  const fb::Buffer &source = buffer(index);
  if (bytes.size() != source.size()) {
    error = "buffer '" + source.name()->str() + "' holds " +
            std::to_string(source.size()) + " bytes, asked for " +
            std::to_string(bytes.size());
    return false;
  }
  if (!backend_.synchronize(error))
    return false;
  backend_.download(source.offset(), bytes);
  return true;
}

uint32_t Executor::instrCount() const { return program_.instrs()->size(); }

std::optional<uint32_t> Executor::instrKernel(uint32_t index) const {
  const fb::Instr &instr = *program_.instrs()->Get(index);
  if (instr.kind() != fb::InstrKind::Launch)
    return std::nullopt;
  return instr.kernel();
}

std::string_view Executor::instrLabel(uint32_t index) const {
  std::optional<uint32_t> kernel = instrKernel(index);
  if (!kernel)
    return "copy";
  return file_.root().kernels()->Get(*kernel)->template_name()->string_view();
}

std::optional<double> Executor::instrFlops(uint32_t index) const {
  std::optional<uint32_t> kernel = instrKernel(index);
  if (!kernel)
    return std::nullopt;
  return modelFlops(instrLabel(index), file_.kernelParams(*kernel));
}

uint64_t Executor::instrBytes(uint32_t index) const {
  const fb::TrainBin &root = file_.root();
  const fb::Instr &instr = *program_.instrs()->Get(index);
  if (instr.kind() == fb::InstrKind::Copy)
    return 2 * instr.bytes();
  if (!instr.args())
    return 0;
  std::vector<uint32_t> buffers(instr.args()->begin(), instr.args()->end());
  std::sort(buffers.begin(), buffers.end());
  buffers.erase(std::unique(buffers.begin(), buffers.end()), buffers.end());
  uint64_t bytes = 0;
  for (uint32_t buffer : buffers)
    bytes += root.buffers()->Get(buffer)->size();
  return bytes;
}

std::string Executor::instrParams(uint32_t index) const {
  std::optional<uint32_t> kernel = instrKernel(index);
  if (!kernel)
    return "";
  std::string words;
  const format::KernelParams params = file_.kernelParams(*kernel);
  for (const auto &[name, value] : params.all()) {
    std::string text;
    if (const int64_t *number = std::get_if<int64_t>(&value))
      text = std::to_string(*number);
    else if (const std::string *string = std::get_if<std::string>(&value))
      text = *string;
    else
      continue;
    words += (words.empty() ? "" : " ") + name + "=" + text;
  }
  return words;
}

std::optional<uint32_t>
Executor::findFirstLaunchOf(std::string_view templateName) const {
  const fb::TrainBin &root = file_.root();
  const auto &instrs = *program_.instrs();
  for (uint32_t i = 0; i < instrs.size(); ++i) {
    const fb::Instr &instr = *instrs[i];
    if (instr.kind() == fb::InstrKind::Launch &&
        root.kernels()->Get(instr.kernel())->template_name()->string_view() ==
            templateName)
      return i;
  }
  return std::nullopt;
}

bool Executor::run(std::string &error, const InstrHook &beforeInstr) {
  const fb::TrainBin &root = file_.root();
  const auto &instrs = *program_.instrs();
  std::vector<ArenaRange> args;
  liveness_.beginStep();
  for (uint32_t i = 0; i < instrs.size(); ++i) {
    if (!liveness_.enter(i, error)) {
      error = file_.path() + ": " + error;
      return false;
    }
    if (beforeInstr)
      beforeInstr(i);
    const fb::Instr &instr = *instrs[i];
    if (instr.kind() == fb::InstrKind::Copy) {
      const fb::Buffer &src = *root.buffers()->Get(instr.src());
      const fb::Buffer &dst = *root.buffers()->Get(instr.dst());
      backend_.copy(src.offset() + instr.src_offset(),
                    dst.offset() + instr.dst_offset(), instr.bytes());
      continue;
    }
    argumentRanges(root, instr, args);
    backend_.launchOnGrid(instr.kernel(), launchGeometry(instr), args);
  }
  liveness_.endStep();
  return backend_.synchronize(error);
}

} // namespace qlora::exec
