//===- CudaParityTest.cpp - Every CUDA kernel against the CPU backend -----===//
//
// For each CudaParityCases.h case (f32 activations, and bf16 where the
// kernel has activation buffers): the same random inputs in both arenas,
// one launch of the kernel on each backend (the GPU runs the images that
// qlora-cuda-parity-pack compiled ahead of time), then every written buffer
// compared at bf16 tolerance. Prints the error it saw per buffer. Skips
// with the reason where there is no GPU or the images could not be built
// (no NVRTC where this binary was built).
//
//===----------------------------------------------------------------------===//
#include "runtime/backends/cpu/CpuBackend.h"
#include "runtime/backends/cuda/CudaBackend.h"
#include "test/runtime/CudaParityCases.h"
#include "test/runtime/CudaParityHarness.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

namespace qlora::cuda {
namespace {

using parity::arenaBytes;
using parity::asFloats;
using parity::layOut;
using parity::ParityCase;
using parity::runOnTheCpu;

/// The pack's directory: $QLORA_CUDA_PARITY_PACK, else the build's.
std::filesystem::path packDir() {
  if (const char *dir = std::getenv("QLORA_CUDA_PARITY_PACK"))
    return dir;
  return QLORA_CUDA_PARITY_PACK;
}

std::string readFile(const std::filesystem::path &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// The pack, read once: the index and every image's bytes.
struct Pack {
  nlohmann::json index;
  std::map<std::string, std::string> files;
  std::string problem; ///< why there is nothing to run, or ""

  static const Pack &get() {
    static const Pack pack = load();
    return pack;
  }

private:
  static Pack load() {
    Pack pack;
    std::filesystem::path dir = packDir();
    std::string text = readFile(dir / "index.json");
    if (text.empty()) {
      pack.problem = "no parity pack at " + dir.string() +
                     " (qlora-cuda-parity-pack writes it at build time)";
      return pack;
    }
    pack.index = nlohmann::json::parse(text, nullptr, false);
    if (pack.index.is_discarded() || !pack.index.value("nvrtc", false)) {
      pack.problem = "the parity pack has no kernel images: this binary was "
                     "built without NVRTC (the CUDA toolkit)";
      return pack;
    }
    for (const auto &[name, entry] : pack.index["cases"].items())
      for (const auto &[arch, file] : entry["images"].items())
        pack.files[file] = readFile(dir / file.get<std::string>());
    return pack;
  }
};

std::array<uint32_t, 3> dims(const nlohmann::json &json) {
  return {json[0].get<uint32_t>(), json[1].get<uint32_t>(),
          json[2].get<uint32_t>()};
}

/// The CudaBackend's view of case `c`'s compiled kernel.
CudaKernelSpec specOf(const ParityCase &c, const nlohmann::json &entry) {
  const Pack &pack = Pack::get();
  CudaKernelSpec spec;
  spec.symbol = entry["entry"].get<std::string>();
  spec.templateName = c.kernel;
  spec.geometry.grid = dims(entry["grid"]);
  spec.geometry.block = dims(entry["block"]);
  spec.maxBlockThreads = spec.geometry.blockThreads();
  for (const auto &[arch, file] : entry["images"].items()) {
    const std::string &bytes = pack.files.at(file.get<std::string>());
    spec.images.push_back(
        {arch, std::as_bytes(std::span(bytes.data(), bytes.size()))});
  }
  for (const nlohmann::json &phase : entry["then"]) {
    CudaKernelPhaseSpec &then = spec.then.emplace_back();
    then.entry = phase["entry"].get<std::string>();
    then.geometry.grid = dims(phase["grid"]);
    then.geometry.block = dims(phase["block"]);
    spec.maxBlockThreads =
        std::max(spec.maxBlockThreads, then.geometry.blockThreads());
  }
  return spec;
}

class CudaGpuParity : public ::testing::TestWithParam<ParityCase> {};

TEST_P(CudaGpuParity, MatchesTheCpu) {
  const ParityCase &c = GetParam();
  const Pack &pack = Pack::get();
  if (!pack.problem.empty())
    GTEST_SKIP() << pack.problem;
  ASSERT_TRUE(pack.index["cases"].contains(c.name))
      << "the parity pack has no " << c.name << ": rebuild it";

  CudaFailure failure;
  std::unique_ptr<CudaBackend> gpu =
      CudaBackend::create({specOf(c, pack.index["cases"][c.name])}, failure);
  if (!gpu && (failure.kind == CudaFailure::Kind::NoDriver ||
               failure.kind == CudaFailure::Kind::NoGpu))
    GTEST_SKIP() << "no CUDA driver/GPU: " << failure.message;
  ASSERT_TRUE(gpu) << failure.message;
  cpu::CpuBackend host;

  parity::ParityLayout layout = layOut(c);
  std::string error;
  ASSERT_TRUE(gpu->allocateArena(arenaBytes(layout.device), error)) << error;
  ASSERT_NO_FATAL_FAILURE(runOnTheCpu(
      c, layout, host, [&](uint64_t offset, std::span<const std::byte> bytes) {
        gpu->upload(offset, bytes);
      }));
  ASSERT_TRUE(gpu->prepareLaunch(0, c.kernel, c.params, layout.device, error))
      << error;
  gpu->launch(0, layout.device);
  ASSERT_TRUE(gpu->synchronize(error)) << error;

  std::string report = parity::expectMatchesTheCpu(
      c, layout, host,
      [&](uint64_t offset, std::span<std::byte> bytes) {
        gpu->download(offset, bytes);
        EXPECT_TRUE(gpu->synchronize(error)) << error;
      },
      "gpu");
  std::printf("[parity] %s on %s (%s):%s\n", c.name.c_str(),
              gpu->deviceName().c_str(), gpu->imageArch(0).c_str(),
              report.c_str());
}

INSTANTIATE_TEST_SUITE_P(Kernels, CudaGpuParity,
                         ::testing::ValuesIn(parity::parityCases()),
                         [](const ::testing::TestParamInfo<ParityCase> &info) {
                           return info.param.name;
                         });

/// Without a GPU: every case is a valid CPU launch with finite results (the
/// reference the GPU is held to).
class CudaParityReference : public ::testing::TestWithParam<ParityCase> {};

TEST_P(CudaParityReference, RunsOnTheCpu) {
  const ParityCase &c = GetParam();
  parity::ParityLayout layout = layOut(c);
  cpu::CpuBackend host(2);
  ASSERT_NO_FATAL_FAILURE(runOnTheCpu(c, layout, host, nullptr));
  for (size_t i = 0; i < c.args.size(); ++i) {
    if (!c.args[i].compare)
      continue;
    std::vector<std::byte> bytes(layout.cpu[i].bytes);
    host.download(layout.cpu[i].offset, bytes);
    for (float v : asFloats(c.args[i], bytes))
      ASSERT_TRUE(std::isfinite(v)) << c.args[i].name;
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, CudaParityReference,
                         ::testing::ValuesIn(parity::parityCases()),
                         [](const ::testing::TestParamInfo<ParityCase> &info) {
                           return info.param.name;
                         });

TEST(CudaParityCases, CoverEveryKernelTheCpuRuns) {
  std::set<std::string> covered;
  for (const ParityCase &c : parity::parityCases())
    covered.insert(c.kernel);
  for (std::string_view kernel : cpu::cpuKernelNames())
    EXPECT_TRUE(covered.count(std::string(kernel))) << kernel;
}

} // namespace
} // namespace qlora::cuda
