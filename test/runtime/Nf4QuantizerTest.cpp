//===- Nf4QuantizerTest.cpp - The fast NF4 codec against the reference ----===//
//
// runtime/format/Nf4Quantizer.h must give the bits of the scalar reference
// (Nf4.h) for every input, kernel and thread count: checked on bitsandbytes'
// golden data (test/golden/nf4/) and on random inputs built to hit the edges
// (midpoints, zero blocks, extreme magnitudes, partial blocks).
//
//===----------------------------------------------------------------------===//
#include "runtime/format/Nf4Quantizer.h"
#include "runtime/backends/cpu/Float16.h"
#include "runtime/format/Nf4.h"
#include "runtime/format/Safetensors.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace qlora::format {
namespace {

const std::string kGoldenDir = std::string(QLORA_GOLDEN_DIR) + "/nf4/";
const unsigned kThreadCounts[] = {1, 2, 3, 8};
const Nf4Isa kIsas[] = {Nf4Isa::Best, Nf4Isa::Avx2, Nf4Isa::Portable};

std::string isaName(Nf4Isa isa) {
  switch (isa) {
  case Nf4Isa::Best:
    return "best kernel";
  case Nf4Isa::Avx2:
    return "AVX2 kernel";
  default:
    return "portable kernel";
  }
}

/// A tensor in its stored dtype, and its exact fp32 widening.
struct Input {
  DType dtype = DType::F32;
  std::vector<uint8_t> bytes;
  std::vector<float> widened;
  int64_t count() const { return static_cast<int64_t>(widened.size()); }
};

/// Rounds `values` to `dtype` and keeps both forms.
Input makeInput(const std::vector<float> &values, DType dtype) {
  Input in;
  in.dtype = dtype;
  in.bytes.resize(values.size() * dtypeSize(dtype));
  in.widened.resize(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::F32) {
      std::memcpy(in.bytes.data() + 4 * i, &values[i], 4);
    } else {
      // Half overflows above 65504: saturate finite values that would
      // become infinite.
      const float v = dtype == DType::F16 && std::isfinite(values[i]) &&
                              std::fabs(values[i]) > 65000.0f
                          ? std::copysign(65000.0f, values[i])
                          : values[i];
      const uint16_t bits =
          dtype == DType::BF16 ? cpu::floatToBf16(v) : cpu::floatToHalf(v);
      std::memcpy(in.bytes.data() + 2 * i, &bits, 2);
    }
    in.widened[i] = cpu::loadAsFloat(in.bytes.data(), dtype, i);
  }
  return in;
}

template <typename T>
::testing::AssertionResult sameBits(const std::vector<T> &ours,
                                    const std::vector<T> &expected,
                                    const std::string &what) {
  if (ours.size() != expected.size())
    return ::testing::AssertionFailure()
           << what << ": " << ours.size() << " values, expected "
           << expected.size();
  for (size_t i = 0; i < ours.size(); ++i)
    if (std::memcmp(&ours[i], &expected[i], sizeof(T)) != 0) {
      auto failure = ::testing::AssertionFailure();
      failure << what << ": first difference at " << i << ": ours ";
      if constexpr (std::is_same_v<T, float>)
        failure << std::hexfloat << ours[i] << ", expected " << expected[i];
      else
        failure << +ours[i] << ", expected " << +expected[i];
      return failure;
    }
  return ::testing::AssertionSuccess();
}

std::vector<uint8_t> u8s(std::span<const uint8_t> bytes) {
  return {bytes.begin(), bytes.end()};
}

std::vector<float> f32s(std::span<const uint8_t> bytes) {
  std::vector<float> out(bytes.size() / 4);
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

/// Everything the reference computes for `in`.
struct Reference {
  Nf4Quantized q;
  std::optional<DoubleQuantized> dq;
  std::vector<float> dequantized;
};

Reference referenceOf(const Input &in, int64_t blocksize, int64_t nested) {
  std::string error;
  Reference ref;
  auto q = quantizeNf4(in.widened, blocksize, error);
  EXPECT_TRUE(q) << error;
  ref.q = *q;
  std::vector<float> absmax = ref.q.absmax;
  if (nested) {
    ref.dq = doubleQuantize(ref.q.absmax, nested, error);
    EXPECT_TRUE(ref.dq) << error;
    absmax = *recoverAbsmax(*ref.dq, nested, error);
  }
  ref.dequantized =
      *dequantizeNf4(ref.q.packed, absmax, blocksize, in.count(), error);
  return ref;
}

/// Quantizes `in` with every thread count and both kernels and compares
/// every piece with `ref`.
void expectMatchesReference(const Input &in, const Reference &ref,
                            int64_t blocksize, int64_t nested,
                            const std::string &what) {
  for (Nf4Isa isa : kIsas) {
    for (unsigned threads : kThreadCounts) {
      SCOPED_TRACE(what + ", " + std::string(dtypeName(in.dtype)) +
                   ", blocksize " + std::to_string(blocksize) + ", nested " +
                   std::to_string(nested) + ", threads " +
                   std::to_string(threads) + ", " + isaName(isa));
      Nf4QuantizeOptions options;
      options.blocksize = blocksize;
      options.nestedBlocksize = nested;
      options.threads = threads;
      options.isa = isa;
      std::string error;
      auto pieces = quantizeNf4Tensor(in.bytes.data(), in.dtype, in.count(),
                                      options, error);
      ASSERT_TRUE(pieces) << error;
      EXPECT_TRUE(sameBits(pieces->packed, ref.q.packed, "packed"));
      EXPECT_TRUE(sameBits(pieces->absmax, ref.q.absmax, "absmax"));
      if (ref.dq) {
        EXPECT_TRUE(sameBits(pieces->absmaxCodes, ref.dq->codes, "codes"));
        EXPECT_TRUE(sameBits(pieces->nestedAbsmax, ref.dq->nestedAbsmax,
                             "nested absmax"));
        EXPECT_TRUE(sameBits(std::vector<float>{pieces->offset},
                             std::vector<float>{ref.dq->offset}, "offset"));
      } else {
        EXPECT_TRUE(pieces->absmaxCodes.empty());
        EXPECT_TRUE(pieces->nestedAbsmax.empty());
      }
      auto layout = nf4LayoutFor(in.count(), options);
      ASSERT_TRUE(layout);
      EXPECT_TRUE(sameBits(dequantizeNf4Tensor(*pieces, *layout, threads),
                           ref.dequantized, "dequantized"));
    }
  }
}

std::unique_ptr<SafetensorsFile> openGolden(const std::string &name) {
  std::string error;
  auto file = SafetensorsFile::open(kGoldenDir + name + ".safetensors", error);
  EXPECT_TRUE(file) << error;
  return file;
}

class Nf4QuantizerGoldenTest : public ::testing::TestWithParam<const char *> {};

TEST_P(Nf4QuantizerGoldenTest, BitExactWithBitsandbytes) {
  auto file = openGolden(GetParam());
  ASSERT_TRUE(file);
  const TensorView &input = *file->find("input");
  const int64_t count = input.numElements();
  for (Nf4Isa isa : kIsas) {
    for (unsigned threads : kThreadCounts) {
      SCOPED_TRACE(std::string(GetParam()) + ", threads " +
                   std::to_string(threads) + ", " + isaName(isa));
      Nf4QuantizeOptions options;
      options.threads = threads;
      options.isa = isa;
      std::string error;
      auto pieces = quantizeNf4Tensor(input.bytes.data(), input.dtype, count,
                                      options, error);
      ASSERT_TRUE(pieces) << error;
      EXPECT_TRUE(
          sameBits(pieces->packed, u8s(file->find("packed")->bytes), "packed"));
      EXPECT_TRUE(sameBits(pieces->absmax, f32s(file->find("absmax")->bytes),
                           "absmax"));
      EXPECT_TRUE(sameBits(pieces->absmaxCodes,
                           u8s(file->find("absmax_q")->bytes), "codes"));
      EXPECT_TRUE(sameBits(pieces->nestedAbsmax,
                           f32s(file->find("nested_absmax")->bytes),
                           "nested absmax"));
      EXPECT_TRUE(sameBits(std::vector<float>{pieces->offset},
                           f32s(file->find("offset")->bytes), "offset"));
      if (const TensorView *golden = file->find("dequantized")) {
        auto layout = nf4LayoutFor(count, options);
        ASSERT_TRUE(layout);
        EXPECT_TRUE(sameBits(dequantizeNf4Tensor(*pieces, *layout, threads),
                             f32s(golden->bytes), "dequantized"));
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, Nf4QuantizerGoldenTest,
                         ::testing::Values("randn_1000", "randn_64x64",
                                           "randn_257x65", "odd_77",
                                           "single_block_50", "fp16_64x96",
                                           "bf16_33x130", "zero_blocks",
                                           "extreme", "bf16_big_65600"));

/// Random values, block by block one of several kinds: normal at a random
/// scale, all zeros (with a negative zero), huge or tiny magnitudes, or an
/// absmax of a power of two with the rest exactly on the scaled midpoints
/// (or one ulp either side).
std::vector<float> edgyValues(int64_t count, int64_t blocksize, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> kindOf(0, 6);
  std::uniform_int_distribution<int> midOf(0, 14);
  std::uniform_int_distribution<int> exponentOf(-20, 20);
  const std::vector<float> mids = [] {
    std::vector<float> m;
    for (size_t i = 0; i + 1 < kNf4Code.size(); ++i)
      m.push_back((kNf4Code[i] + kNf4Code[i + 1]) / 2.0f);
    return m;
  }();
  std::vector<float> out(static_cast<size_t>(count));
  for (int64_t start = 0; start < count; start += blocksize) {
    const int64_t end = std::min(count, start + blocksize);
    const int kind = kindOf(rng);
    const float scale = std::ldexp(1.0f, exponentOf(rng));
    for (int64_t i = start; i < end; ++i) {
      float v = normal(rng);
      switch (kind) {
      case 0:
        v *= scale;
        break;
      case 1:
        v = (i % 3 == 0) ? -0.0f : 0.0f;
        break;
      case 2:
        v *= 1e33f;
        break;
      case 3:
        v *= 1e-40f; // subnormal
        break;
      case 4:
      case 5: {
        // The block's absmax is `scale` (first element), so x * (1/scale)
        // lands exactly on a midpoint; kind 5 steps one ulp off.
        const float mid = mids[midOf(rng)] * scale;
        v = i == start ? (v < 0 ? -scale : scale) : mid;
        if (kind == 5 && i != start)
          v = std::nextafter(v, v + (i % 2 ? 1.0f : -1.0f));
        break;
      }
      default:
        v = (i % 5 == 0) ? -0.0f : v * 1e-3f;
        break;
      }
      out[i] = v;
    }
  }
  // Extreme finite magnitudes somewhere.
  if (count > 10) {
    out[3] = 0x1p126f; // huge, yet the mean of the absmax stays finite
    out[count - 2] = -std::numeric_limits<float>::denorm_min();
  }
  return out;
}

TEST(Nf4QuantizerTest, RandomInputsMatchReference) {
  const int64_t sizes[] = {1,   2,    63,           64,       65,    127,
                           128, 1000, 255 * 64 + 7, 256 * 64, 300000};
  const DType dtypes[] = {DType::F32, DType::F16, DType::BF16};
  uint32_t seed = 1;
  for (int64_t size : sizes) {
    for (DType dtype : dtypes) {
      Input in = makeInput(edgyValues(size, 64, seed++), dtype);
      for (int64_t nested : {int64_t(256), int64_t(0)}) {
        Reference ref = referenceOf(in, 64, nested);
        expectMatchesReference(in, ref, 64, nested,
                               "size " + std::to_string(size));
      }
    }
  }
}

TEST(Nf4QuantizerTest, OtherBlocksizesMatchReference) {
  // 32/128/4096 take the vector kernel; 100 and 33 (odd: blocks share a
  // byte) the portable one; 7 nested blocks make a partial nested block.
  const int64_t blocksizes[] = {32, 128, 4096, 100, 33};
  uint32_t seed = 100;
  for (int64_t blocksize : blocksizes) {
    for (int64_t size : {blocksize * 7 + 3, blocksize * 64, int64_t(99999)}) {
      Input in = makeInput(edgyValues(size, blocksize, seed++), DType::BF16);
      for (int64_t nested : {int64_t(256), int64_t(7), int64_t(0)}) {
        Reference ref = referenceOf(in, blocksize, nested);
        expectMatchesReference(in, ref, blocksize, nested,
                               "size " + std::to_string(size));
      }
    }
  }
}

TEST(Nf4QuantizerTest, NonFiniteInputNamesTheElement) {
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()};
  const int64_t count = 300001;
  for (DType dtype : {DType::F32, DType::F16, DType::BF16}) {
    for (float special : specials) {
      // In the first block, in the middle, in the partial last block; with
      // a later non-finite element that must not be the one reported.
      for (int64_t at :
           {int64_t(0), int64_t(70), int64_t(200003), int64_t(count - 1)}) {
        std::vector<float> values(static_cast<size_t>(count), 0.25f);
        values[at] = special;
        if (at + 1000 < count)
          values[at + 1000] = special;
        Input in = makeInput(values, dtype);
        for (unsigned threads : {1u, 8u}) {
          for (Nf4Isa isa : kIsas) {
            Nf4QuantizeOptions options;
            options.threads = threads;
            options.isa = isa;
            std::string error;
            EXPECT_FALSE(quantizeNf4Tensor(in.bytes.data(), dtype, count,
                                           options, error));
            const std::string expected =
                "element " + std::to_string(at) + " is not finite (";
            EXPECT_EQ(error.rfind(expected, 0), 0u)
                << error << " (expected " << expected << "...)";
          }
        }
      }
    }
  }
}

TEST(Nf4QuantizerTest, LargestMagnitudesWithoutDoubleQuantization) {
  // The absmax mean overflows fp32, which double quantization cannot
  // represent (bitsandbytes would store garbage): an error. Without double
  // quantization the largest values are fine.
  std::vector<float> values(200, std::numeric_limits<float>::max());
  for (size_t i = 0; i < values.size(); i += 3)
    values[i] = -values[i];
  Input in = makeInput(values, DType::F32);
  Nf4QuantizeOptions options;
  std::string error;
  EXPECT_FALSE(
      quantizeNf4Tensor(in.bytes.data(), DType::F32, 200, options, error));
  EXPECT_NE(error.find("overflows"), std::string::npos) << error;
  expectMatchesReference(in, referenceOf(in, 64, 0), 64, 0, "max floats");
}

TEST(Nf4QuantizerTest, RejectsBadArguments) {
  std::vector<float> values(100, 1.0f);
  std::string error;
  Nf4QuantizeOptions options;
  EXPECT_FALSE(
      quantizeNf4Tensor(values.data(), DType::I32, 100, options, error));
  EXPECT_NE(error.find("I32"), std::string::npos) << error;
  EXPECT_FALSE(quantizeNf4Tensor(values.data(), DType::F32, 0, options, error));
  options.blocksize = 16;
  EXPECT_FALSE(
      quantizeNf4Tensor(values.data(), DType::F32, 100, options, error));
  EXPECT_NE(error.find("blocksize"), std::string::npos) << error;
  options.blocksize = 8192;
  EXPECT_FALSE(
      quantizeNf4Tensor(values.data(), DType::F32, 100, options, error));
  options.blocksize = 64;
  options.nestedBlocksize = -1;
  EXPECT_FALSE(
      quantizeNf4Tensor(values.data(), DType::F32, 100, options, error));
}

TEST(Nf4QuantizerTest, StorageFollowsLayout) {
  for (int64_t nested : {int64_t(256), int64_t(0)}) {
    for (int64_t count : {int64_t(1), int64_t(77), int64_t(64 * 300 + 5)}) {
      SCOPED_TRACE("count " + std::to_string(count) + ", nested " +
                   std::to_string(nested));
      Input in = makeInput(edgyValues(count, 64, 7), DType::F32);
      Nf4QuantizeOptions options;
      options.nestedBlocksize = nested;
      std::string error;
      auto pieces =
          quantizeNf4Tensor(in.bytes.data(), DType::F32, count, options, error);
      ASSERT_TRUE(pieces) << error;
      auto layout = nf4LayoutFor(count, options);
      ASSERT_TRUE(layout);
      // Garbage first: padding must come out zero.
      std::vector<std::byte> storage(static_cast<size_t>(layout->totalBytes),
                                     std::byte{0xAB});
      writeNf4Storage(*pieces, *layout, storage);
      auto region = [&](int64_t offset, int64_t size) {
        const auto *p = reinterpret_cast<const uint8_t *>(storage.data());
        return std::vector<uint8_t>(p + offset, p + offset + size);
      };
      auto asBytes = [](const auto &v) {
        const auto *p = reinterpret_cast<const uint8_t *>(v.data());
        return std::vector<uint8_t>(p, p + v.size() * sizeof(v[0]));
      };
      std::vector<bool> covered(storage.size(), false);
      auto cover = [&](int64_t offset, int64_t size) {
        EXPECT_EQ(offset % 16, 0);
        for (int64_t i = offset; i < offset + size; ++i)
          covered[i] = true;
      };
      EXPECT_EQ(region(layout->codesOffset, layout->codesBytes),
                pieces->packed);
      cover(layout->codesOffset, layout->codesBytes);
      if (nested) {
        EXPECT_EQ(region(layout->absmaxOffset, layout->absmaxBytes),
                  pieces->absmaxCodes);
        EXPECT_EQ(region(layout->nestedAbsmaxOffset, layout->nestedAbsmaxBytes),
                  asBytes(pieces->nestedAbsmax));
        EXPECT_EQ(region(layout->offsetOffset, 4),
                  asBytes(std::vector<float>{pieces->offset}));
        cover(layout->nestedAbsmaxOffset, layout->nestedAbsmaxBytes);
        cover(layout->offsetOffset, 4);
      } else {
        EXPECT_EQ(region(layout->absmaxOffset, layout->absmaxBytes),
                  asBytes(pieces->absmax));
      }
      cover(layout->absmaxOffset, layout->absmaxBytes);
      for (size_t i = 0; i < storage.size(); ++i) {
        if (!covered[i]) {
          EXPECT_EQ(storage[i], std::byte{0}) << "padding byte " << i;
        }
      }
    }
  }
}

TEST(Nf4QuantizerTest, ErrorMatchesNaiveComputation) {
  for (DType dtype : {DType::F32, DType::BF16, DType::F16}) {
    for (int64_t nested : {int64_t(256), int64_t(0)}) {
      const int64_t count = 200003;
      std::mt19937 rng(42);
      std::normal_distribution<float> normal(0.0f, 0.02f);
      std::vector<float> values(static_cast<size_t>(count));
      for (float &v : values)
        v = normal(rng);
      Input in = makeInput(values, dtype);
      Nf4QuantizeOptions options;
      options.nestedBlocksize = nested;
      std::string error;
      auto pieces =
          quantizeNf4Tensor(in.bytes.data(), dtype, count, options, error);
      ASSERT_TRUE(pieces) << error;
      auto layout = nf4LayoutFor(count, options);
      std::vector<float> deq = dequantizeNf4Tensor(*pieces, *layout, 1);
      double sum = 0, maxAbs = 0;
      for (int64_t i = 0; i < count; ++i) {
        const double d = double(in.widened[i]) - double(deq[i]);
        sum += d * d;
        maxAbs = std::max(maxAbs, std::fabs(d));
      }
      const double rmse = std::sqrt(sum / double(count));
      for (unsigned threads : kThreadCounts) {
        Nf4Error e = measureNf4Error(in.bytes.data(), dtype, count, *pieces,
                                     *layout, threads);
        EXPECT_NEAR(e.rmse, rmse, 1e-12 * rmse);
        EXPECT_EQ(e.maxAbsError, maxAbs);
        EXPECT_GT(e.rmse, 0.0);
        // Same bits whatever the thread count.
        Nf4Error one =
            measureNf4Error(in.bytes.data(), dtype, count, *pieces, *layout, 1);
        EXPECT_EQ(e.rmse, one.rmse);
      }
    }
  }
}

} // namespace
} // namespace qlora::format
