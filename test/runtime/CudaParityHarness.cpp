//===- CudaParityHarness.cpp - A parity case on the CPU and a device ------===//
#include "test/runtime/CudaParityHarness.h"

#include "runtime/backends/cpu/Float16.h"
#include "runtime/format/CounterRng.h"
#include "runtime/format/KernelAbi.h"
#include "runtime/format/Nf4Quantizer.h"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace qlora::cuda::parity {

using format::DType;

std::vector<std::byte> initialBytes(const ParityCase &c, const ParityArg &arg) {
  std::vector<std::byte> bytes(argBytes(arg));
  // A bf16 variant draws what its f32 case draws (the seed ignores the
  // suffix), rounded to what the device can hold.
  std::string_view name = c.name;
  if (c.activationType == "bf16" && name.ends_with(kBf16Suffix))
    name.remove_suffix(kBf16Suffix.size());
  format::CounterRng rng(17, std::string(name) + "." + arg.name);
  bool roundToBf16 = onTheDevice(c, arg).dtype == DType::BF16;
  auto storeFloat = [&](int64_t i, float v) {
    if (roundToBf16 && arg.dtype == DType::F32)
      v = cpu::bf16ToFloat(cpu::floatToBf16(v));
    if (arg.dtype == DType::I64) {
      int64_t integer = int64_t(v);
      std::memcpy(bytes.data() + i * 8, &integer, 8);
    } else {
      cpu::storeFromFloat(bytes.data(), arg.dtype, size_t(i), v);
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

std::vector<std::byte> deviceBytes(const ParityCase &c, const ParityArg &arg,
                                   std::span<const std::byte> cpuBytes) {
  ParityArg device = onTheDevice(c, arg);
  if (device.dtype == arg.dtype)
    return {cpuBytes.begin(), cpuBytes.end()};
  std::vector<float> values = asFloats(arg, cpuBytes);
  std::vector<std::byte> bytes(argBytes(device));
  for (size_t i = 0; i < values.size(); ++i)
    cpu::storeFromFloat(bytes.data(), device.dtype, i, values[i]);
  return bytes;
}

std::vector<float> asFloats(const ParityArg &arg,
                            std::span<const std::byte> bytes) {
  std::vector<float> values(size_t(arg.elements));
  for (int64_t i = 0; i < arg.elements; ++i) {
    if (arg.dtype == DType::I32) {
      int32_t v;
      std::memcpy(&v, bytes.data() + i * 4, 4);
      values[size_t(i)] = float(v);
    } else {
      values[size_t(i)] = cpu::loadAsFloat(bytes.data(), arg.dtype, size_t(i));
    }
  }
  return values;
}

ParityLayout layOut(const ParityCase &c) {
  ParityLayout layout;
  uint64_t deviceOffset = 0, cpuOffset = 0;
  auto place = [](std::vector<exec::ArenaRange> &ranges, uint64_t &offset,
                  uint64_t bytes) {
    ranges.push_back({offset, bytes});
    offset += (bytes + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment;
  };
  for (const ParityArg &arg : c.args) {
    place(layout.device, deviceOffset, argBytes(onTheDevice(c, arg)));
    place(layout.cpu, cpuOffset, argBytes(arg));
  }
  return layout;
}

uint64_t arenaBytes(std::span<const exec::ArenaRange> ranges) {
  return ranges.empty() ? 0 : ranges.back().offset + ranges.back().bytes;
}

void runOnTheCpu(const ParityCase &c, const ParityLayout &layout,
                 cpu::CpuBackend &host, const Upload &upload) {
  std::span<const exec::ArenaRange> ranges = layout.cpu;
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
    if (upload)
      upload(layout.device[i].offset, deviceBytes(c, c.args[i], bytes));
  }
  ASSERT_TRUE(host.prepareLaunch(0, c.kernel, c.params, ranges, error))
      << error;
  host.launch(0, ranges);
}

std::string expectMatchesTheCpu(const ParityCase &c, const ParityLayout &layout,
                                cpu::CpuBackend &host, const Download &device,
                                const std::string &deviceName) {
  std::string report;
  for (size_t i = 0; i < c.args.size(); ++i) {
    const ParityArg &arg = c.args[i];
    if (!arg.compare)
      continue;
    std::vector<std::byte> onDevice(layout.device[i].bytes),
        onCpu(layout.cpu[i].bytes);
    device(layout.device[i].offset, onDevice);
    host.download(layout.cpu[i].offset, onCpu);
    std::vector<float> g = asFloats(onTheDevice(c, arg), onDevice),
                       h = asFloats(arg, onCpu);
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
    std::snprintf(
        line, sizeof(line), " %s: max |%s-cpu| %.3g (%.3g of max |cpu| %.3g)",
        arg.name.c_str(), deviceName.c_str(), worst, relative, largest);
    report += line;
    EXPECT_EQ(nonFinite, 0) << arg.name << ": finite on one backend only";
    EXPECT_LE(relative, toleranceOf(c, arg))
        << arg.name << "[" << worstAt << "]: " << deviceName << " "
        << g[size_t(worstAt)] << ", cpu " << h[size_t(worstAt)];
  }
  return report;
}

} // namespace qlora::cuda::parity
