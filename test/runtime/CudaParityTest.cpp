//===- CudaParityTest.cpp - Every CUDA kernel against the CPU backend -----===//
//
// For each CudaParityCases.h case: the same random inputs in both arenas,
// one launch of the kernel on each backend (the GPU runs the images that
// qlora-cuda-parity-pack compiled ahead of time), then every written buffer
// compared at bf16 tolerance. Prints the error it saw per buffer. Skips
// with the reason where there is no GPU or the images could not be built
// (no NVRTC where this binary was built).
//
//===----------------------------------------------------------------------===//
#include "runtime/backends/cpu/CpuBackend.h"
#include "runtime/backends/cpu/Float16.h"
#include "runtime/backends/cuda/CudaBackend.h"
#include "runtime/format/CounterRng.h"
#include "runtime/format/KernelAbi.h"
#include "runtime/format/Nf4Quantizer.h"
#include "test/runtime/CudaParityCases.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

namespace qlora::cuda {
namespace {

using format::DType;
using parity::Fill;
using parity::ParityArg;
using parity::ParityCase;

constexpr uint64_t kAlignment = 256;

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

/// The initial bytes of `arg` (case `c`), the same for both backends.
std::vector<std::byte> initialBytes(const ParityCase &c, const ParityArg &arg) {
  std::vector<std::byte> bytes(parity::argBytes(arg));
  format::CounterRng rng(17, c.name + "." + arg.name);
  auto storeFloat = [&](int64_t i, float v) {
    if (arg.dtype == DType::BF16) {
      uint16_t bits = cpu::floatToBf16(v);
      std::memcpy(bytes.data() + i * 2, &bits, 2);
    } else if (arg.dtype == DType::I64) {
      int64_t integer = int64_t(v);
      std::memcpy(bytes.data() + i * 8, &integer, 8);
    } else {
      std::memcpy(bytes.data() + i * 4, &v, 4);
    }
  };
  float scale = float(arg.scale);
  switch (arg.fill) {
  case Fill::Normal:
    for (int64_t i = 0; i < arg.elements; ++i)
      storeFloat(i, rng.uniform(uint64_t(i), -scale, scale));
    break;
  case Fill::Positive:
    for (int64_t i = 0; i < arg.elements; ++i)
      storeFloat(i, rng.uniform(uint64_t(i), 0, scale));
    break;
  case Fill::Value:
    for (int64_t i = 0; i < arg.elements; ++i)
      storeFloat(i, scale);
    break;
  case Fill::Tokens:
  case Fill::Labels:
    for (int64_t i = 0; i < arg.elements; ++i) {
      int32_t id = int32_t(rng.bits(uint64_t(i)) % uint64_t(arg.range));
      if (arg.fill == Fill::Labels &&
          rng.bits(uint64_t(i) + (1u << 30)) % 8 == 0)
        id = -100;
      std::memcpy(bytes.data() + i * 4, &id, 4);
    }
    break;
  case Fill::Nf4:
  case Fill::Nf4NoDq: {
    std::vector<float> values(size_t(arg.elements));
    for (int64_t i = 0; i < arg.elements; ++i)
      values[size_t(i)] = rng.uniform(uint64_t(i), -0.1f, 0.1f);
    format::Nf4QuantizeOptions options;
    options.nestedBlocksize = arg.fill == Fill::Nf4 ? 256 : 0;
    std::string error;
    auto pieces = format::quantizeNf4Tensor(values.data(), DType::F32,
                                            arg.elements, options, error);
    auto layout = format::nf4LayoutFor(arg.elements, options);
    EXPECT_TRUE(pieces && layout) << error;
    if (pieces && layout)
      format::writeNf4Storage(*pieces, *layout, bytes);
    break;
  }
  case Fill::Attention: // filled from the CPU's attention_fwd
  case Fill::Output:
    break;
  }
  return bytes;
}

std::vector<float> asFloats(const ParityArg &arg,
                            std::span<const std::byte> bytes) {
  std::vector<float> values(size_t(arg.elements));
  for (int64_t i = 0; i < arg.elements; ++i) {
    if (arg.dtype == DType::BF16) {
      uint16_t bits;
      std::memcpy(&bits, bytes.data() + i * 2, 2);
      values[size_t(i)] = cpu::bf16ToFloat(bits);
    } else if (arg.dtype == DType::I32) {
      int32_t v;
      std::memcpy(&v, bytes.data() + i * 4, 4);
      values[size_t(i)] = float(v);
    } else {
      std::memcpy(&values[size_t(i)], bytes.data() + i * 4, 4);
    }
  }
  return values;
}

/// The arguments one after another, each 256-byte aligned.
std::vector<exec::ArenaRange> layOut(const ParityCase &c) {
  std::vector<exec::ArenaRange> ranges;
  uint64_t offset = 0;
  for (const ParityArg &arg : c.args) {
    ranges.push_back({offset, parity::argBytes(arg)});
    offset +=
        (parity::argBytes(arg) + kAlignment - 1) / kAlignment * kAlignment;
  }
  return ranges;
}

uint64_t arenaBytes(std::span<const exec::ArenaRange> ranges) {
  return ranges.empty() ? 0 : ranges.back().offset + ranges.back().bytes;
}

/// Fills the arguments in `host`'s arena (and `gpu`'s, when given) and runs
/// the case's kernel on the CPU.
void runOnTheCpu(const ParityCase &c, std::span<const exec::ArenaRange> ranges,
                 cpu::CpuBackend &host, exec::Backend *gpu) {
  std::string error;
  ASSERT_TRUE(host.allocateArena(arenaBytes(ranges), error)) << error;
  for (size_t i = 0; i < c.args.size(); ++i) {
    std::vector<std::byte> bytes = initialBytes(c, c.args[i]);
    if (c.args[i].fill == Fill::Attention) {
      // The true forward output: attention_bwd reads o (the CPU does not).
      std::array<exec::ArenaRange, 4> fwd = {ranges[1], ranges[2], ranges[3],
                                             ranges[i]};
      ASSERT_TRUE(
          host.prepareLaunch(1, kernels::kAttentionFwd, c.params, fwd, error))
          << error;
      host.launch(1, fwd);
      host.download(ranges[i].offset, bytes);
    }
    host.upload(ranges[i].offset, bytes);
    if (gpu)
      gpu->upload(ranges[i].offset, bytes);
  }
  ASSERT_TRUE(host.prepareLaunch(0, c.kernel, c.params, ranges, error))
      << error;
  host.launch(0, ranges);
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

  std::vector<exec::ArenaRange> ranges = layOut(c);
  std::string error;
  ASSERT_TRUE(gpu->allocateArena(arenaBytes(ranges), error)) << error;
  ASSERT_NO_FATAL_FAILURE(runOnTheCpu(c, ranges, host, gpu.get()));
  ASSERT_TRUE(gpu->prepareLaunch(0, c.kernel, c.params, ranges, error))
      << error;
  gpu->launch(0, ranges);
  ASSERT_TRUE(gpu->synchronize(error)) << error;

  std::string report;
  for (size_t i = 0; i < c.args.size(); ++i) {
    const ParityArg &arg = c.args[i];
    if (!arg.compare)
      continue;
    std::vector<std::byte> gpuBytes(ranges[i].bytes), cpuBytes(ranges[i].bytes);
    gpu->download(ranges[i].offset, gpuBytes);
    ASSERT_TRUE(gpu->synchronize(error)) << error;
    host.download(ranges[i].offset, cpuBytes);
    std::vector<float> g = asFloats(arg, gpuBytes), h = asFloats(arg, cpuBytes);
    double largest = 0, worst = 0;
    int64_t worstAt = 0, nonFinite = 0;
    for (size_t e = 0; e < h.size(); ++e) {
      largest = std::max(largest, double(std::fabs(h[e])));
      if (!std::isfinite(g[e]) || !std::isfinite(h[e])) {
        nonFinite += std::isfinite(g[e]) != std::isfinite(h[e]);
        continue;
      }
      double diff = std::fabs(double(g[e]) - double(h[e]));
      if (diff > worst) {
        worst = diff;
        worstAt = int64_t(e);
      }
    }
    double relative = largest > 0 ? worst / largest : worst;
    char line[256];
    std::snprintf(line, sizeof(line),
                  " %s: max |gpu-cpu| %.3g (%.3g of max |cpu| %.3g)",
                  arg.name.c_str(), worst, relative, largest);
    report += line;
    EXPECT_EQ(nonFinite, 0) << arg.name << ": finite on one backend only";
    EXPECT_LE(relative, c.tolerance)
        << arg.name << "[" << worstAt << "]: gpu " << g[size_t(worstAt)]
        << ", cpu " << h[size_t(worstAt)];
  }
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
  std::vector<exec::ArenaRange> ranges = layOut(c);
  cpu::CpuBackend host(2);
  ASSERT_NO_FATAL_FAILURE(runOnTheCpu(c, ranges, host, nullptr));
  for (size_t i = 0; i < c.args.size(); ++i) {
    if (!c.args[i].compare)
      continue;
    std::vector<std::byte> bytes(ranges[i].bytes);
    host.download(ranges[i].offset, bytes);
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
