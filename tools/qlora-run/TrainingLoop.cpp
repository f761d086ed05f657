//===- TrainingLoop.cpp - qlora-run's training loop -----------------------===//
#include "tools/qlora-run/TrainingLoop.h"
#include "tools/qlora-run/StepProfile.h"

#include "runtime/backends/cpu/CpuBackend.h"
#include "runtime/backends/cuda/CudaBackend.h"
#include "runtime/data/TokenDataset.h"
#include "runtime/exec/Executor.h"
#include "runtime/exec/LoraState.h"
#include "runtime/exec/MemoryReport.h"
#include "runtime/format/KernelAbi.h"
#include "runtime/format/train_generated.h"
#include "runtime/train/LrSchedule.h"
#include "runtime/train/MetricsWriter.h"
#include "runtime/train/ProgressBar.h"
#include "runtime/train/TextFormat.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

namespace qlora::run {

namespace {

int fail(const std::string &message) {
  std::fprintf(stderr, "qlora-run: error: %s\n", message.c_str());
  return 1;
}

/// The CPU computes activations in f32 only: a train.bin whose activation
/// buffers are bf16 or f16 (qloracc --activation-type) is for the GPU.
/// Returns why the CPU cannot run `file`, or "".
std::string cpuRefusal(const format::TrainBinFile &file) {
  for (const fb::Buffer *buffer : *file.root().buffers())
    if (buffer->buffer_class() == fb::BufferClass::Activation &&
        (buffer->dtype() == fb::DType::BF16 ||
         buffer->dtype() == fb::DType::F16))
      return file.path() + " holds " + fb::EnumNameDType(buffer->dtype()) +
             " activations (qloracc --activation-type), which only the CUDA "
             "backend runs; compile it without --activation-type for the CPU";
  return "";
}

/// The backend --device asks for: `cpu`; `cuda`, or its failure (no driver,
/// no GPU, no image for this GPU in train.bin) as the error; `auto`, CUDA
/// when it can run this train.bin, else the CPU, saying why on stderr.
std::unique_ptr<exec::Backend> createBackend(const format::TrainBinFile &file,
                                             const RunOptions &options,
                                             std::string &error) {
  if (options.device == "cpu") {
    error = cpuRefusal(file);
    return error.empty() ? std::make_unique<cpu::CpuBackend>(options.threads)
                         : nullptr;
  }
  cuda::CudaFailure failure;
  if (std::unique_ptr<cuda::CudaBackend> backend =
          cuda::CudaBackend::create(file, failure))
    return backend;
  if (options.device == "cuda") {
    error = "--device cuda: " + failure.message;
    return nullptr;
  }
  error = cpuRefusal(file);
  if (!error.empty()) {
    error = "--device auto: " + failure.summary() + ", and " + error;
    return nullptr;
  }
  std::fprintf(stderr, "qlora-run: %s; running on the CPU\n",
               failure.summary().c_str());
  return std::make_unique<cpu::CpuBackend>(options.threads);
}

/// The step program's inputs and outputs, by the names the compiler gives
/// its io buffers.
struct StepIo {
  uint32_t tokens, labels, lr, step, weightDecay, maxGradNorm, loss, gradNorm;
};

std::optional<StepIo> findStepIo(const exec::Executor &executor,
                                 std::string &error) {
  StepIo io{};
  struct Slot {
    const char *name;
    uint32_t *index;
  } slots[] = {{"tokens", &io.tokens},
               {"labels", &io.labels},
               {"lr", &io.lr},
               {"step", &io.step},
               {"weight_decay", &io.weightDecay},
               {"max_grad_norm", &io.maxGradNorm},
               {"loss", &io.loss},
               {"grad_norm", &io.gradNorm}};
  for (Slot &slot : slots) {
    std::optional<uint32_t> index = executor.findBuffer(slot.name);
    if (!index) {
      error = executor.file().path() + ": the step program has no '" +
              slot.name + "' buffer; recompile with this qloracc";
      return std::nullopt;
    }
    *slot.index = *index;
  }
  return io;
}

template <typename T> std::span<const std::byte> bytesOf(const T &value) {
  return std::as_bytes(std::span<const T>(&value, 1));
}

/// "measured peak: ... (planned ...)" for the step `executor` ran last.
std::string measuredPeakLine(const exec::Executor &executor) {
  return exec::renderMeasuredPeak(
      executor.highWaterBytes(), executor.file().root().memory()->peak_bytes());
}

/// --memory-report: the plan, then the peak measured over one step run on
/// the zeroed arena (token id 0 everywhere, learning rate 0; the optimizer
/// step is set to 1 so that AdamW's bias correction stays finite).
int reportMemory(const format::TrainBinFile &file, const RunOptions &options,
                 const std::string &report) {
  std::fputs(report.c_str(), stdout);
  std::fflush(stdout);
  std::string error;
  std::unique_ptr<exec::Backend> backend = createBackend(file, options, error);
  if (!backend)
    return fail(error);
  std::unique_ptr<exec::Executor> executor =
      exec::Executor::create(file, *backend, error);
  if (!executor)
    return fail(error);
  int64_t firstStep = 1;
  if (std::optional<uint32_t> step = executor->findBuffer("step"))
    if (!executor->write(*step, bytesOf(firstStep), error))
      return fail(error);
  if (!executor->run(error))
    return fail(error);
  std::fputs(measuredPeakLine(*executor).c_str(), stdout);
  return 0;
}

} // namespace

int runTraining(const RunOptions &options) {
  std::string error;
  std::unique_ptr<format::TrainBinFile> file =
      format::TrainBinFile::open(options.trainBin, error);
  if (!file)
    return fail(error);
  const fb::TrainBin &root = file->root();

  std::string report = exec::renderMemoryReport(exec::memoryPlanOf(*file));
  if (options.memoryReport && options.data.empty())
    return reportMemory(*file, options, report);

  const fb::ModelInfo &model = *root.model();
  int64_t rows = model.batch() * model.grad_accum();
  std::optional<data::DataFormat> format =
      data::parseDataFormat(options.dataFormat);
  if (!format)
    return fail("--data-format expects auto, u16, u32 or jsonl, got '" +
                options.dataFormat + "'");
  std::unique_ptr<data::TokenDataset> dataset = data::TokenDataset::open(
      options.data, *format, rows, model.seq(), model.vocab_size(), error);
  if (!dataset)
    return fail(error);
  if (options.seed != 0)
    dataset->shuffle(options.seed);

  std::optional<train::ScheduleKind> scheduleKind =
      train::parseScheduleKind(options.schedule, error);
  if (!scheduleKind)
    return fail(error);
  std::optional<train::LrSchedule> schedule = train::LrSchedule::create(
      *scheduleKind, options.lr, options.warmup, options.steps, error);
  if (!schedule)
    return fail(error);

  std::unique_ptr<exec::Backend> backend = createBackend(*file, options, error);
  if (!backend)
    return fail(error);
  std::unique_ptr<exec::Executor> executor =
      exec::Executor::create(*file, *backend, error);
  if (!executor)
    return fail(error);
  std::optional<StepIo> io = findStepIo(*executor, error);
  if (!io)
    return fail(error);

  exec::LoraState lora(*executor);
  if (!options.initAdapter.empty() &&
      !lora.loadAdapter(options.initAdapter, error))
    return fail(error);

  std::unique_ptr<train::MetricsWriter> metrics;
  if (!options.metrics.empty() &&
      !(metrics = train::MetricsWriter::open(options.metrics, error)))
    return fail(error);

  float weightDecay = float(options.weightDecay.value_or(
      root.optimizer() ? root.optimizer()->weight_decay() : 0.0));
  float maxGradNorm = float(options.maxGradNorm.value_or(
      root.optimizer() ? root.optimizer()->max_grad_norm() : 0.0));

  std::fprintf(
      stderr,
      "qlora-run: %s on %s | %s, %zu LoRA modules (r=%d) | "
      "batch %lld x %lld tokens%s | %s\n",
      file->path().c_str(), backend->description().c_str(),
      model.name_or_path() ? model.name_or_path()->c_str() : "model",
      lora.numModules(), root.lora() ? root.lora()->r() : 0, (long long)rows,
      (long long)model.seq(),
      model.grad_accum() > 1
          ? (" in " + std::to_string(model.grad_accum()) + " micro-batches")
                .c_str()
          : "",
      options.data.c_str());
  // The plan before the run: with --memory-report on stdout, where the
  // peak measured over step 1 follows it, else on stderr with the header.
  std::fputs(report.c_str(), options.memoryReport ? stdout : stderr);
  std::fflush(stdout);

  std::vector<int32_t> tokens(size_t(dataset->tokensPerBatch()));
  std::vector<int32_t> labels(tokens.size());
  // Gradients are complete once the backward pass ends, which is just
  // before the first optimizer update.
  std::optional<uint32_t> firstUpdate =
      executor->findFirstLaunchOf(kernels::kAdamW);
  std::string hookError;

  std::unique_ptr<StepProfile> profile;
  if (options.profile)
    profile = std::make_unique<StepProfile>(*executor);
  std::unique_ptr<train::ProgressBar> progress;
  if (options.progress)
    progress = std::make_unique<train::ProgressBar>(stderr, options.steps);
  auto start = std::chrono::steady_clock::now();
  double lastLoss = 0;
  for (int64_t step = 1; step <= options.steps; ++step) {
    auto stepStart = std::chrono::steady_clock::now();
    dataset->nextBatch(tokens, labels);
    float lr = float(schedule->lrAt(step - 1));
    int64_t stepValue = step;
    if (!executor->write(io->tokens, std::as_bytes(std::span(tokens)), error) ||
        !executor->write(io->labels, std::as_bytes(std::span(labels)), error) ||
        !executor->write(io->lr, bytesOf(lr), error) ||
        !executor->write(io->step, bytesOf(stepValue), error) ||
        !executor->write(io->weightDecay, bytesOf(weightDecay), error) ||
        !executor->write(io->maxGradNorm, bytesOf(maxGradNorm), error))
      return fail(error);

    exec::Executor::InstrHook hook;
    if (step == 1 && !options.saveGrads.empty() && firstUpdate)
      hook = [&](uint32_t index) {
        if (index == *firstUpdate && hookError.empty())
          lora.saveGradients(options.saveGrads, hookError);
      };
    // The first step loads kernels (and JIT-compiles PTX): profile the rest.
    bool profiled = profile && !hook && (step > 1 || options.steps == 1);
    if (profiled)
      hook = profile->hook(hookError);
    if (!executor->run(error, hook))
      return fail("step " + std::to_string(step) + ": " + error);
    if (profiled && hookError.empty())
      profile->finishStep(hookError);
    if (!hookError.empty())
      return fail(hookError);
    if (step == 1 && options.memoryReport) {
      std::fputs(measuredPeakLine(*executor).c_str(), stdout);
      std::fflush(stdout);
    }

    float loss = 0, gradNorm = 0;
    if (!executor->read(io->loss, std::as_writable_bytes(std::span(&loss, 1)),
                        error) ||
        !executor->read(io->gradNorm,
                        std::as_writable_bytes(std::span(&gradNorm, 1)), error))
      return fail(error);
    auto now = std::chrono::steady_clock::now();
    double stepSeconds = std::chrono::duration<double>(now - stepStart).count();
    double elapsed = std::chrono::duration<double>(now - start).count();
    double tokensPerSecond = double(tokens.size()) / stepSeconds;
    if (!std::isfinite(loss))
      return fail("step " + std::to_string(step) + ": the loss is " +
                  std::to_string(loss) +
                  "; lower --lr or check the data (all labels ignored?)");
    lastLoss = loss;
    if (metrics && !metrics->write({step, loss, lr, gradNorm, tokensPerSecond,
                                    elapsed, executor->highWaterBytes()},
                                   error))
      return fail(error);
    if (progress)
      progress->update(step, loss, tokensPerSecond);
  }
  if (progress)
    progress->finish();
  if (metrics && !metrics->close(error))
    return fail(error);

  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  std::fprintf(stderr, "qlora-run: %lld steps in %s, final loss %.4f\n",
               (long long)options.steps, train::formatDuration(seconds).c_str(),
               lastLoss);
  std::fprintf(stderr, "qlora-run: %s", measuredPeakLine(*executor).c_str());
  if (profile)
    profile->print(stderr);
  if (!options.saveAdapter.empty()) {
    if (!lora.saveAdapter(options.saveAdapter, error))
      return fail(error);
    std::fprintf(stderr, "qlora-run: adapter saved to %s\n",
                 options.saveAdapter.c_str());
  }
  return 0;
}

} // namespace qlora::run
