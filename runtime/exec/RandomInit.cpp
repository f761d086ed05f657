//===- RandomInit.cpp - Initial values drawn at load time -----------------===//
#include "runtime/exec/RandomInit.h"

#include "runtime/backends/cpu/Float16.h"
#include "runtime/format/CounterRng.h"
#include "runtime/format/DType.h"
#include "runtime/format/Nf4Layout.h"
#include "runtime/format/TrainBin.h"
#include "runtime/format/train_generated.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>

namespace qlora::exec {

namespace {

/// fn(first, last) over [0, count) in contiguous chunks on all cores: a
/// 70B model draws a few GB here.
template <typename Fn> void parallelChunks(uint64_t count, Fn fn) {
  constexpr uint64_t kMinChunk = 1 << 20;
  uint64_t threads = std::clamp<uint64_t>(count / kMinChunk, 1,
                                          std::thread::hardware_concurrency());
  uint64_t chunk = (count + threads - 1) / threads;
  std::vector<std::thread> workers;
  for (uint64_t first = chunk; first < count; first += chunk)
    workers.emplace_back(fn, first, std::min(count, first + chunk));
  fn(uint64_t(0), std::min(count, chunk));
  for (std::thread &worker : workers)
    worker.join();
}

/// Stores `value(i)` for i in [0, count) as `dtype` into `out`.
template <typename ValueFn>
bool storeFloats(format::DType dtype, uint64_t count, std::byte *out,
                 ValueFn value) {
  if (dtype != format::DType::F32 && dtype != format::DType::BF16 &&
      dtype != format::DType::F16)
    return false;
  parallelChunks(count, [&](uint64_t first, uint64_t last) {
    for (uint64_t i = first; i < last; ++i)
      cpu::storeFromFloat(out, dtype, i, value(i));
  });
  return true;
}

/// Random codes; every block's absmax is `scale` (exactly, with double
/// quantization: absmax code 255 is 1.0 in the dynamic map, nested absmax
/// `scale`, offset 0).
void drawNf4(const format::Nf4Layout &layout, float scale,
             const format::CounterRng &rng, std::byte *out) {
  uint64_t words = layout.codesBytes / 8;
  parallelChunks(words, [&](uint64_t first, uint64_t last) {
    for (uint64_t w = first; w < last; ++w) {
      uint64_t bits = rng.bits(w);
      std::memcpy(out + layout.codesOffset + w * 8, &bits, 8);
    }
  });
  for (uint64_t b = words * 8; b < uint64_t(layout.codesBytes); ++b)
    out[layout.codesOffset + b] = std::byte(rng.bits(words + b) & 0xff);
  if (!layout.isDoubleQuantized()) {
    for (int64_t block = 0; block < layout.blocks; ++block)
      std::memcpy(out + layout.absmaxOffset + block * 4, &scale, 4);
    return;
  }
  std::memset(out + layout.absmaxOffset, 0xff, size_t(layout.absmaxBytes));
  for (int64_t nested = 0; nested < layout.nestedBlocks; ++nested)
    std::memcpy(out + layout.nestedAbsmaxOffset + nested * 4, &scale, 4);
  float zero = 0;
  std::memcpy(out + layout.offsetOffset, &zero, 4);
}

} // namespace

bool drawRandomInit(const fb::Buffer &buffer, std::vector<std::byte> &bytes,
                    std::string &error) {
  const fb::RandomInit &init = *buffer.random_init();
  std::string name = buffer.name() ? buffer.name()->str() : "";
  auto fail = [&](const std::string &why) {
    error = "buffer '" + name + "': random_init " +
            fb::EnumNameRandomInitKind(init.kind()) + ": " + why;
    return false;
  };
  format::CounterRng rng(init.seed(),
                         init.stream() ? init.stream()->string_view() : "");
  if (init.kind() == fb::RandomInitKind::Nf4) {
    auto layout = format::Nf4Layout::compute(init.elements(), init.block_size(),
                                             init.dq_block_size());
    if (!layout || uint64_t(layout->totalBytes) > buffer.size())
      return fail("no NF4 tensor of " + std::to_string(init.elements()) +
                  " elements (block " + std::to_string(init.block_size()) +
                  ") fits its " + std::to_string(buffer.size()) + " bytes");
    bytes.assign(size_t(layout->totalBytes), std::byte(0));
    drawNf4(*layout, init.scale(), rng, bytes.data());
    return true;
  }

  std::optional<format::DType> dtype = format::fromSchemaDType(buffer.dtype());
  uint64_t count = 1;
  if (buffer.shape())
    for (int64_t dim : *buffer.shape())
      count *= uint64_t(std::max<int64_t>(dim, 0));
  uint64_t elementBytes = dtype ? format::dtypeSize(*dtype) : 0;
  if (elementBytes == 0 || count * elementBytes > buffer.size())
    return fail("needs a float buffer whose shape fits its size");
  bytes.assign(size_t(count * elementBytes), std::byte(0));
  float scale = init.scale();
  bool stored = false;
  switch (init.kind()) {
  case fb::RandomInitKind::Normal: {
    float bound = scale * std::sqrt(3.0f); // uniform with std `scale`
    stored = storeFloats(*dtype, count, bytes.data(), [&](uint64_t i) {
      return rng.uniform(i, -bound, bound);
    });
    break;
  }
  case fb::RandomInitKind::Ones:
    stored =
        storeFloats(*dtype, count, bytes.data(), [](uint64_t) { return 1.0f; });
    break;
  case fb::RandomInitKind::KaimingUniform:
    // Exactly InitSectionBuilder::addKaimingUniform's values.
    if (*dtype != format::DType::F32)
      return fail("needs an F32 buffer");
    stored = storeFloats(*dtype, count, bytes.data(), [&](uint64_t i) {
      return rng.uniform(i, -scale, scale);
    });
    break;
  default:
    return fail("unknown kind");
  }
  if (!stored)
    return fail("dtype must be F32, BF16 or F16");
  return true;
}

} // namespace qlora::exec
