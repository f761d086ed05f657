//===- ExecutorTest.cpp - The executor on the CPU backend -----------------===//
//
// Small hand-written programs run end to end: train.bin written by the
// format library, loaded, prepared and executed on the CPU backend. The
// measured peak is also checked on the tiny preset's train.bin, which qloracc
// writes at build time (QLORA_TINY_TRAIN_BIN).
//
//===----------------------------------------------------------------------===//
#include "runtime/exec/Executor.h"
#include "runtime/backends/cpu/CpuBackend.h"
#include "runtime/exec/MemoryReport.h"
#include "runtime/format/TrainBinWriter.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <unistd.h>

using namespace qlora;

namespace {

namespace fs = std::filesystem;

std::vector<std::byte> floatsBytes(const std::vector<float> &values) {
  std::vector<std::byte> bytes(values.size() * sizeof(float));
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

format::TrainBinBufferDesc floats(std::string name, format::BufferClass cls,
                                  int64_t n, uint64_t offset,
                                  int32_t section = -1) {
  return {std::move(name), cls,    format::DType::F32, {n}, uint64_t(n) * 4, 64,
          offset,          section};
}

/// y = a + b; z = y * y, with `a` initialised from a section and `b` an
/// input.
format::TrainBinDesc addMulProgram() {
  format::TrainBinDesc desc;
  desc.producer = "executor test";
  desc.model.batch = 1;
  desc.model.seq = 4;
  desc.sections.push_back({"a.init", floatsBytes({1, 2, 3, 4}), {}});
  desc.buffers = {floats("a", format::BufferClass::Weight, 4, 0, 0),
                  floats("b", format::BufferClass::Io, 4, 64),
                  floats("y", format::BufferClass::Activation, 4, 128),
                  floats("z", format::BufferClass::Io, 4, 192)};
  format::KernelParams n;
  n.set("n", int64_t(4));
  desc.kernels = {{"add_0", "add", n, {}}, {"mul_0", "mul", n, {}}};
  desc.programs = {
      {"train_step",
       {format::TrainBinInstrDesc::launch(0, {0, 1, 2}, {1, 1, 1}, {1, 1, 1}),
        format::TrainBinInstrDesc::launch(1, {2, 2, 3}, {1, 1, 1},
                                          {1, 1, 1})}}};
  desc.memory = {256, 256, {{format::BufferClass::Weight, 16, 16}}};
  return desc;
}

class ExecutorTest : public ::testing::Test {
protected:
  void SetUp() override {
    path = (fs::path(::testing::TempDir()) /
            ("qlora-exec-" + std::to_string(::getpid()) + ".bin"))
               .string();
  }
  void TearDown() override { fs::remove(path); }

  std::unique_ptr<format::TrainBinFile> write(const format::TrainBinDesc &d) {
    std::string error;
    EXPECT_TRUE(format::writeTrainBin(path, d, error)) << error;
    auto file = format::TrainBinFile::open(path, error);
    EXPECT_TRUE(file) << error;
    return file;
  }

  std::string path;
  cpu::CpuBackend backend{2};
};

TEST_F(ExecutorTest, RunsTheStepProgramOnTheCpu) {
  auto file = write(addMulProgram());
  std::string error;
  auto executor = exec::Executor::create(*file, backend, error);
  ASSERT_TRUE(executor) << error;
  std::optional<uint32_t> b = executor->findBuffer("b");
  std::optional<uint32_t> z = executor->findBuffer("z");
  ASSERT_TRUE(b && z);
  EXPECT_FALSE(executor->findBuffer("nope"));

  std::vector<float> input = {1, 1, 2, -4}, output(4);
  ASSERT_TRUE(executor->write(*b, std::as_bytes(std::span(input)), error));
  std::vector<uint32_t> seen;
  ASSERT_TRUE(executor->run(error, [&](uint32_t i) { seen.push_back(i); }));
  ASSERT_TRUE(
      executor->read(*z, std::as_writable_bytes(std::span(output)), error));
  EXPECT_EQ(output, (std::vector<float>{4, 9, 25, 0}));
  EXPECT_EQ(seen, (std::vector<uint32_t>{0, 1}));
  EXPECT_EQ(executor->findFirstLaunchOf("mul"), 1u);
  EXPECT_FALSE(executor->findFirstLaunchOf("adamw"));
  // add(a, b, y): three buffers; mul(y, y, z): y once, and z.
  EXPECT_EQ(executor->instrBytes(0), 3u * 16);
  EXPECT_EQ(executor->instrBytes(1), 2u * 16);
  EXPECT_EQ(executor->instrParams(1), "n=4");
  EXPECT_EQ(executor->instrKernel(1), 1u);
}

TEST_F(ExecutorTest, WritesOfTheWrongSizeAreRefused) {
  auto file = write(addMulProgram());
  std::string error;
  auto executor = exec::Executor::create(*file, backend, error);
  ASSERT_TRUE(executor) << error;
  std::vector<float> tooShort(3);
  EXPECT_FALSE(executor->write(*executor->findBuffer("b"),
                               std::as_bytes(std::span(tooShort)), error));
  EXPECT_EQ(error, "buffer 'b' holds 16 bytes, got 12");
}

TEST_F(ExecutorTest, AnUnknownKernelIsRefusedBeforeAnythingRuns) {
  format::TrainBinDesc desc = addMulProgram();
  desc.kernels[1].templateName = "fused_magic";
  auto file = write(desc);
  std::string error;
  EXPECT_FALSE(exec::Executor::create(*file, backend, error));
  EXPECT_EQ(error, path + ": instruction 1 (kernel 'mul_0'): the CPU backend "
                          "has no kernel 'fused_magic'");
}

TEST_F(ExecutorTest, ArgumentsTooSmallForTheKernelAreRefused) {
  format::TrainBinDesc desc = addMulProgram();
  desc.kernels[0].params.set("n", int64_t(8));
  auto file = write(desc);
  std::string error;
  EXPECT_FALSE(exec::Executor::create(*file, backend, error));
  EXPECT_NE(error.find("instruction 0 (kernel 'add_0'): add"),
            std::string::npos)
      << error;
}

TEST_F(ExecutorTest, AFileWithoutAStepProgramIsRefused) {
  format::TrainBinDesc desc = addMulProgram();
  desc.programs[0].name = "warmup";
  auto file = write(desc);
  std::string error;
  EXPECT_FALSE(exec::Executor::create(*file, backend, error));
  EXPECT_EQ(error, path + ": has no 'train_step' program; was it written by "
                          "qloracc -o?");
}

TEST_F(ExecutorTest, MeasuresTheBytesLiveAtEachInstruction) {
  // Four 16-byte buffers in 64-byte slots, all live at both launches.
  auto file = write(addMulProgram());
  std::string error;
  auto executor = exec::Executor::create(*file, backend, error);
  ASSERT_TRUE(executor) << error;
  EXPECT_EQ(executor->highWaterBytes(), 0u);
  ASSERT_TRUE(executor->run(error)) << error;
  EXPECT_EQ(executor->highWaterBytes(), 256u);
}

TEST_F(ExecutorTest, BuffersNeverLiveTogetherMayShareBytes) {
  // w = z + b reuses y's bytes: y's last use is the launch before.
  format::TrainBinDesc desc = addMulProgram();
  desc.buffers.push_back(floats("w", format::BufferClass::Activation, 4, 128));
  desc.programs[0].instrs.push_back(
      format::TrainBinInstrDesc::launch(0, {3, 1, 4}, {1, 1, 1}, {1, 1, 1}));
  auto file = write(desc);
  std::string error;
  auto executor = exec::Executor::create(*file, backend, error);
  ASSERT_TRUE(executor) << error;
  ASSERT_TRUE(executor->run(error)) << error;
  EXPECT_EQ(executor->highWaterBytes(), 256u);
}

TEST_F(ExecutorTest, BuffersLiveTogetherThatOverlapAreAnError) {
  format::TrainBinDesc desc = addMulProgram();
  desc.buffers[2].offset = 64; // y onto b, which is live throughout
  auto file = write(desc);
  std::string error;
  auto executor = exec::Executor::create(*file, backend, error);
  ASSERT_TRUE(executor) << error;
  std::vector<uint32_t> seen;
  EXPECT_FALSE(executor->run(error, [&](uint32_t i) { seen.push_back(i); }));
  EXPECT_EQ(error, path + ": instruction 0: buffer 2 'y' (activation) at "
                          "arena bytes [64, 80) overlaps buffer 1 'b' (io) at "
                          "[64, 80), and both are live here");
  EXPECT_TRUE(seen.empty());
}

TEST(MeasuredPeakTest, TheTinyPresetPeaksWhereQloraccPlanned) {
  std::string error;
  auto file = format::TrainBinFile::open(QLORA_TINY_TRAIN_BIN, error);
  ASSERT_TRUE(file) << error;
  cpu::CpuBackend backend{2};
  auto executor = exec::Executor::create(*file, backend, error);
  ASSERT_TRUE(executor) << error;
  int64_t step = 1;
  ASSERT_TRUE(executor->write(*executor->findBuffer("step"),
                              std::as_bytes(std::span(&step, 1)), error));
  ASSERT_TRUE(executor->run(error)) << error;
  uint64_t planned = exec::memoryPlanOf(*file).peakBytes;
  EXPECT_GT(planned, 0u);
  EXPECT_EQ(executor->highWaterBytes(), planned);
  // The same again: every step peaks alike.
  ASSERT_TRUE(executor->run(error)) << error;
  EXPECT_EQ(executor->highWaterBytes(), planned);
}

TEST(MemoryReportTest, PeakComesFirstThenOneRowPerClass) {
  format::TrainBinMemoryPlan plan{3 << 20, 2 << 20, {}};
  plan.byClass.push_back({format::BufferClass::Weight, 1 << 20, 1 << 20});
  plan.byClass.push_back({format::BufferClass::Activation, 1 << 20, 5 << 20});
  std::string report = exec::renderMemoryReport(plan);
  EXPECT_EQ(report.substr(0, report.find('\n')), "peak: 2.00 MiB");
  EXPECT_NE(report.find("saved activations"), std::string::npos);
  EXPECT_NE(report.find("5.00 MiB"), std::string::npos);
  EXPECT_NE(report.find("fragmentation"), std::string::npos);
}

TEST(MemoryReportTest, RowsFollowTheBudgetFromFrozenWeightsToTheArena) {
  format::TrainBinMemoryPlan plan{1 << 20, 1 << 20, {}};
  std::string report = exec::renderMemoryReport(plan);
  size_t at = 0;
  for (const char *label :
       {"peak:", "NF4 weights + scales", "other frozen weights", "LoRA params",
        "gradients", "AdamW state", "saved activations", "recompute workspace",
        "kernel workspace", "inputs/outputs", "fragmentation", "arena"}) {
    size_t found = report.find(label, at);
    ASSERT_NE(found, std::string::npos) << label << " in\n" << report;
    at = found;
  }
  EXPECT_EQ(exec::renderMeasuredPeak(1536, 2048),
            "measured peak: 1.50 KiB (planned 2.00 KiB)\n");
}

} // namespace
