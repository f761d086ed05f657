//===- Nf4Quantizer.cpp - Fast NF4 + double-quantization codec ------------===//
//
// Compiled with -ffp-contract=off, like Nf4.cpp. Work is split into
// contiguous ranges of blocks, one per thread; every result is a function of
// its own block only (or, for the error, of fixed chunks summed in order), so
// the bits never depend on the thread count.
//
//===----------------------------------------------------------------------===//
#include "runtime/format/Nf4Quantizer.h"
#include "runtime/backends/cpu/Float16.h"
#include "runtime/format/Nf4.h"
#include "runtime/format/Nf4QuantizerKernels.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>

namespace qlora::format {
namespace {

constexpr int64_t kMinBlocksize = 32;
constexpr int64_t kMaxBlocksize = 4096;
/// Below this many elements per thread, extra threads cost more than they
/// save.
constexpr int64_t kMinElementsPerThread = 1 << 16;
/// Blocks a worker quantizes before it looks whether an earlier block was
/// found non-finite (then it stops: its own blocks come later).
constexpr int64_t kBlocksPerSlice = 1024;
/// Elements per partial sum of measureNf4Error, whatever the thread count.
constexpr int64_t kErrorChunk = 1 << 16;

unsigned workerCount(unsigned requested, int64_t elements, int64_t units) {
  unsigned threads =
      requested ? requested : std::thread::hardware_concurrency();
  threads = std::max(threads, 1u);
  const int64_t byWork = std::max<int64_t>(1, elements / kMinElementsPerThread);
  return static_cast<unsigned>(
      std::min<int64_t>({threads, byWork, std::max<int64_t>(units, 1)}));
}

/// Runs body(begin, end) over [0, units) split into `threads` contiguous
/// ranges, the last on the calling thread.
template <typename Body>
void parallelRanges(int64_t units, unsigned threads, const Body &body) {
  if (threads <= 1 || units <= 1) {
    body(int64_t(0), units);
    return;
  }
  std::vector<std::thread> workers;
  workers.reserve(threads - 1);
  auto bound = [&](unsigned t) { return units * t / threads; };
  for (unsigned t = 0; t + 1 < threads; ++t)
    workers.emplace_back(
        [&body, b = bound(t), e = bound(t + 1)] { body(b, e); });
  body(bound(threads - 1), units);
  for (std::thread &w : workers)
    w.join();
}

bool isQuantizableDType(DType dtype) {
  return dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16;
}

/// The first-level absmax of block `b` as dequantization uses it.
class AbsmaxSource {
public:
  explicit AbsmaxSource(const Nf4Pieces &pieces, const Nf4Layout &layout)
      : pieces(pieces), nested(layout.nestedBlocksize) {}

  float operator()(int64_t b) const {
    if (!nested)
      return pieces.absmax[b];
    static const std::vector<float> dynamicMap = createDynamicMap(true);
    const float product =
        dynamicMap[pieces.absmaxCodes[b]] * pieces.nestedAbsmax[b / nested];
    return product + pieces.offset;
  }

private:
  const Nf4Pieces &pieces;
  int64_t nested;
};

/// bitsandbytes' CPU kernel for the nested 8-bit step, as Nf4.cpp's
/// doubleQuantize restates it (same table, same fp32 steps), but over a
/// range of nested blocks so that threads can share the work.
class NestedQuantizer {
public:
  static constexpr int kSize = kNestedLutSize;

  /// Nested blocks [begin, end) of `absmax - offset`.
  void quantize(std::span<const float> absmax, float offset, int64_t nested,
                int64_t begin, int64_t end, uint8_t *codes,
                float *nestedAbsmax) const {
    const int64_t n = static_cast<int64_t>(absmax.size());
    float centered[kMaxNested];
    for (int64_t nb = begin; nb < end; ++nb) {
      const int64_t first = nb * nested;
      const int64_t last = std::min(n, first + nested);
      const int64_t size = last - first;
      for (int64_t i = 0; i < size; ++i)
        centered[i] = absmax[first + i] - offset;
      // Eight running maxima (a max is exact: any order gives the same).
      float lanes[8] = {};
      int64_t i = 0;
      for (; i + 8 <= size; i += 8)
        for (int l = 0; l < 8; ++l)
          lanes[l] = std::max(lanes[l], std::fabs(centered[i + l]));
      for (; i < size; ++i)
        lanes[0] = std::max(lanes[0], std::fabs(centered[i]));
      const float blockMax = *std::max_element(lanes, lanes + 8);
      nestedAbsmax[nb] = blockMax;
      if (blockMax == 0.0f) {
        std::fill(codes + first, codes + last, uint8_t(0));
        continue;
      }
      const float inverse = 1.0f / blockMax;
      // The arithmetic in one loop (it vectorizes), the lookups in another.
      // t lies in [0.5, 65535.5], where int32 and uint32 truncation agree.
      int32_t entry[kMaxNested];
      for (int64_t i = 0; i < size; ++i) {
        float t = std::clamp(centered[i] * inverse, -1.0f, 1.0f) + 1.0f;
        t = t * 0.5f;
        t = t * static_cast<float>(kSize - 1);
        t = t + 0.5f;
        entry[i] = static_cast<int32_t>(t);
      }
      for (int64_t i = 0; i < size; ++i)
        codes[first + i] = table()[entry[i]];
    }
  }

  /// The largest nested block quantize() takes.
  static constexpr int64_t kMaxNested = 4096;

private:
  static const std::array<uint8_t, kNestedLutSize> &table() {
    return nestedQuantizeLut();
  }
};

/// The 16 values of one block, kNf4Code[i] * absmax: the same fp32 product
/// as dequantizeNf4, made once per block instead of once per element.
class BlockValues {
public:
  explicit BlockValues(float absmax) {
    for (size_t i = 0; i < values.size(); ++i)
      values[i] = kNf4Code[i] * absmax;
  }

  /// Elements [first, last) of the packed codes into out[0, last - first).
  void decode(const uint8_t *packed, int64_t first, int64_t last,
              float *out) const {
    int64_t i = first;
    if (i < last && i % 2) // the low nibble of a byte shared with the block
      *out++ = values[packed[i++ / 2] & 0x0F];
    for (; i + 1 < last; i += 2, out += 2) {
      const uint8_t byte = packed[i / 2];
      out[0] = values[byte >> 4];
      out[1] = values[byte & 0x0F];
    }
    if (i < last)
      *out = values[packed[i / 2] >> 4];
  }

private:
  std::array<float, 16> values;
};

} // namespace

std::optional<Nf4Layout> nf4LayoutFor(int64_t count,
                                      const Nf4QuantizeOptions &options) {
  return Nf4Layout::compute(count, options.blocksize, options.nestedBlocksize);
}

std::optional<Nf4Pieces> quantizeNf4Tensor(const void *data, DType dtype,
                                           int64_t count,
                                           const Nf4QuantizeOptions &options,
                                           std::string &error) {
  if (!isQuantizableDType(dtype)) {
    error = "NF4 quantization takes F32, F16 or BF16, got " +
            std::string(dtypeName(dtype));
    return std::nullopt;
  }
  if (count <= 0) {
    error = "NF4 quantization needs at least one element, got " +
            std::to_string(count);
    return std::nullopt;
  }
  const int64_t blocksize = options.blocksize;
  if (blocksize < kMinBlocksize || blocksize > kMaxBlocksize) {
    error = "NF4 blocksize must be in [" + std::to_string(kMinBlocksize) +
            ", " + std::to_string(kMaxBlocksize) + "], got " +
            std::to_string(blocksize);
    return std::nullopt;
  }
  const int64_t nested = options.nestedBlocksize;
  if (nested < 0 || nested > NestedQuantizer::kMaxNested) {
    error = "NF4 nested blocksize must be 0 (no double quantization) or in "
            "[1, " +
            std::to_string(NestedQuantizer::kMaxNested) + "], got " +
            std::to_string(nested);
    return std::nullopt;
  }

  Nf4Pieces pieces;
  pieces.packed.resize(static_cast<size_t>((count + 1) / 2));
  const int64_t fullBlocks = count / blocksize;
  const bool hasPartial = count % blocksize != 0;
  pieces.absmax.resize(static_cast<size_t>(fullBlocks + (hasPartial ? 1 : 0)));

  // With an odd blocksize two blocks share a byte: split at even blocks.
  const int64_t unit = blocksize % 2 == 0 ? 1 : 2;
  const int64_t units = (fullBlocks + unit - 1) / unit;
  const detail::Nf4BlocksKernel kernel =
      detail::selectNf4BlocksKernel(dtype, blocksize, options.isa);
  std::atomic<int64_t> firstBad{std::numeric_limits<int64_t>::max()};
  parallelRanges(
      units, workerCount(options.threads, count, units),
      [&](int64_t beginUnit, int64_t endUnit) {
        const int64_t end = std::min(endUnit * unit, fullBlocks);
        for (int64_t b = beginUnit * unit; b < end; b += kBlocksPerSlice) {
          if (firstBad.load(std::memory_order_relaxed) < b)
            return;
          const int64_t sliceEnd = std::min(end, b + kBlocksPerSlice);
          const int64_t bad =
              kernel(data, blocksize, b, sliceEnd, pieces.packed.data(),
                     pieces.absmax.data());
          if (bad != sliceEnd) {
            int64_t seen = firstBad.load();
            while (bad < seen && !firstBad.compare_exchange_weak(seen, bad)) {
            }
            return;
          }
        }
      });
  int64_t badBlock = firstBad.load();
  if (badBlock == std::numeric_limits<int64_t>::max() && hasPartial &&
      !detail::quantizeNf4BlockPortable(
          data, dtype, fullBlocks * blocksize, count - fullBlocks * blocksize,
          /*partial=*/true, pieces.packed.data(), pieces.absmax.back()))
    badBlock = fullBlocks;
  if (badBlock != std::numeric_limits<int64_t>::max()) {
    const int64_t end = std::min(count, (badBlock + 1) * blocksize);
    for (int64_t i = badBlock * blocksize; i < end; ++i) {
      const float value = cpu::loadAsFloat(data, dtype, static_cast<size_t>(i));
      if (!std::isfinite(value)) {
        error = "element " + std::to_string(i) + " is not finite (" +
                std::to_string(value) + ")";
        return std::nullopt;
      }
    }
    error = "block " + std::to_string(badBlock) + " is not finite";
    return std::nullopt;
  }
  // An odd count is padded with a zero element, code 7.
  if (count % 2)
    pieces.packed.back() |= 0x07;

  if (nested == 0)
    return pieces;
  // Double quantization: the offset is torch's serial fp32 mean; the nested
  // blocks are independent again.
  pieces.offset = torchMeanF32(pieces.absmax);
  if (!std::isfinite(pieces.offset)) {
    error = "double quantization overflows: the mean of the absmax is " +
            std::to_string(pieces.offset);
    return std::nullopt;
  }
  static const NestedQuantizer nestedQuantizer;
  const int64_t blocks = static_cast<int64_t>(pieces.absmax.size());
  const int64_t nestedBlocks = (blocks + nested - 1) / nested;
  pieces.absmaxCodes.resize(static_cast<size_t>(blocks));
  pieces.nestedAbsmax.resize(static_cast<size_t>(nestedBlocks));
  parallelRanges(nestedBlocks,
                 workerCount(options.threads, blocks * 64, nestedBlocks),
                 [&](int64_t begin, int64_t end) {
                   nestedQuantizer.quantize(
                       pieces.absmax, pieces.offset, nested, begin, end,
                       pieces.absmaxCodes.data(), pieces.nestedAbsmax.data());
                 });
  return pieces;
}

void writeNf4Storage(const Nf4Pieces &pieces, const Nf4Layout &layout,
                     std::span<std::byte> out) {
  std::memset(out.data(), 0, out.size());
  auto put = [&](int64_t offset, const void *bytes, int64_t size) {
    if (size > 0)
      std::memcpy(out.data() + offset, bytes, static_cast<size_t>(size));
  };
  put(layout.codesOffset, pieces.packed.data(), layout.codesBytes);
  if (!layout.isDoubleQuantized()) {
    put(layout.absmaxOffset, pieces.absmax.data(), layout.absmaxBytes);
    return;
  }
  put(layout.absmaxOffset, pieces.absmaxCodes.data(), layout.absmaxBytes);
  put(layout.nestedAbsmaxOffset, pieces.nestedAbsmax.data(),
      layout.nestedAbsmaxBytes);
  put(layout.offsetOffset, &pieces.offset, layout.offsetBytes);
}

std::vector<float> dequantizeNf4Tensor(const Nf4Pieces &pieces,
                                       const Nf4Layout &layout,
                                       unsigned threads) {
  std::vector<float> out(static_cast<size_t>(layout.count));
  const AbsmaxSource absmaxOf(pieces, layout);
  parallelRanges(
      layout.blocks, workerCount(threads, layout.count, layout.blocks),
      [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) {
          const BlockValues values(absmaxOf(b));
          const int64_t first = b * layout.blocksize;
          const int64_t last = std::min(layout.count, first + layout.blocksize);
          values.decode(pieces.packed.data(), first, last, out.data() + first);
        }
      });
  return out;
}

Nf4Error measureNf4Error(const void *data, DType dtype, int64_t count,
                         const Nf4Pieces &pieces, const Nf4Layout &layout,
                         unsigned threads) {
  if (count <= 0)
    return {};
  const int64_t chunks = (count + kErrorChunk - 1) / kErrorChunk;
  std::vector<double> sums(static_cast<size_t>(chunks));
  std::vector<double> maxima(static_cast<size_t>(chunks));
  const AbsmaxSource absmaxOf(pieces, layout);
  const int64_t blocksize = layout.blocksize;
  parallelRanges(
      chunks, workerCount(threads, count, chunks),
      [&](int64_t begin, int64_t end) {
        float x[kMaxBlocksize], deq[kMaxBlocksize];
        for (int64_t c = begin; c < end; ++c) {
          const int64_t first = c * kErrorChunk;
          const int64_t last = std::min(count, first + kErrorChunk);
          // Eight running sums and maxima keep the adds independent (and
          // vectorizable); each block segment feeds them from lane 0, and
          // the chunk adds them up in a fixed order.
          double sq[8] = {}, mx[8] = {};
          for (int64_t i = first; i < last;) {
            const int64_t b = i / blocksize;
            const int64_t stop =
                std::min({last, (b + 1) * blocksize, i + kMaxBlocksize});
            const int64_t n = stop - i;
            cpu::widenToFloat(data, dtype, static_cast<size_t>(i),
                              static_cast<size_t>(n), x);
            BlockValues(absmaxOf(b)).decode(pieces.packed.data(), i, stop, deq);
            int64_t k = 0;
            for (; k + 8 <= n; k += 8)
              for (int l = 0; l < 8; ++l) {
                const double d = static_cast<double>(x[k + l]) -
                                 static_cast<double>(deq[k + l]);
                sq[l] += d * d;
                mx[l] = std::max(mx[l], std::fabs(d));
              }
            for (int l = 0; k < n; ++k, ++l) {
              const double d =
                  static_cast<double>(x[k]) - static_cast<double>(deq[k]);
              sq[l] += d * d;
              mx[l] = std::max(mx[l], std::fabs(d));
            }
            i = stop;
          }
          sums[c] = ((sq[0] + sq[1]) + (sq[2] + sq[3])) +
                    ((sq[4] + sq[5]) + (sq[6] + sq[7]));
          const double maxAbs = *std::max_element(mx, mx + 8);
          maxima[c] = maxAbs;
        }
      });
  Nf4Error result;
  double total = 0;
  for (int64_t c = 0; c < chunks; ++c) {
    total += sums[c];
    result.maxAbsError = std::max(result.maxAbsError, maxima[c]);
  }
  result.rmse = std::sqrt(total / static_cast<double>(count));
  return result;
}

} // namespace qlora::format
