//===- CpuKernelsTest.cpp - CPU backend kernels against references --------===//
//
// Every kernel of KernelAbi.h against a naive double-precision reference
// written here; every backward kernel against central finite differences of
// a double reference (or against an analytic double reference that is itself
// checked by finite differences); the optimizer against torch's AdamW
// written out op by op; bit-identical results with 1 and 4 threads; and the
// messages validate() gives for malformed launches.
//
//===----------------------------------------------------------------------===//
#include "runtime/backends/cpu/CpuKernels.h"
#include "runtime/backends/cpu/Float16.h"
#include "runtime/backends/cpu/Gemm.h"
#include "runtime/backends/cpu/ThreadPool.h"
#include "runtime/format/KernelAbi.h"
#include "test/runtime/CpuKernelHarness.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <mutex>
#include <numbers>
#include <random>
#include <set>
#include <stdexcept>

namespace qlora::cpu {
namespace {

using format::DType;
using format::KernelParams;
using Vec = std::vector<float>;
using DVec = std::vector<double>;

//===----------------------------------------------------------------------===//
// Harness
//===----------------------------------------------------------------------===//

using testing::Arg;
using testing::buf;
using testing::makeParams;
using testing::one;
using testing::pool;
using testing::validate;

void launch(std::string_view name, const KernelParams &params,
            const std::vector<Arg> &args, ThreadPool &threads = pool<4>()) {
  testing::launch(name, params, args, threads);
}

Vec randomVec(size_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  Vec v(n);
  for (float &x : v)
    x = dist(rng);
  return v;
}

DVec toDouble(const Vec &v) { return DVec(v.begin(), v.end()); }

/// |got - want| <= atol + rtol * |want| everywhere; reports the worst index.
void expectClose(const Vec &got, const DVec &want, double rtol, double atol,
                 const std::string &what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0;
  size_t worstIndex = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double excess =
        std::fabs(got[i] - want[i]) / (atol + rtol * std::fabs(want[i]));
    if (!(excess <= worst))
      worst = excess, worstIndex = i;
  }
  EXPECT_LE(worst, 1.0) << what << ": index " << worstIndex << " got "
                        << got[worstIndex] << " want " << want[worstIndex];
}

/// Central differences of a scalar function of `x` (in double).
DVec finiteDifferences(DVec x, const std::function<double(const DVec &)> &f) {
  DVec grad(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    double saved = x[i], h = 1e-6 * std::max(1.0, std::fabs(saved));
    x[i] = saved + h;
    double up = f(x);
    x[i] = saved - h;
    double down = f(x);
    x[i] = saved;
    grad[i] = (up - down) / (2 * h);
  }
  return grad;
}

double dot(const DVec &a, const DVec &b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i)
    sum += a[i] * b[i];
  return sum;
}

bool sameBits(const Vec &a, const Vec &b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

//===----------------------------------------------------------------------===//
// ThreadPool and conversions
//===----------------------------------------------------------------------===//

TEST(CpuThreadPool, RunsEveryIndexOnceInFixedChunks) {
  for (ThreadPool *pool : {&pool<1>(), &pool<4>()}) {
    std::vector<std::atomic<int>> hits(1000);
    std::mutex mutex;
    std::set<std::pair<int64_t, int64_t>> chunks;
    pool->parallelFor(3, 1000, 64, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i)
        ++hits[size_t(i)];
      std::lock_guard<std::mutex> lock(mutex);
      chunks.insert({lo, hi});
    });
    for (size_t i = 0; i < hits.size(); ++i)
      EXPECT_EQ(hits[i].load(), i >= 3 ? 1 : 0) << i;
    EXPECT_EQ(chunks.size(), 16u);
    EXPECT_TRUE(chunks.count({963, 1000}));
  }
}

TEST(CpuThreadPool, NestsInlineAndRethrows) {
  std::atomic<int> total{0};
  pool<4>().parallelFor(0, 8, 1, [&](int64_t, int64_t) {
    pool<4>().parallelFor(
        0, 10, 3, [&](int64_t lo, int64_t hi) { total += int(hi - lo); });
  });
  EXPECT_EQ(total.load(), 80);
  EXPECT_THROW(pool<4>().parallelFor(0, 100, 1,
                                     [](int64_t lo, int64_t) {
                                       if (lo == 57)
                                         throw std::runtime_error("57");
                                     }),
               std::runtime_error);
  pool<4>().parallelFor(0, 4, 1, [](int64_t, int64_t) {}); // still usable
  EXPECT_EQ(ThreadPool(3).size(), 3u);
  EXPECT_GE(ThreadPool().size(), 1u);
}

/// IEEE half decoded the slow way.
double halfReference(uint16_t bits) {
  int sign = bits >> 15, exponent = (bits >> 10) & 31, mantissa = bits & 1023;
  double magnitude = exponent == 0 ? std::ldexp(mantissa, -24)
                     : exponent == 31
                         ? (mantissa ? NAN : INFINITY)
                         : std::ldexp(1024 + mantissa, exponent - 25);
  return sign ? -magnitude : magnitude;
}

TEST(CpuFloat16, HalfWidensExactlyAndNarrowsToNearestEven) {
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    double want = halfReference(uint16_t(bits));
    float got = halfToFloat(uint16_t(bits));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << bits;
      EXPECT_EQ(floatToHalf(got) & 0x7e00, 0x7e00) << bits;
      continue;
    }
    ASSERT_EQ(double(got), want) << bits;
    ASSERT_EQ(floatToHalf(got), bits) << bits;
    // The midpoint to the next half up rounds to the even one of the two.
    uint32_t next = bits + 1;
    if ((bits & 0x7fff) < 0x7bff) {
      auto mid = float((want + halfReference(uint16_t(next))) / 2);
      uint16_t even = (bits & 1) ? uint16_t(next) : uint16_t(bits);
      ASSERT_EQ(floatToHalf(mid), even) << bits;
    }
  }
  EXPECT_EQ(floatToHalf(65519.0f), 0x7bff);
  EXPECT_EQ(floatToHalf(65520.0f), 0x7c00);
  EXPECT_EQ(floatToHalf(-1e10f), 0xfc00);
  EXPECT_EQ(floatToHalf(1e-9f), 0x0000);
}

TEST(CpuFloat16, Bf16RoundsToNearestEven) {
  EXPECT_EQ(floatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16ToFloat(0x3f80), 1.0f);
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(floatToBf16(1.0f + 0x1p-8f), 0x3f80);
  EXPECT_EQ(floatToBf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
  EXPECT_EQ(floatToBf16(1.0f + 3 * 0x1p-8f), 0x3f82);
  EXPECT_EQ(floatToBf16(NAN), 0x7fc0);
  EXPECT_EQ(floatToBf16(-INFINITY), 0xff80);
}

//===----------------------------------------------------------------------===//
// Registry and validation
//===----------------------------------------------------------------------===//

TEST(CpuKernelRegistry, RunsEveryKernelOfTheAbi) {
  const std::string_view all[] = {kernels::kEmbeddingFwd,
                                  kernels::kCast,
                                  kernels::kRmsNormFwd,
                                  kernels::kRmsNormBwd,
                                  kernels::kLinearFwd,
                                  kernels::kLinearGradInput,
                                  kernels::kLoraGrad,
                                  kernels::kRope,
                                  kernels::kAttentionFwd,
                                  kernels::kAttentionBwd,
                                  kernels::kSiluFwd,
                                  kernels::kSiluBwd,
                                  kernels::kAdd,
                                  kernels::kMul,
                                  kernels::kCrossEntropyFwd,
                                  kernels::kCrossEntropyBwd,
                                  kernels::kCountTargets,
                                  kernels::kScalarBinary,
                                  kernels::kGlobalNorm,
                                  kernels::kClipCoefficient,
                                  kernels::kAdamW,
                                  kernels::kFill,
                                  kernels::kDequantizeNf4};
  for (std::string_view name : all)
    EXPECT_NE(findCpuKernel(name), nullptr) << name;
  EXPECT_EQ(cpuKernelNames().size(), std::size(all));
  EXPECT_EQ(findCpuKernel("matmul"), nullptr);
}

TEST(CpuKernelValidate, NamesTheKernelWhatWasExpectedAndWhatWasFound) {
  Vec x(32), y(32), w(8);
  KernelParams norm = makeParams(
      {{"rows", 4}, {"hidden", 8}, {"eps", 1e-5}, {"w_dtype", "F32"}});
  EXPECT_EQ(validate(kernels::kRmsNormFwd, norm, {buf(x), buf(w), buf(y)}), "");

  KernelParams noEps =
      makeParams({{"rows", 4}, {"hidden", 8}, {"w_dtype", "F32"}});
  EXPECT_EQ(validate(kernels::kRmsNormFwd, noEps, {buf(x), buf(w), buf(y)}),
            "rms_norm_fwd: missing parameter 'eps' (expected a finite float)");

  KernelParams negative = norm;
  negative.set("rows", int64_t(-3));
  EXPECT_EQ(validate(kernels::kRmsNormFwd, negative, {buf(x), buf(w), buf(y)}),
            "rms_norm_fwd: parameter 'rows' must be a positive integer, found "
            "integer -3");
  KernelParams wrongKind = norm;
  wrongKind.set("hidden", std::string("8"));
  EXPECT_EQ(validate(kernels::kRmsNormFwd, wrongKind, {buf(x), buf(w), buf(y)}),
            "rms_norm_fwd: parameter 'hidden' must be a positive integer, "
            "found string '8'");
  KernelParams badType = norm;
  badType.set("w_dtype", std::string("Q4"));
  EXPECT_EQ(validate(kernels::kRmsNormFwd, badType, {buf(x), buf(w), buf(y)}),
            "rms_norm_fwd: parameter 'w_dtype' must be one of F32|BF16|F16, "
            "found string 'Q4'");

  // An elementwise kernel of a bf16 program is the GPU's.
  EXPECT_EQ(validate(kernels::kAdd, makeParams({{"n", 8}, {"dtype", "F32"}}),
                     {buf(w), buf(w), buf(w)}),
            "");
  EXPECT_EQ(validate(kernels::kAdd, makeParams({{"n", 8}, {"dtype", "BF16"}}),
                     {buf(w), buf(w), buf(w)}),
            "add: parameter 'dtype' must be F32 on the CPU backend (it "
            "computes in f32; bf16 and f16 programs are for the GPU)");

  KernelParams linear = makeParams({{"rows", 2},
                                    {"in", 4},
                                    {"out", 8},
                                    {"rank", 2},
                                    {"scaling", 2.0},
                                    {"w_dtype", "BF16"}});
  EXPECT_EQ(validate(kernels::kLinearFwd, linear, {buf(x), buf(w), buf(y)}),
            "linear_fwd: expected 6 arguments (x, w, a, b, t_ws, y), found 3");
  Vec xs(8), a(8), b(16), t(4), ys(16), small(7);
  EXPECT_EQ(validate(kernels::kLinearFwd, linear,
                     {buf(xs), buf(small), buf(a), buf(b), buf(t), buf(ys)}),
            "linear_fwd: argument 1 (w [8 x 4] BF16) needs 64 bytes, found "
            "28");
  std::vector<uint16_t> w16(32), padded(40);
  EXPECT_EQ(validate(kernels::kLinearFwd, linear,
                     {buf(xs), buf(w16), buf(a), buf(b), buf(t), buf(ys)}),
            "");
  // A buffer larger than its tensor is fine (buffers may be padded).
  EXPECT_EQ(validate(kernels::kLinearFwd, linear,
                     {buf(xs), buf(padded), buf(a), buf(b), buf(t), buf(ys)}),
            "");

  KernelParams huge = norm;
  huge.set("rows", int64_t(1) << 40);
  huge.set("hidden", int64_t(1) << 40);
  EXPECT_EQ(validate(kernels::kRmsNormFwd, huge, {buf(x), buf(w), buf(y)}),
            "rms_norm_fwd: argument 0 (x [1099511627776 x 1099511627776] F32) "
            "is too large to address");

  KernelParams attention = makeParams({{"batch", 1},
                                       {"seq", 2},
                                       {"heads", 3},
                                       {"kv_heads", 2},
                                       {"head_dim", 4},
                                       {"scale", 0.5},
                                       {"causal", 1}});
  EXPECT_EQ(validate(kernels::kAttentionFwd, attention, {}),
            "attention_fwd: parameter 'heads' (3) must be a multiple of "
            "'kv_heads' (2)");
  KernelParams flags = makeParams({{"n", 4}, {"accumulate", 2}});
  EXPECT_EQ(validate(kernels::kSiluBwd, flags, {}),
            "silu_bwd: parameter 'accumulate' must be 0 or 1, found integer 2");
  KernelParams norms =
      makeParams({{"count", 2}, {"sizes", std::vector<int64_t>{4}}});
  EXPECT_EQ(validate(kernels::kGlobalNorm, norms, {}),
            "global_norm: parameter 'sizes' must have 'count' (2) entries, "
            "found 1");
  float s = 0;
  EXPECT_EQ(validate(kernels::kScalarBinary, makeParams({{"op", "pow"}}),
                     {one(s), one(s), one(s)}),
            "scalar_binary: parameter 'op' must be one of add|sub|mul|div, "
            "found string 'pow'");
  KernelParams rope = makeParams({{"batch", 1},
                                  {"seq", 1},
                                  {"heads", 1},
                                  {"head_dim", 4},
                                  {"theta", 1e4},
                                  {"inverse", 0},
                                  {"rope_type", "llama3"}});
  EXPECT_EQ(validate(kernels::kRope, rope, {}),
            "rope: missing parameter 'factor' (expected a finite float)");
}

//===----------------------------------------------------------------------===//
// Embedding, cast and elementwise kernels
//===----------------------------------------------------------------------===//

TEST(CpuKernels, EmbeddingWidensEveryWeightType) {
  const int64_t vocab = 5, hidden = 6;
  Vec table(vocab * hidden);
  for (size_t i = 0; i < table.size(); ++i)
    table[i] = float(int(i) - 13) / 8; // exact in bf16 and f16
  std::vector<int32_t> tokens = {4, 0, 2, 5, -1};
  for (const char *type : {"F32", "BF16", "F16"}) {
    std::vector<uint16_t> narrow(table.size());
    for (size_t i = 0; i < table.size(); ++i)
      narrow[i] = std::string(type) == "BF16" ? floatToBf16(table[i])
                                              : floatToHalf(table[i]);
    Vec out(tokens.size() * hidden);
    launch(kernels::kEmbeddingFwd,
           makeParams({{"rows", 5},
                       {"vocab", vocab},
                       {"hidden", hidden},
                       {"w_dtype", type}}),
           {std::string(type) == "F32" ? buf(table) : buf(narrow), buf(tokens),
            buf(out)});
    for (int64_t r = 0; r < 5; ++r)
      for (int64_t j = 0; j < hidden; ++j) {
        float got = out[size_t(r * hidden + j)];
        if (tokens[size_t(r)] < 0 || tokens[size_t(r)] >= vocab)
          EXPECT_TRUE(std::isnan(got)) << type << " row " << r;
        else
          EXPECT_EQ(got, table[size_t(tokens[size_t(r)] * hidden + j)]) << type;
      }
  }
}

TEST(CpuKernels, CastConvertsBetweenFloatTypes) {
  Vec in = randomVec(100, 1, 70000.0f);
  in[0] = NAN, in[1] = 1e-6f, in[2] = -0.0f;
  std::vector<uint16_t> bf16(in.size()), f16(in.size()), f16FromBf16(in.size());
  Vec back(in.size());
  launch(kernels::kCast,
         makeParams({{"n", 100}, {"from", "F32"}, {"to", "BF16"}}),
         {buf(in), buf(bf16)});
  launch(kernels::kCast,
         makeParams({{"n", 100}, {"from", "F32"}, {"to", "F16"}}),
         {buf(in), buf(f16)});
  launch(kernels::kCast,
         makeParams({{"n", 100}, {"from", "BF16"}, {"to", "F16"}}),
         {buf(bf16), buf(f16FromBf16)});
  launch(kernels::kCast,
         makeParams({{"n", 100}, {"from", "F16"}, {"to", "F32"}}),
         {buf(f16), buf(back)});
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(bf16[i], floatToBf16(in[i])) << i;
    EXPECT_EQ(f16[i], floatToHalf(in[i])) << i;
    EXPECT_EQ(f16FromBf16[i], floatToHalf(bf16ToFloat(bf16[i]))) << i;
    EXPECT_EQ(std::bit_cast<uint32_t>(back[i]),
              std::bit_cast<uint32_t>(halfToFloat(f16[i])))
        << i;
  }
}

double siluRef(double x) { return x / (1 + std::exp(-x)); }

TEST(CpuKernels, SiluAndItsGradient) {
  Vec x = randomVec(1000, 2, 8.0f), dy = randomVec(1000, 3);
  Vec y(x.size()), dx(x.size(), 0.5f);
  launch(kernels::kSiluFwd, makeParams({{"n", 1000}}), {buf(x), buf(y)});
  launch(kernels::kSiluBwd, makeParams({{"n", 1000}, {"accumulate", 1}}),
         {buf(dy), buf(x), buf(dx)});
  DVec wantY(x.size()), wantDx(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    wantY[i] = siluRef(x[i]);
    double h = 1e-6;
    wantDx[i] = 0.5 + dy[i] * (siluRef(x[i] + h) - siluRef(x[i] - h)) / (2 * h);
  }
  expectClose(y, wantY, 1e-6, 1e-7, "silu");
  expectClose(dx, wantDx, 1e-5, 1e-6, "silu_bwd");
}

TEST(CpuKernels, AddMulFillAndScalarBinary) {
  Vec a = randomVec(77, 4), b = randomVec(77, 5), sum(77), product(77);
  launch(kernels::kAdd, makeParams({{"n", 77}}), {buf(a), buf(b), buf(sum)});
  launch(kernels::kMul, makeParams({{"n", 77}}),
         {buf(a), buf(b), buf(product)});
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(sum[i], a[i] + b[i]);
    EXPECT_EQ(product[i], a[i] * b[i]);
  }
  Vec before = a; // in place: y aliases a and b
  launch(kernels::kMul, makeParams({{"n", 77}}), {buf(a), buf(a), buf(a)});
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_EQ(a[i], before[i] * before[i]);
  launch(kernels::kFill, makeParams({{"n", 77}, {"value", -2.5}}), {buf(sum)});
  EXPECT_EQ(sum, Vec(77, -2.5f));
  float x = 3, y = 4, out = 0;
  for (auto [op, want] : {std::pair{"add", 7.0f},
                          {"sub", -1.0f},
                          {"mul", 12.0f},
                          {"div", 0.75f}}) {
    launch(kernels::kScalarBinary, makeParams({{"op", op}}),
           {one(x), one(y), one(out)});
    EXPECT_EQ(out, want) << op;
  }
}

//===----------------------------------------------------------------------===//
// rms_norm and rope
//===----------------------------------------------------------------------===//

DVec rmsNormRef(const DVec &x, const DVec &w, int64_t rows, int64_t hidden,
                double eps) {
  DVec y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0;
    for (int64_t i = 0; i < hidden; ++i)
      sum += x[size_t(r * hidden + i)] * x[size_t(r * hidden + i)];
    double inverse = 1 / std::sqrt(sum / double(hidden) + eps);
    for (int64_t i = 0; i < hidden; ++i)
      y[size_t(r * hidden + i)] =
          w[size_t(i)] * x[size_t(r * hidden + i)] * inverse;
  }
  return y;
}

TEST(CpuKernels, RmsNormAndItsGradient) {
  const int64_t rows = 5, hidden = 24;
  const double eps = 1e-5;
  Vec x = randomVec(rows * hidden, 6, 3.0f), dy = randomVec(rows * hidden, 7);
  x[0] = 0; // a zero element
  Vec w32 = randomVec(hidden, 8);
  std::vector<uint16_t> wBf16(hidden);
  for (int64_t i = 0; i < hidden; ++i)
    wBf16[size_t(i)] = floatToBf16(w32[size_t(i)]),
    w32[size_t(i)] = bf16ToFloat(wBf16[size_t(i)]);
  KernelParams params = makeParams({{"rows", rows},
                                    {"hidden", hidden},
                                    {"eps", eps},
                                    {"w_dtype", "BF16"},
                                    {"accumulate", 1}});
  Vec y(x.size()), dx(x.size(), 1.0f);
  launch(kernels::kRmsNormFwd, params, {buf(x), buf(wBf16), buf(y)});
  launch(kernels::kRmsNormBwd, params, {buf(dy), buf(x), buf(wBf16), buf(dx)});
  DVec w = toDouble(w32);
  expectClose(y, rmsNormRef(toDouble(x), w, rows, hidden, eps), 1e-6, 1e-6,
              "rms_norm_fwd");
  DVec want = finiteDifferences(toDouble(x), [&](const DVec &xs) {
    return dot(toDouble(dy), rmsNormRef(xs, w, rows, hidden, eps));
  });
  for (double &g : want)
    g += 1.0;
  expectClose(dx, want, 1e-5, 1e-5, "rms_norm_bwd");
}

struct RopeConfig {
  double theta = 10000;
  bool llama3 = false;
  double factor = 8, low = 1, high = 4, original = 1024;

  KernelParams params(int64_t batch, int64_t seq, int64_t heads, int64_t dim,
                      bool inverse) const {
    KernelParams p = makeParams({{"batch", batch},
                                 {"seq", seq},
                                 {"heads", heads},
                                 {"head_dim", dim},
                                 {"theta", theta},
                                 {"inverse", int(inverse)},
                                 {"rope_type", llama3 ? "llama3" : "default"}});
    if (llama3) {
      p.set("factor", factor);
      p.set("low_freq_factor", low);
      p.set("high_freq_factor", high);
      p.set("original_max_position", int64_t(original));
    }
    return p;
  }
};

DVec ropeRef(const DVec &x, const RopeConfig &c, int64_t batch, int64_t seq,
             int64_t heads, int64_t dim) {
  int64_t half = dim / 2;
  DVec inv(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    double f = std::pow(c.theta, -2.0 * double(i) / double(dim));
    if (c.llama3) {
      double wavelen = 2 * std::numbers::pi / f;
      if (wavelen > c.original / c.low) {
        f /= c.factor;
      } else if (wavelen >= c.original / c.high) {
        double smooth = (c.original / wavelen - c.low) / (c.high - c.low);
        f = (1 - smooth) * f / c.factor + smooth * f;
      }
    }
    inv[size_t(i)] = f;
  }
  DVec y(x.size());
  for (int64_t row = 0; row < batch * seq * heads; ++row) {
    double pos = double(row / heads % seq);
    for (int64_t i = 0; i < half; ++i) {
      double cs = std::cos(pos * inv[size_t(i)]),
             sn = std::sin(pos * inv[size_t(i)]);
      double x1 = x[size_t(row * dim + i)],
             x2 = x[size_t(row * dim + i + half)];
      y[size_t(row * dim + i)] = x1 * cs - x2 * sn;
      y[size_t(row * dim + i + half)] = x2 * cs + x1 * sn;
    }
  }
  return y;
}

TEST(CpuKernels, RopeMatchesTransformersDefaultAndLlama3) {
  const int64_t batch = 2, seq = 13, heads = 3, dim = 16;
  Vec x = randomVec(batch * seq * heads * dim, 9);
  RopeConfig configs[2];
  configs[1].llama3 = true; // dims 0-3 high, 4 medium, 5-7 low frequency
  for (const RopeConfig &config : configs) {
    Vec y(x.size());
    launch(kernels::kRope, config.params(batch, seq, heads, dim, false),
           {buf(x), buf(y)});
    expectClose(y, ropeRef(toDouble(x), config, batch, seq, heads, dim), 1e-5,
                2e-6, config.llama3 ? "llama3" : "default");
    // In place gives the same result.
    Vec inPlace = x;
    launch(kernels::kRope, config.params(batch, seq, heads, dim, false),
           {buf(inPlace), buf(inPlace)});
    EXPECT_TRUE(sameBits(inPlace, y));
  }
}

TEST(CpuKernels, RopeInverseIsTheTranspose) {
  const int64_t batch = 1, seq = 40, heads = 2, dim = 32;
  Vec x = randomVec(batch * seq * heads * dim, 10);
  Vec u = randomVec(x.size(), 11);
  for (bool llama3 : {false, true}) {
    RopeConfig config;
    config.llama3 = llama3;
    config.theta = 500000;
    Vec rx(x.size()), ru(x.size());
    launch(kernels::kRope, config.params(batch, seq, heads, dim, false),
           {buf(x), buf(rx)});
    launch(kernels::kRope, config.params(batch, seq, heads, dim, true),
           {buf(u), buf(ru)});
    double lhs = dot(toDouble(rx), toDouble(u));
    double rhs = dot(toDouble(x), toDouble(ru));
    EXPECT_NEAR(lhs, rhs, 1e-5 * std::max(1.0, std::fabs(lhs)));
    // And rotating back undoes the rotation.
    Vec back(x.size());
    launch(kernels::kRope, config.params(batch, seq, heads, dim, true),
           {buf(rx), buf(back)});
    expectClose(back, toDouble(x), 1e-5, 1e-6, "inverse(rope(x))");
  }
}

//===----------------------------------------------------------------------===//
// GEMM and the linear kernels
//===----------------------------------------------------------------------===//

/// C[m x n] = A[m x k] · B[k x n], all row-major, in double.
DVec matmulRef(const DVec &a, const DVec &b, int64_t m, int64_t n, int64_t k) {
  DVec c(size_t(m * n), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t p = 0; p < k; ++p)
      for (int64_t j = 0; j < n; ++j)
        c[size_t(i * n + j)] += a[size_t(i * k + p)] * b[size_t(p * n + j)];
  return c;
}

DVec transposeRef(const DVec &a, int64_t rows, int64_t cols) {
  DVec t(a.size());
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      t[size_t(j * rows + i)] = a[size_t(i * cols + j)];
  return t;
}

TEST(CpuGemm, BlockedStridedProductMatchesNaive) {
  // Crosses every blocking boundary (MR 6, NR 16, MC 96, KC 256, NC 256).
  const int64_t m = 150, n = 300, k = 600;
  Vec a = randomVec(size_t(m * k), 12), bT = randomVec(size_t(n * k), 13);
  DVec want = matmulRef(toDouble(a), transposeRef(toDouble(bT), n, k), m, n, k);
  for (bool portable : {false, true}) {
    Vec c(size_t(m * n), 1.0f);
    detail::GemmSpec spec{m,        n, k, {a.data(), k, 1}, {bT.data(), 1, k},
                          c.data(), n};
    spec.alpha = 0.5f;
    spec.accumulate = true;
    spec.portable = portable;
    detail::gemm(spec, pool<4>());
    DVec scaled = want;
    for (double &v : scaled)
      v = 1 + 0.5 * v;
    expectClose(c, scaled, 1e-5, 1e-5, portable ? "portable" : "native");
    Vec serial(size_t(m * n), 1.0f);
    spec.c = serial.data();
    detail::gemmSerial(spec);
    EXPECT_TRUE(sameBits(c, serial));
  }
}

struct LinearCase {
  int64_t rows, in, out, rank;
  const char *wType;
  float scaling = 1.5f;
};

/// Rounds `w` to the weight type and returns the stored bytes.
std::vector<uint16_t> storeWeight(Vec &w, const std::string &type) {
  std::vector<uint16_t> narrow(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    narrow[i] = type == "BF16" ? floatToBf16(w[i]) : floatToHalf(w[i]);
    w[i] = type == "BF16" ? bf16ToFloat(narrow[i]) : halfToFloat(narrow[i]);
  }
  return narrow;
}

KernelParams linearParams(const LinearCase &c, bool accumulate) {
  return makeParams({{"rows", c.rows},
                     {"in", c.in},
                     {"out", c.out},
                     {"rank", c.rank},
                     {"scaling", double(c.scaling)},
                     {"w_dtype", c.wType},
                     {"accumulate", int(accumulate)}});
}

TEST(CpuKernels, LinearForwardAndGradInputMatchPeft) {
  const LinearCase cases[] = {{37, 70, 53, 5, "F32"},
                              {37, 70, 53, 0, "BF16"},
                              {8, 300, 20, 16, "F16"},
                              {129, 33, 270, 3, "BF16"}};
  for (const LinearCase &c : cases) {
    std::string what = std::string(c.wType) + " rank " + std::to_string(c.rank);
    Vec x = randomVec(size_t(c.rows * c.in), 14);
    Vec w = randomVec(size_t(c.out * c.in), 15);
    std::vector<uint16_t> narrow;
    if (std::string(c.wType) != "F32")
      narrow = storeWeight(w, c.wType);
    Arg wArg = narrow.empty() ? buf(w) : buf(narrow);
    Vec a = randomVec(size_t(c.rank * c.in), 16);
    Vec b = randomVec(size_t(c.out * c.rank), 17);
    Vec t(size_t(c.rows * c.rank)), y(size_t(c.rows * c.out));
    Vec dy = randomVec(size_t(c.rows * c.out), 18);
    Vec dt(size_t(c.rows * c.rank)), dx(size_t(c.rows * c.in), 2.0f);
    std::vector<Arg> fwd = {buf(x), wArg}, bwd = {buf(dy), wArg};
    if (c.rank > 0) {
      fwd.insert(fwd.end(), {buf(a), buf(b), buf(t)});
      bwd.insert(bwd.end(), {buf(a), buf(b), buf(dt)});
    }
    fwd.push_back(buf(y));
    bwd.push_back(buf(dx));
    launch(kernels::kLinearFwd, linearParams(c, false), fwd);
    launch(kernels::kLinearGradInput, linearParams(c, true), bwd);

    DVec xd = toDouble(x), wd = toDouble(w), ad = toDouble(a), bd = toDouble(b);
    DVec wantY =
        matmulRef(xd, transposeRef(wd, c.out, c.in), c.rows, c.out, c.in);
    DVec wantDx = matmulRef(toDouble(dy), wd, c.rows, c.in, c.out);
    if (c.rank > 0) {
      DVec wantT =
          matmulRef(xd, transposeRef(ad, c.rank, c.in), c.rows, c.rank, c.in);
      DVec lora = matmulRef(wantT, transposeRef(bd, c.out, c.rank), c.rows,
                            c.out, c.rank);
      for (size_t i = 0; i < wantY.size(); ++i)
        wantY[i] += c.scaling * lora[i];
      DVec wantDt = matmulRef(toDouble(dy), bd, c.rows, c.rank, c.out);
      DVec loraDx = matmulRef(wantDt, ad, c.rows, c.in, c.rank);
      for (size_t i = 0; i < wantDx.size(); ++i)
        wantDx[i] += c.scaling * loraDx[i];
      expectClose(t, wantT, 1e-5, 1e-5, what + " t_ws");
      expectClose(dt, wantDt, 1e-5, 1e-5, what + " dt_ws");
    }
    for (double &v : wantDx)
      v += 2.0; // accumulate = 1
    // Sums of up to 300 fp32 products of size ~1: absolute error ~1e-5.
    expectClose(y, wantY, 1e-5, 5e-5, what + " y");
    expectClose(dx, wantDx, 1e-5, 5e-5, what + " dx");
  }
}

TEST(CpuKernels, LoraGradMatchesPeft) {
  const LinearCase c{45, 70, 90, 6, "F32", 2.0f};
  Vec x = randomVec(size_t(c.rows * c.in), 19),
      dy = randomVec(size_t(c.rows * c.out), 20);
  Vec a = randomVec(size_t(c.rank * c.in), 21),
      b = randomVec(size_t(c.out * c.rank), 22);
  DVec t = matmulRef(toDouble(x), transposeRef(toDouble(a), c.rank, c.in),
                     c.rows, c.rank, c.in);
  DVec dt = matmulRef(toDouble(dy), toDouble(b), c.rows, c.rank, c.out);
  Vec tf(t.begin(), t.end()), dtf(dt.begin(), dt.end());
  Vec da(a.size(), 0.25f), db(b.size(), -1.0f);
  for (bool accumulate : {false, true})
    launch(
        kernels::kLoraGrad, linearParams(c, accumulate),
        {buf(dy), buf(x), buf(a), buf(b), buf(tf), buf(dtf), buf(da), buf(db)});
  // da = s * dtᵀ x, db = s * dyᵀ t; run twice, the second accumulating.
  DVec wantDa = matmulRef(transposeRef(toDouble(dtf), c.rows, c.rank),
                          toDouble(x), c.rank, c.in, c.rows);
  DVec wantDb = matmulRef(transposeRef(toDouble(dy), c.rows, c.out),
                          toDouble(tf), c.out, c.rank, c.rows);
  for (double &v : wantDa)
    v *= 2 * c.scaling;
  for (double &v : wantDb)
    v *= 2 * c.scaling;
  expectClose(da, wantDa, 1e-5, 1e-4, "da");
  expectClose(db, wantDb, 1e-5, 1e-4, "db");
}

//===----------------------------------------------------------------------===//
// LoRA dropout
//===----------------------------------------------------------------------===//

/// A LoRA linear's inputs and what its three kernels return.
struct DropoutLinear {
  LinearCase c;
  Vec x, w, a, b, dy;
  Vec y, t, dx, dt, da, db;

  DropoutLinear(LinearCase shape, unsigned seed) : c(shape) {
    x = randomVec(size_t(c.rows * c.in), seed);
    w = randomVec(size_t(c.out * c.in), seed + 1);
    a = randomVec(size_t(c.rank * c.in), seed + 2);
    b = randomVec(size_t(c.out * c.rank), seed + 3);
    dy = randomVec(size_t(c.rows * c.out), seed + 4);
  }

  /// linear_fwd, linear_grad_input and lora_grad (reading the workspaces
  /// the first two leave) at `step`; without dropout parameters when p < 0.
  void run(double p, const std::string &stream, int64_t step,
           int64_t seed = 3) {
    y.assign(size_t(c.rows * c.out), 0);
    t.assign(size_t(c.rows * c.rank), 0);
    dx.assign(size_t(c.rows * c.in), 0);
    dt.assign(size_t(c.rows * c.rank), 0);
    da.assign(a.size(), 0);
    db.assign(b.size(), 0);
    auto params = [&](bool accumulate) {
      KernelParams result = linearParams(c, accumulate);
      if (p >= 0) {
        result.set("dropout", p);
        result.set("dropout_stream", stream);
        result.set("dropout_seed", seed);
      }
      return result;
    };
    std::vector<Arg> fwd = {buf(x), buf(w), buf(a), buf(b), buf(t), buf(y)};
    std::vector<Arg> bwd = {buf(dy), buf(w), buf(a), buf(b), buf(dt), buf(dx)};
    std::vector<Arg> grad = {buf(dy), buf(x),  buf(a),  buf(b),
                             buf(t),  buf(dt), buf(da), buf(db)};
    if (p > 0)
      for (std::vector<Arg> *args : {&fwd, &bwd, &grad})
        args->push_back(one(step));
    launch(kernels::kLinearFwd, params(false), fwd);
    launch(kernels::kLinearGradInput, params(false), bwd);
    launch(kernels::kLoraGrad, params(false), grad);
  }
};

/// The mask factors (0 or 1/(1 − p)) of a [rows, in] input at `step`, read
/// off linear_grad_input with W = 0, A = 1, B = 1 and dy = 1/out, where
/// dx = mask exactly.
Vec dropoutMask(int64_t rows, int64_t in, double p, const std::string &stream,
                int64_t step, int64_t seed = 3) {
  LinearCase c{rows, in, 4, 1, "F32", 1.0f};
  Vec w(size_t(4 * in), 0.0f), a(size_t(in), 1.0f), b(4, 1.0f);
  Vec dy(size_t(rows * 4), 0.25f), dt(size_t(rows), 0.0f);
  Vec dx(size_t(rows * in), 0.0f);
  KernelParams params = linearParams(c, false);
  params.set("dropout", p);
  params.set("dropout_stream", stream);
  params.set("dropout_seed", seed);
  launch(kernels::kLinearGradInput, params,
         {buf(dy), buf(w), buf(a), buf(b), buf(dt), buf(dx), one(step)});
  return dx;
}

TEST(CpuLoraDropout, DropsAboutPAndScalesTheRestByInverseKeep) {
  const double p = 0.3;
  Vec mask = dropoutMask(64, 256, p, "q.lora_A.weight#0", 1);
  float keep = float(1.0 / (1.0 - p));
  size_t dropped = 0;
  for (float m : mask) {
    ASSERT_TRUE(m == 0.0f || m == keep) << m;
    dropped += m == 0.0f;
  }
  // 16384 draws: the standard deviation of the fraction is 0.0036.
  EXPECT_NEAR(double(dropped) / double(mask.size()), p, 0.02);
}

TEST(CpuLoraDropout, SameStepAndStreamSameMaskOtherwiseFresh) {
  const double p = 0.25;
  Vec base = dropoutMask(16, 64, p, "q.lora_A.weight#0", 3);
  EXPECT_TRUE(sameBits(base, dropoutMask(16, 64, p, "q.lora_A.weight#0", 3)));
  EXPECT_FALSE(sameBits(base, dropoutMask(16, 64, p, "q.lora_A.weight#0", 4)));
  EXPECT_FALSE(sameBits(base, dropoutMask(16, 64, p, "q.lora_A.weight#1", 3)));
  EXPECT_FALSE(sameBits(base, dropoutMask(16, 64, p, "k.lora_A.weight#0", 3)));
  EXPECT_FALSE(
      sameBits(base, dropoutMask(16, 64, p, "q.lora_A.weight#0", 3, 4)));
}

TEST(CpuLoraDropout, ForwardAndBothGradientsSeeTheSameMask) {
  const LinearCase c{9, 20, 11, 3, "F32", 2.0f};
  const double p = 0.4;
  const std::string stream = "layers.0.q_proj.lora_A.weight#1";
  const int64_t step = 5;
  DropoutLinear linear(c, 31);
  linear.run(p, stream, step);
  DVec mask = toDouble(dropoutMask(c.rows, c.in, p, stream, step));

  // The references, with the mask read off independently.
  DVec xd = toDouble(linear.x);
  for (size_t i = 0; i < xd.size(); ++i)
    xd[i] *= mask[i];
  DVec ad = toDouble(linear.a), bd = toDouble(linear.b);
  DVec wantT =
      matmulRef(xd, transposeRef(ad, c.rank, c.in), c.rows, c.rank, c.in);
  DVec wantDa = matmulRef(transposeRef(toDouble(linear.dt), c.rows, c.rank), xd,
                          c.rank, c.in, c.rows);
  for (double &v : wantDa)
    v *= c.scaling;
  expectClose(linear.t, wantT, 1e-5, 1e-5, "t_ws = dropout(x)·Aᵀ");
  expectClose(linear.da, wantDa, 1e-5, 1e-5, "da");

  // Finite differences of the forward kernel at the same step: the loss
  // sum(dy ⊙ y) is linear in x and in A (and in B), so central differences
  // with a large step are exact up to fp32 rounding.
  auto lossOf = [&](const Vec &x, const Vec &a, const Vec &b) {
    Vec y(size_t(c.rows * c.out)), t(size_t(c.rows * c.rank));
    Vec xc = x, wc = linear.w, ac = a, bc = b;
    KernelParams params = linearParams(c, false);
    params.set("dropout", p);
    params.set("dropout_stream", stream);
    params.set("dropout_seed", int64_t(3));
    int64_t s = step;
    launch(kernels::kLinearFwd, params,
           {buf(xc), buf(wc), buf(ac), buf(bc), buf(t), buf(y), one(s)});
    double loss = 0;
    for (size_t i = 0; i < y.size(); ++i)
      loss += double(linear.dy[i]) * double(y[i]);
    return loss;
  };
  auto numeric = [&](const Vec &v,
                     const std::function<double(const Vec &)> &f) {
    Vec probe = v;
    DVec grad(v.size());
    const float h = 0.0625f;
    for (size_t i = 0; i < v.size(); ++i) {
      float saved = probe[i];
      probe[i] = saved + h;
      double up = f(probe);
      probe[i] = saved - h;
      double down = f(probe);
      probe[i] = saved;
      grad[i] = (up - down) / (2 * double(h));
    }
    return grad;
  };
  DVec fdX = numeric(
      linear.x, [&](const Vec &x) { return lossOf(x, linear.a, linear.b); });
  DVec fdA = numeric(
      linear.a, [&](const Vec &a) { return lossOf(linear.x, a, linear.b); });
  DVec fdB = numeric(
      linear.b, [&](const Vec &b) { return lossOf(linear.x, linear.a, b); });
  expectClose(linear.dx, fdX, 1e-3, 1e-3, "dx vs finite differences");
  expectClose(linear.da, fdA, 1e-3, 1e-3, "da vs finite differences");
  expectClose(linear.db, fdB, 1e-3, 1e-3, "db vs finite differences");
  // Dropout actually changed something: some x columns get no LoRA gradient.
  DVec fdXNoLora = numeric(linear.x, [&](const Vec &x) {
    Vec zeroB(linear.b.size(), 0.0f);
    return lossOf(x, linear.a, zeroB);
  });
  size_t differs = 0;
  for (size_t i = 0; i < fdX.size(); ++i)
    differs += std::fabs(fdX[i] - fdXNoLora[i]) > 1e-3;
  EXPECT_GT(differs, 0u);
  EXPECT_LT(differs, fdX.size());
}

TEST(CpuLoraDropout, ZeroDropoutIsBitForBitTheKernelsWithout) {
  const LinearCase c{37, 70, 53, 5, "F32", 1.5f};
  DropoutLinear without(c, 41), zero(c, 41);
  without.run(-1, "", 0);
  zero.run(0.0, "q.lora_A.weight#0", 7);
  EXPECT_TRUE(sameBits(without.y, zero.y));
  EXPECT_TRUE(sameBits(without.t, zero.t));
  EXPECT_TRUE(sameBits(without.dx, zero.dx));
  EXPECT_TRUE(sameBits(without.dt, zero.dt));
  EXPECT_TRUE(sameBits(without.da, zero.da));
  EXPECT_TRUE(sameBits(without.db, zero.db));
  // And dropout > 0 does change the result.
  DropoutLinear dropped(c, 41);
  dropped.run(0.1, "q.lora_A.weight#0", 7);
  EXPECT_FALSE(sameBits(without.y, dropped.y));
}

TEST(CpuLoraDropout, ValidateWantsTheStreamSeedAndStep) {
  const LinearCase c{4, 8, 8, 2, "F32", 2.0f};
  Vec x(32), w(64), a(16), b(16), t(8), y(32);
  int64_t step = 1;
  KernelParams params = linearParams(c, false);
  params.set("dropout", 0.1);
  params.set("dropout_seed", int64_t(0));
  EXPECT_EQ(
      validate(kernels::kLinearFwd, params,
               {buf(x), buf(w), buf(a), buf(b), buf(t), buf(y), one(step)}),
      "linear_fwd: missing parameter 'dropout_stream' (expected a "
      "non-empty string)");
  params.set("dropout_stream", std::string("q#0"));
  EXPECT_EQ(
      validate(kernels::kLinearFwd, params,
               {buf(x), buf(w), buf(a), buf(b), buf(t), buf(y), one(step)}),
      "");
  EXPECT_NE(validate(kernels::kLinearFwd, params,
                     {buf(x), buf(w), buf(a), buf(b), buf(t), buf(y)}),
            "");
  params.set("dropout", 1.0);
  EXPECT_EQ(
      validate(kernels::kLinearFwd, params,
               {buf(x), buf(w), buf(a), buf(b), buf(t), buf(y), one(step)}),
      "linear_fwd: parameter 'dropout' must be in [0, 1), found "
      "1.000000");
}

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

struct AttentionCase {
  int64_t batch, seq, heads, kvHeads, dim;
  bool causal;
  double scale() const { return 1 / std::sqrt(double(dim)); }
  size_t qSize() const { return size_t(batch * seq * heads * dim); }
  size_t kvSize() const { return size_t(batch * seq * kvHeads * dim); }
  size_t at(int64_t b, int64_t s, int64_t h, int64_t n, int64_t d) const {
    return size_t(((b * seq + s) * n + h) * dim + d);
  }
  KernelParams params(bool accumulate = false) const {
    return makeParams({{"batch", batch},
                       {"seq", seq},
                       {"heads", heads},
                       {"kv_heads", kvHeads},
                       {"head_dim", dim},
                       {"scale", scale()},
                       {"causal", int(causal)},
                       {"accumulate", int(accumulate)}});
  }
};

/// Softmax probabilities of query row i of head h (keys past the mask are 0).
DVec attentionRow(const AttentionCase &c, const DVec &q, const DVec &k,
                  int64_t b, int64_t h, int64_t i) {
  int64_t g = h / (c.heads / c.kvHeads), keys = c.causal ? i + 1 : c.seq;
  DVec p(size_t(c.seq), 0.0);
  double max = -INFINITY, sum = 0;
  for (int64_t j = 0; j < keys; ++j) {
    double s = 0;
    for (int64_t d = 0; d < c.dim; ++d)
      s += q[c.at(b, i, h, c.heads, d)] * k[c.at(b, j, g, c.kvHeads, d)];
    p[size_t(j)] = s * c.scale();
    max = std::max(max, p[size_t(j)]);
  }
  for (int64_t j = 0; j < keys; ++j)
    sum += p[size_t(j)] = std::exp(p[size_t(j)] - max);
  for (int64_t j = 0; j < keys; ++j)
    p[size_t(j)] /= sum;
  return p;
}

DVec attentionRef(const AttentionCase &c, const DVec &q, const DVec &k,
                  const DVec &v) {
  DVec o(c.qSize(), 0.0);
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.heads; ++h)
      for (int64_t i = 0; i < c.seq; ++i) {
        DVec p = attentionRow(c, q, k, b, h, i);
        int64_t g = h / (c.heads / c.kvHeads);
        for (int64_t j = 0; j < c.seq; ++j)
          for (int64_t d = 0; d < c.dim; ++d)
            o[c.at(b, i, h, c.heads, d)] +=
                p[size_t(j)] * v[c.at(b, j, g, c.kvHeads, d)];
      }
  return o;
}

/// The textbook softmax-attention backward pass, in double.
void attentionBwdRef(const AttentionCase &c, const DVec &dO, const DVec &q,
                     const DVec &k, const DVec &v, DVec &dq, DVec &dk,
                     DVec &dv) {
  dq.assign(c.qSize(), 0.0), dk.assign(c.kvSize(), 0.0),
      dv.assign(c.kvSize(), 0.0);
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.heads; ++h)
      for (int64_t i = 0; i < c.seq; ++i) {
        DVec p = attentionRow(c, q, k, b, h, i), dp(p.size(), 0.0);
        int64_t g = h / (c.heads / c.kvHeads);
        double rowDot = 0;
        for (int64_t j = 0; j < c.seq; ++j) {
          for (int64_t d = 0; d < c.dim; ++d)
            dp[size_t(j)] +=
                dO[c.at(b, i, h, c.heads, d)] * v[c.at(b, j, g, c.kvHeads, d)];
          rowDot += p[size_t(j)] * dp[size_t(j)];
        }
        for (int64_t j = 0; j < c.seq; ++j) {
          double ds = p[size_t(j)] * (dp[size_t(j)] - rowDot) * c.scale();
          for (int64_t d = 0; d < c.dim; ++d) {
            dq[c.at(b, i, h, c.heads, d)] +=
                ds * k[c.at(b, j, g, c.kvHeads, d)];
            dk[c.at(b, j, g, c.kvHeads, d)] +=
                ds * q[c.at(b, i, h, c.heads, d)];
            dv[c.at(b, j, g, c.kvHeads, d)] +=
                p[size_t(j)] * dO[c.at(b, i, h, c.heads, d)];
          }
        }
      }
}

TEST(CpuKernels, AttentionReferenceBackwardMatchesFiniteDifferences) {
  // Validates the analytic reference that the kernel is then compared with.
  for (bool causal : {true, false}) {
    AttentionCase c{1, 5, 4, 2, 3, causal};
    DVec q = toDouble(randomVec(c.qSize(), 23)),
         k = toDouble(randomVec(c.kvSize(), 24));
    DVec v = toDouble(randomVec(c.kvSize(), 25)),
         dO = toDouble(randomVec(c.qSize(), 26));
    DVec dq, dk, dv;
    attentionBwdRef(c, dO, q, k, v, dq, dk, dv);
    auto loss = [&](const DVec &qs, const DVec &ks, const DVec &vs) {
      return dot(dO, attentionRef(c, qs, ks, vs));
    };
    DVec fdQ =
        finiteDifferences(q, [&](const DVec &x) { return loss(x, k, v); });
    DVec fdK =
        finiteDifferences(k, [&](const DVec &x) { return loss(q, x, v); });
    DVec fdV =
        finiteDifferences(v, [&](const DVec &x) { return loss(q, k, x); });
    for (size_t i = 0; i < dq.size(); ++i)
      EXPECT_NEAR(dq[i], fdQ[i], 1e-7);
    for (size_t i = 0; i < dk.size(); ++i) {
      EXPECT_NEAR(dk[i], fdK[i], 1e-7);
      EXPECT_NEAR(dv[i], fdV[i], 1e-7);
    }
  }
}

TEST(CpuKernels, GroupedQueryAttentionForwardAndBackward) {
  // seq 70 crosses the kernel's 64-row blocks.
  for (AttentionCase c : {AttentionCase{2, 70, 4, 2, 8, true},
                          AttentionCase{1, 70, 4, 2, 8, false},
                          AttentionCase{2, 9, 4, 4, 16, true}}) {
    std::string what = "seq " + std::to_string(c.seq) +
                       (c.causal ? " causal" : " full") + " kv " +
                       std::to_string(c.kvHeads);
    Vec q = randomVec(c.qSize(), 27, 2.0f), k = randomVec(c.kvSize(), 28, 2.0f);
    Vec v = randomVec(c.kvSize(), 29), dO = randomVec(c.qSize(), 30);
    Vec o(c.qSize());
    launch(kernels::kAttentionFwd, c.params(),
           {buf(q), buf(k), buf(v), buf(o)});
    expectClose(o, attentionRef(c, toDouble(q), toDouble(k), toDouble(v)), 1e-5,
                1e-6, what + " o");
    DVec dq, dk, dv;
    attentionBwdRef(c, toDouble(dO), toDouble(q), toDouble(k), toDouble(v), dq,
                    dk, dv);
    for (bool accumulate : {false, true}) {
      float base = accumulate ? 0.5f : 0.0f;
      Vec gq(c.qSize(), base), gk(c.kvSize(), base), gv(c.kvSize(), base);
      if (!accumulate) // garbage that must be overwritten
        gq.assign(gq.size(), NAN), gk.assign(gk.size(), NAN),
            gv.assign(gv.size(), NAN);
      launch(
          kernels::kAttentionBwd, c.params(accumulate),
          {buf(dO), buf(q), buf(k), buf(v), buf(o), buf(gq), buf(gk), buf(gv)});
      auto shifted = [&](DVec g) {
        for (double &x : g)
          x += base;
        return g;
      };
      expectClose(gq, shifted(dq), 1e-4, 1e-5, what + " dq");
      expectClose(gk, shifted(dk), 1e-4, 1e-5, what + " dk");
      expectClose(gv, shifted(dv), 1e-4, 1e-5, what + " dv");
    }
  }
}

//===----------------------------------------------------------------------===//
// Loss
//===----------------------------------------------------------------------===//

/// transformers' ForCausalLMLoss in double: mean (or sum / normalizer) of
/// -log_softmax(logits[b, t])[labels[b, t + 1]] over non-ignored targets.
double crossEntropyRef(const DVec &logits, const std::vector<int32_t> &labels,
                       int64_t batch, int64_t seq, int64_t vocab,
                       double normalizer = 0) {
  double sum = 0;
  int count = 0;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t + 1 < seq; ++t) {
      int32_t label = labels[size_t(b * seq + t + 1)];
      if (label == -100)
        continue;
      const double *x = logits.data() + (b * seq + t) * vocab;
      double max = *std::max_element(x, x + vocab), total = 0;
      for (int64_t j = 0; j < vocab; ++j)
        total += std::exp(x[j] - max);
      sum -= x[label] - max - std::log(total);
      ++count;
    }
  return sum / (normalizer > 0 ? normalizer : count);
}

struct LossCase {
  int64_t batch = 2, seq = 7, vocab = 50;
  std::vector<int32_t> labels = {3,    -100, 7, 49,   0,  -100, 12,
                                 -100, 5,    5, -100, 33, 1,    2};
  KernelParams params(bool normalized) const {
    return makeParams({{"batch", batch},
                       {"seq", seq},
                       {"vocab", vocab},
                       {"ignore_index", -100},
                       {"has_normalizer", int(normalized)}});
  }
};

TEST(CpuKernels, CrossEntropyShiftsLabelsAndSkipsIgnored) {
  LossCase c;
  Vec logits = randomVec(size_t(c.batch * c.seq * c.vocab), 31, 4.0f);
  float loss = 0, count = 0, normalizer = 20;
  launch(kernels::kCrossEntropyFwd, c.params(false),
         {buf(logits), buf(c.labels), one(loss)});
  launch(
      kernels::kCountTargets,
      makeParams({{"batch", c.batch}, {"seq", c.seq}, {"ignore_index", -100}}),
      {buf(c.labels), one(count)});
  EXPECT_EQ(count, 9.0f); // 12 shifted targets, 3 of them ignored
  double want =
      crossEntropyRef(toDouble(logits), c.labels, c.batch, c.seq, c.vocab);
  EXPECT_NEAR(loss, want, 1e-6 * want);
  launch(kernels::kCrossEntropyFwd, c.params(true),
         {buf(logits), buf(c.labels), one(normalizer), one(loss)});
  double wantSum = crossEntropyRef(toDouble(logits), c.labels, c.batch, c.seq,
                                   c.vocab, normalizer);
  EXPECT_NEAR(loss, wantSum, 1e-6 * wantSum);

  // No target at all: 0/0 like torch; a label out of range: NaN, no crash.
  std::vector<int32_t> ignored(c.labels.size(), -100), bad = c.labels;
  bad[4] = 50;
  for (std::vector<int32_t> *labels : {&ignored, &bad}) {
    launch(kernels::kCrossEntropyFwd, c.params(false),
           {buf(logits), buf(*labels), one(loss)});
    EXPECT_TRUE(std::isnan(loss));
  }
  Vec dlogits(logits.size());
  float dloss = 1;
  launch(kernels::kCrossEntropyBwd, c.params(false),
         {buf(logits), buf(bad), one(dloss), buf(dlogits)});
  EXPECT_TRUE(std::isnan(dlogits[size_t(3 * c.vocab)])); // row 3 scores bad[4]
  EXPECT_FALSE(std::isnan(dlogits[0]));
}

TEST(CpuKernels, CrossEntropyGradientMatchesFiniteDifferences) {
  LossCase c;
  Vec logits = randomVec(size_t(c.batch * c.seq * c.vocab), 32, 3.0f);
  for (bool normalized : {false, true}) {
    float dloss = 0.75f, normalizer = 13;
    Vec dlogits(logits.size(), NAN);
    std::vector<Arg> args = {buf(logits), buf(c.labels), one(dloss)};
    if (normalized)
      args.push_back(one(normalizer));
    args.push_back(buf(dlogits));
    launch(kernels::kCrossEntropyBwd, c.params(normalized), args);
    DVec want = finiteDifferences(toDouble(logits), [&](const DVec &x) {
      return 0.75 * crossEntropyRef(x, c.labels, c.batch, c.seq, c.vocab,
                                    normalized ? 13.0 : 0.0);
    });
    expectClose(dlogits, want, 1e-4, 1e-7,
                normalized ? "sum/normalizer" : "mean");
    for (int64_t row : {0, 4, 6, 9, 13}) // ignored targets, last positions
      for (int64_t j = 0; j < c.vocab; ++j)
        ASSERT_EQ(dlogits[size_t(row * c.vocab + j)], 0.0f) << row;
  }
}

//===----------------------------------------------------------------------===//
// Optimizer
//===----------------------------------------------------------------------===//

TEST(CpuKernels, GlobalNormAndClipCoefficient) {
  Vec g0 = randomVec(40000, 33), g1 = randomVec(7, 34, 100.0f);
  float norm = 0;
  launch(kernels::kGlobalNorm,
         makeParams({{"count", 2}, {"sizes", std::vector<int64_t>{40000, 7}}}),
         {buf(g0), buf(g1), one(norm)});
  double want = std::sqrt(dot(toDouble(g0), toDouble(g0)) +
                          dot(toDouble(g1), toDouble(g1)));
  EXPECT_NEAR(norm, want, 1e-6 * want);

  auto clip = [](float n, float maxNorm) {
    float out = -1;
    launch(kernels::kClipCoefficient, {}, {one(n), one(maxNorm), one(out)});
    return out;
  };
  EXPECT_EQ(clip(4.0f, 1.0f), (1.0f / (4.0f + 1e-6f)) * 1.0f);
  EXPECT_EQ(clip(0.5f, 1.0f), 1.0f);
  EXPECT_EQ(clip(4.0f, 0.0f), 1.0f); // clipping off
  EXPECT_TRUE(std::isnan(clip(NAN, 1.0f)));
}

/// torch.optim.AdamW._single_tensor_adamw, one torch op per line, with the
/// roundings of torch's CPU kernels (see OptimizerKernels.cpp).
void torchAdamWStep(Vec &p, const Vec &grad, Vec &m, Vec &v, float gradScale,
                    double lr, int64_t step, double wd, double beta1,
                    double beta2, double eps) {
  double bc1 = 1 - std::pow(beta1, double(step));
  double bc2 = 1 - std::pow(beta2, double(step));
  double stepSize = lr / bc1, bc2Sqrt = std::sqrt(bc2);
  for (size_t i = 0; i < p.size(); ++i) {
    float g = grad[i] * gradScale;    // grad.mul_(clip_coef)
    p[i] = p[i] * float(1 - lr * wd); // param.mul_(1 - lr*wd)
    auto w = float(1 - beta1);        // exp_avg.lerp_(grad, w)
    m[i] = std::fabs(w) < 0.5f ? std::fma(w, g - m[i], m[i])
                               : std::fma(w - 1.0f, g - m[i], g);
    v[i] = v[i] * float(beta2);                     // exp_avg_sq.mul_(beta2)
    v[i] = v[i] + float(1 - beta2) * g * g;         // .addcmul_(g, g, 1-beta2)
    float denom = std::sqrt(v[i]) / float(bc2Sqrt); // (sqrt / bc2_sqrt)
    denom = denom + float(eps);                     // .add_(eps)
    p[i] = p[i] + float(-stepSize) * m[i] / denom;  // addcdiv_(m, denom, -ss)
  }
}

TEST(CpuKernels, AdamWFollowsTorchForThreeSteps) {
  for (double beta1 : {0.9, 0.3}) { // lerp weight below and above 0.5
    const double beta2 = 0.999, eps = 1e-8;
    const int64_t n = 1000;
    Vec p = randomVec(n, 35), m(n, 0.0f), v(n, 0.0f);
    Vec wantP = p, wantM = m, wantV = v;
    DVec pd = toDouble(p), md(n, 0.0), vd(n, 0.0);
    float gradScale = 0.5f, lr = 1e-3f, weightDecay = 0.01f;
    KernelParams params = makeParams(
        {{"n", n}, {"beta1", beta1}, {"beta2", beta2}, {"epsilon", eps}});
    for (int64_t step = 1; step <= 3; ++step) {
      Vec grad = randomVec(n, unsigned(36 + step), 2.0f);
      Vec before = p;
      launch(kernels::kAdamW, params,
             {buf(p), buf(grad), buf(m), buf(v), one(gradScale), one(lr),
              one(step), one(weightDecay)});
      torchAdamWStep(wantP, grad, wantM, wantV, gradScale, lr, step,
                     weightDecay, beta1, beta2, eps);
      if (step == 1) { // m/bc1 = g and v/bc2 = g^2: every p moves by ~lr
        for (size_t i = 0; i < p.size(); ++i)
          ASSERT_NEAR(std::fabs(p[i] - before[i] * (1 - lr * weightDecay)), lr,
                      1e-6);
      }
      // The same recurrences in double, from the formulas of the paper.
      for (size_t i = 0; i < pd.size(); ++i) {
        double g = double(grad[i]) * gradScale;
        pd[i] *= 1 - double(lr) * weightDecay;
        md[i] = beta1 * md[i] + (1 - beta1) * g;
        vd[i] = beta2 * vd[i] + (1 - beta2) * g * g;
        double mHat = md[i] / (1 - std::pow(beta1, step));
        double vHat = vd[i] / (1 - std::pow(beta2, step));
        pd[i] -= lr * mHat / (std::sqrt(vHat) + eps);
      }
    }
    EXPECT_TRUE(sameBits(p, wantP));
    EXPECT_TRUE(sameBits(m, wantM));
    EXPECT_TRUE(sameBits(v, wantV));
    expectClose(p, pd, 1e-6, 1e-7, "p against double");
  }
}

//===----------------------------------------------------------------------===//
// Thread-count independence
//===----------------------------------------------------------------------===//

/// Runs `body(pool)` with 1 and with 4 threads and expects the same bits in
/// every output it returns.
void expectSameBitsAcrossThreadCounts(
    const std::string &what,
    const std::function<std::vector<Vec>(ThreadPool &)> &body) {
  std::vector<Vec> one = body(pool<1>()), four = body(pool<4>());
  ASSERT_EQ(one.size(), four.size());
  for (size_t i = 0; i < one.size(); ++i)
    EXPECT_TRUE(sameBits(one[i], four[i])) << what << " output " << i;
}

TEST(CpuKernels, ResultsDoNotDependOnThreadCount) {
  LinearCase c{200, 300, 520, 8, "BF16"};
  Vec x = randomVec(size_t(c.rows * c.in), 40),
      w = randomVec(size_t(c.out * c.in), 41);
  std::vector<uint16_t> w16 = storeWeight(w, "BF16");
  Vec a = randomVec(size_t(c.rank * c.in), 42),
      b = randomVec(size_t(c.out * c.rank), 43);
  Vec dy = randomVec(size_t(c.rows * c.out), 44);
  expectSameBitsAcrossThreadCounts("linear", [&](ThreadPool &pool) {
    Vec t(size_t(c.rows * c.rank)), y(size_t(c.rows * c.out)), dt(t.size());
    Vec dx(x.size()), da(a.size()), db(b.size());
    launch(kernels::kLinearFwd, linearParams(c, false),
           {buf(x), buf(w16), buf(a), buf(b), buf(t), buf(y)}, pool);
    launch(kernels::kLinearGradInput, linearParams(c, false),
           {buf(dy), buf(w16), buf(a), buf(b), buf(dt), buf(dx)}, pool);
    launch(kernels::kLoraGrad, linearParams(c, false),
           {buf(dy), buf(x), buf(a), buf(b), buf(t), buf(dt), buf(da), buf(db)},
           pool);
    return std::vector<Vec>{t, y, dt, dx, da, db};
  });

  AttentionCase att{2, 130, 4, 2, 16, true};
  Vec q = randomVec(att.qSize(), 45), k = randomVec(att.kvSize(), 46);
  Vec v = randomVec(att.kvSize(), 47), dO = randomVec(att.qSize(), 48);
  expectSameBitsAcrossThreadCounts("attention", [&](ThreadPool &pool) {
    Vec o(att.qSize()), dq(o.size()), dk(k.size()), dv(v.size());
    launch(kernels::kAttentionFwd, att.params(),
           {buf(q), buf(k), buf(v), buf(o)}, pool);
    launch(kernels::kAttentionBwd, att.params(),
           {buf(dO), buf(q), buf(k), buf(v), buf(o), buf(dq), buf(dk), buf(dv)},
           pool);
    return std::vector<Vec>{o, dq, dk, dv};
  });

  const int64_t batch = 4, seq = 50, vocab = 1000;
  Vec logits = randomVec(size_t(batch * seq * vocab), 49, 5.0f);
  std::vector<int32_t> labels(size_t(batch * seq));
  for (size_t i = 0; i < labels.size(); ++i)
    labels[i] = i % 7 == 0 ? -100 : int32_t(i * 37 % vocab);
  KernelParams loss = makeParams({{"batch", batch},
                                  {"seq", seq},
                                  {"vocab", vocab},
                                  {"ignore_index", -100},
                                  {"has_normalizer", 0}});
  Vec g0 = randomVec(100000, 50), g1 = randomVec(33333, 51);
  Vec grad = randomVec(70000, 52);
  Vec xs = randomVec(64 * 300, 53), ws = randomVec(300, 54);
  expectSameBitsAcrossThreadCounts("loss, norms, adamw", [&](ThreadPool &pool) {
    Vec out(1), dlogits(logits.size()), norm(1), y(xs.size()), ry(xs.size());
    float dloss = 1;
    launch(kernels::kCrossEntropyFwd, loss,
           {buf(logits), buf(labels), buf(out)}, pool);
    launch(kernels::kCrossEntropyBwd, loss,
           {buf(logits), buf(labels), one(dloss), buf(dlogits)}, pool);
    launch(kernels::kGlobalNorm,
           makeParams(
               {{"count", 2}, {"sizes", std::vector<int64_t>{100000, 33333}}}),
           {buf(g0), buf(g1), buf(norm)}, pool);
    launch(
        kernels::kRmsNormFwd,
        makeParams(
            {{"rows", 64}, {"hidden", 300}, {"eps", 1e-6}, {"w_dtype", "F32"}}),
        {buf(xs), buf(ws), buf(y)}, pool);
    RopeConfig rope;
    launch(kernels::kRope, rope.params(2, 32, 3, 100, false),
           {buf(xs), buf(ry)}, pool);
    Vec p = grad, m(grad.size(), 0.1f), v(grad.size(), 0.2f);
    float scale = 0.7f, lr = 2e-4f, wd = 0.1f;
    int64_t step = 5;
    launch(kernels::kAdamW,
           makeParams({{"n", 70000},
                       {"beta1", 0.9},
                       {"beta2", 0.999},
                       {"epsilon", 1e-8}}),
           {buf(p), buf(grad), buf(m), buf(v), one(scale), one(lr), one(step),
            one(wd)},
           pool);
    return std::vector<Vec>{out, dlogits, norm, y, ry, p, m, v};
  });
}

} // namespace
} // namespace qlora::cpu
