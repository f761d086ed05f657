//===- CpuNf4KernelsTest.cpp - NF4 weights in the CPU kernels -------------===//
//
// KernelAbi.h's [nf4] convention on the CPU backend: linear_fwd and
// linear_grad_input on an NF4 weight give the same bits as on the weight the
// reference codec (format/Nf4.h) dequantizes, rounded to w_dequant_dtype;
// dequantize_nf4 writes exactly those values; the same bits with 1 and 3
// threads; and validate() names what is wrong with a malformed NF4 launch.
//
//===----------------------------------------------------------------------===//
#include "runtime/backends/cpu/CpuKernels.h"
#include "runtime/backends/cpu/Float16.h"
#include "runtime/backends/cpu/ThreadPool.h"
#include "runtime/format/KernelAbi.h"
#include "runtime/format/Nf4.h"
#include "runtime/format/Nf4Layout.h"
#include "test/runtime/CpuKernelHarness.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

namespace qlora::cpu {
namespace {

using format::DType;
using format::KernelParams;
using Vec = std::vector<float>;
using Bytes = std::vector<uint8_t>;

//===----------------------------------------------------------------------===//
// Harness
//===----------------------------------------------------------------------===//


using testing::Arg;
using testing::pool;
using testing::buf;
using testing::launch;
using testing::validate;

Vec randomVec(size_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  Vec v(n);
  for (float &x : v)
    x = dist(rng);
  return v;
}

bool sameBits(const Vec &a, const Vec &b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

float roundTo(DType dtype, float value) {
  if (dtype == DType::BF16)
    return bf16ToFloat(floatToBf16(value));
  if (dtype == DType::F16)
    return halfToFloat(floatToHalf(value));
  return value;
}

/// How a test weight is quantized and dequantized.
struct Nf4Config {
  int64_t blockSize;
  int64_t dqBlockSize; // 0: f32 absmax
  DType dequantType;
};

std::string describe(const Nf4Config &c) {
  return "block " + std::to_string(c.blockSize) + " dq " +
         std::to_string(c.dqBlockSize) + " " +
         std::string(format::dtypeName(c.dequantType));
}

/// Random values quantized by the reference codec and packed into one
/// Nf4Layout buffer, with the reference dequantization rounded to the
/// config's dtype.
struct Nf4Weight {
  Bytes buffer;
  Vec dequantized;
};

template <typename T>
void put(Bytes &buffer, int64_t offset, const std::vector<T> &values) {
  ASSERT_LE(offset + int64_t(values.size() * sizeof(T)),
            int64_t(buffer.size()));
  std::memcpy(buffer.data() + offset, values.data(), values.size() * sizeof(T));
}

Nf4Weight quantizeWeight(int64_t count, const Nf4Config &c, unsigned seed) {
  Vec values = randomVec(size_t(count), seed, 0.05f);
  // A zero block and an outlier: absmax 0 and a wide range.
  std::fill(values.begin(),
            values.begin() + std::min<int64_t>(c.blockSize, count), 0.0f);
  values[size_t(count / 2)] = 1.5f;
  std::string error;
  auto q = format::quantizeNf4(values, c.blockSize, error);
  EXPECT_TRUE(q) << error;
  auto layout = format::Nf4Layout::compute(count, c.blockSize, c.dqBlockSize);
  EXPECT_TRUE(layout);
  Nf4Weight w;
  w.buffer.assign(size_t(layout->totalBytes), 0xee); // garbage padding
  put(w.buffer, layout->codesOffset, q->packed);
  Vec absmax = q->absmax;
  if (c.dqBlockSize == 0) {
    put(w.buffer, layout->absmaxOffset, absmax);
  } else {
    auto dq = format::doubleQuantize(q->absmax, c.dqBlockSize, error);
    EXPECT_TRUE(dq) << error;
    put(w.buffer, layout->absmaxOffset, dq->codes);
    put(w.buffer, layout->nestedAbsmaxOffset, dq->nestedAbsmax);
    put(w.buffer, layout->offsetOffset, Vec{dq->offset});
    absmax = *format::recoverAbsmax(*dq, c.dqBlockSize, error);
  }
  auto dense =
      format::dequantizeNf4(q->packed, absmax, c.blockSize, count, error);
  EXPECT_TRUE(dense) << error;
  w.dequantized = *dense;
  for (float &v : w.dequantized)
    v = roundTo(c.dequantType, v);
  return w;
}

/// The [nf4] parameters of `c`, all but `skip`; `w_dtype` too for a linear.
void setNf4Params(KernelParams &params, const Nf4Config &c, bool linear,
                  std::string_view skip = "") {
  KernelParams::Value values[] = {
      std::string(kernels::kNf4WeightDType), c.blockSize, c.dqBlockSize,
      std::string(format::dtypeName(c.dequantType))};
  const char *names[] = {"w_dtype", "w_block_size", "w_dq_block_size",
                         "w_dequant_dtype"};
  for (size_t i = linear ? 0 : 1; i < std::size(names); ++i)
    if (names[i] != skip)
      params.set(names[i], values[i]);
}

const Nf4Config kConfigs[] = {
    {64, 0, DType::F32},   {64, 256, DType::F32},  {64, 256, DType::BF16},
    {128, 0, DType::BF16}, {128, 256, DType::F32}, {64, 0, DType::F16},
};

//===----------------------------------------------------------------------===//
// linear_fwd and linear_grad_input
//===----------------------------------------------------------------------===//

struct LinearCase {
  int64_t rows, in, out, rank;
  double dropout;
};

KernelParams linearParams(const LinearCase &lc, bool gradInput) {
  KernelParams p;
  p.set("rows", lc.rows);
  p.set("in", lc.in);
  p.set("out", lc.out);
  p.set("rank", lc.rank);
  p.set("scaling", 2.0);
  p.set("w_dtype", std::string("F32"));
  if (gradInput)
    p.set("accumulate", int64_t(1));
  if (lc.dropout > 0) {
    p.set("dropout", lc.dropout);
    p.set("dropout_stream", std::string("layers.0.q_proj.lora_A#0"));
    p.set("dropout_seed", int64_t(1234));
  }
  return p;
}

/// Runs linear_fwd or linear_grad_input with W as `w` (F32 or NF4 per
/// `params`); returns the output followed by the workspace.
Vec runLinear(const LinearCase &lc, bool gradInput, const KernelParams &params,
              Bytes &w, ThreadPool &pool) {
  int64_t inRows = gradInput ? lc.out : lc.in;
  int64_t outCols = gradInput ? lc.in : lc.out;
  Vec input = randomVec(size_t(lc.rows * inRows), 11);
  Vec a = randomVec(size_t(lc.rank * lc.in), 12);
  Vec b = randomVec(size_t(lc.out * lc.rank), 13);
  Vec ws(size_t(lc.rows * lc.rank));
  Vec result = randomVec(size_t(lc.rows * outCols), 14); // accumulated into
  std::vector<int64_t> step = {3};
  std::vector<Arg> args = {buf(input), buf(w)};
  if (lc.rank > 0)
    args.insert(args.end(), {buf(a), buf(b), buf(ws)});
  args.push_back(buf(result));
  if (lc.dropout > 0)
    args.push_back(buf(step));
  launch(gradInput ? kernels::kLinearGradInput : kernels::kLinearFwd, params,
         args, pool);
  result.insert(result.end(), ws.begin(), ws.end());
  return result;
}

Bytes asBytes(const Vec &v) {
  Bytes bytes(v.size() * sizeof(float));
  std::memcpy(bytes.data(), v.data(), bytes.size());
  return bytes;
}

void expectNf4MatchesReference(const LinearCase &lc) {
  unsigned seed = 100;
  for (const Nf4Config &c : kConfigs) {
    Nf4Weight w = quantizeWeight(lc.out * lc.in, c, seed++);
    Bytes dense = asBytes(w.dequantized);
    for (bool gradInput : {false, true}) {
      std::string what =
          std::string(gradInput ? "linear_grad_input" : "linear_fwd") + " " +
          describe(c) + " rank " + std::to_string(lc.rank) + " dropout " +
          std::to_string(lc.dropout);
      KernelParams f32 = linearParams(lc, gradInput), nf4 = f32;
      setNf4Params(nf4, c, /*linear=*/true);
      Vec want = runLinear(lc, gradInput, f32, dense, pool<3>());
      Vec got3 = runLinear(lc, gradInput, nf4, w.buffer, pool<3>());
      Vec got1 = runLinear(lc, gradInput, nf4, w.buffer, pool<1>());
      EXPECT_TRUE(sameBits(got3, want)) << what;
      EXPECT_TRUE(sameBits(got1, want)) << what << " (1 thread)";
    }
  }
}

// 37 x 70 = 2590 elements: neither dimension a multiple of the GEMM tiles
// or of 64, a partial last block, and an odd row length (rows start on odd
// nibbles).
TEST(CpuNf4Linear, RankZeroMatchesTheDequantizedWeight) {
  expectNf4MatchesReference({13, 70, 37, 0, 0.0});
}

TEST(CpuNf4Linear, LoraMatchesTheDequantizedWeight) {
  expectNf4MatchesReference({13, 70, 37, 4, 0.0});
}

TEST(CpuNf4Linear, LoraWithDropoutMatchesTheDequantizedWeight) {
  expectNf4MatchesReference({9, 71, 37, 3, 0.25});
}

// Several K blocks and B panels in both orientations (in, out > 256).
TEST(CpuNf4Linear, ManyPanelsMatchTheDequantizedWeight) {
  expectNf4MatchesReference({7, 521, 300, 2, 0.0});
}

//===----------------------------------------------------------------------===//
// dequantize_nf4
//===----------------------------------------------------------------------===//

TEST(CpuNf4Dequantize, WritesTheReferenceValuesInTheTargetType) {
  const int64_t n = 70001; // odd, several chunks, a partial last block
  unsigned seed = 200;
  for (const Nf4Config &c : kConfigs) {
    Nf4Weight w = quantizeWeight(n, c, seed++);
    // At an odd address: the f32 pieces need not be aligned.
    Bytes shifted(w.buffer.size() + 1);
    std::memcpy(shifted.data() + 1, w.buffer.data(), w.buffer.size());
    for (DType to : {DType::F32, DType::BF16, DType::F16}) {
      KernelParams params;
      params.set("n", n);
      setNf4Params(params, c, /*linear=*/false);
      params.set("to", std::string(format::dtypeName(to)));
      std::string what =
          describe(c) + " to " + std::string(format::dtypeName(to));
      for (ThreadPool *pool : {&pool<1>(), &pool<3>()}) {
        if (to == DType::F32) {
          Vec out(static_cast<size_t>(n));
          launch(kernels::kDequantizeNf4, params,
                 {{shifted.data() + 1, w.buffer.size()}, buf(out)}, *pool);
          EXPECT_TRUE(sameBits(out, w.dequantized)) << what;
          continue;
        }
        std::vector<uint16_t> out(static_cast<size_t>(n));
        launch(kernels::kDequantizeNf4, params,
               {{shifted.data() + 1, w.buffer.size()}, buf(out)}, *pool);
        size_t mismatches = 0;
        for (int64_t i = 0; i < n; ++i) {
          float v = w.dequantized[size_t(i)];
          uint16_t want = to == DType::BF16 ? floatToBf16(v) : floatToHalf(v);
          mismatches += out[size_t(i)] != want;
        }
        EXPECT_EQ(mismatches, 0u) << what;
      }
    }
  }
}

//===----------------------------------------------------------------------===//
// Validation
//===----------------------------------------------------------------------===//

TEST(CpuNf4Validate, NamesWhatIsWrong) {
  const Nf4Config c{64, 256, DType::BF16};
  LinearCase lc{2, 70, 37, 0, 0.0};
  auto layout = *format::Nf4Layout::compute(37 * 70, 64, 256);
  Bytes w(size_t(layout.totalBytes)), shortW(size_t(layout.totalBytes - 1));
  Vec x(2 * 70), y(2 * 37);
  KernelParams params = linearParams(lc, false);
  setNf4Params(params, c, /*linear=*/true);
  EXPECT_EQ(validate(kernels::kLinearFwd, params, {buf(x), buf(w), buf(y)}),
            "");
  EXPECT_EQ(
      validate(kernels::kLinearFwd, params, {buf(x), buf(shortW), buf(y)}),
      "linear_fwd: argument 1 (w [37 x 70] NF4 (blocks of 64, nested blocks "
      "of 256)) needs " +
          std::to_string(layout.totalBytes) + " bytes, found " +
          std::to_string(layout.totalBytes - 1));

  KernelParams noDq = params;
  noDq.set("w_dq_block_size", int64_t(0));
  auto plain = *format::Nf4Layout::compute(37 * 70, 64, 0);
  EXPECT_EQ(validate(kernels::kLinearFwd, noDq, {buf(x), buf(shortW), buf(y)}),
            "linear_fwd: argument 1 (w [37 x 70] NF4 (blocks of 64, f32 "
            "absmax)) needs " +
                std::to_string(plain.totalBytes) + " bytes, found " +
                std::to_string(shortW.size()));

  KernelParams badBlock = params;
  badBlock.set("w_block_size", int64_t(0));
  EXPECT_EQ(validate(kernels::kLinearFwd, badBlock, {buf(x), buf(w), buf(y)}),
            "linear_fwd: parameter 'w_block_size' must be a positive integer, "
            "found integer 0");
  KernelParams badDq = params;
  badDq.set("w_dq_block_size", int64_t(-1));
  Vec dy(2 * 37), dx(2 * 70);
  badDq.set("accumulate", int64_t(0));
  EXPECT_EQ(
      validate(kernels::kLinearGradInput, badDq, {buf(dy), buf(w), buf(dx)}),
      "linear_grad_input: parameter 'w_dq_block_size' must be a non-negative "
      "integer, found integer -1");

  KernelParams missing = linearParams(lc, false);
  setNf4Params(missing, c, /*linear=*/true, "w_dequant_dtype");
  EXPECT_EQ(validate(kernels::kLinearFwd, missing, {buf(x), buf(w), buf(y)}),
            "linear_fwd: missing parameter 'w_dequant_dtype' (expected one of "
            "F32|BF16|F16)");
  KernelParams badType = params;
  badType.set("w_dtype", std::string("Q4"));
  EXPECT_EQ(validate(kernels::kLinearFwd, badType, {buf(x), buf(w), buf(y)}),
            "linear_fwd: parameter 'w_dtype' must be one of F32|BF16|F16|NF4, "
            "found string 'Q4'");

  KernelParams dequantize;
  dequantize.set("n", int64_t(37 * 70));
  setNf4Params(dequantize, c, /*linear=*/false);
  EXPECT_EQ(validate(kernels::kDequantizeNf4, dequantize, {buf(w), buf(x)}),
            "dequantize_nf4: missing parameter 'to' (expected one of "
            "F32|BF16|F16)");
  dequantize.set("to", std::string("F32"));
  Vec out(37 * 70);
  EXPECT_EQ(validate(kernels::kDequantizeNf4, dequantize, {buf(w), buf(out)}),
            "");
  EXPECT_EQ(validate(kernels::kDequantizeNf4, dequantize, {buf(w), buf(x)}),
            "dequantize_nf4: argument 1 (out [2590] F32) needs 10360 bytes, "
            "found 560");
  EXPECT_EQ(validate(kernels::kDequantizeNf4, dequantize, {buf(shortW)}),
            "dequantize_nf4: expected 2 arguments (w, out), found 1");
}

} // namespace
} // namespace qlora::cpu
