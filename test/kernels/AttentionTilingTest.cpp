//===- AttentionTilingTest.cpp - kernels/Attention.cuh run on the host ----===//
//
// Runs the attention templates themselves, unchanged, on the CPU: a block's
// threads are cooperative user contexts (ucontext), __syncthreads and the
// warp shuffles are barriers between them, __shared__ arrays are statics
// (one block runs at a time). Threads switch at barriers and shuffles, to
// a random other thread, mostly of the same warp. T is float. The results are
// compared with a naive attention in double. This checks the tiling, masking,
// online softmax and the two backward phases without a GPU; it says nothing
// about speed, bf16 or the real memory model.
//
//===----------------------------------------------------------------------===//
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <math.h>
#include <memory>
#include <random>
#include <ucontext.h>
#include <vector>

//===- a SIMT emulator, just enough for Attention.cuh ---------------------===//

namespace emu {

struct Dim3 {
  unsigned x = 0, y = 0, z = 0;
};

struct Group {
  int count = 0, arrived = 0;
  unsigned generation = 0;
};

/// The block being run: its threads' contexts and barriers.
struct Block {
  int threads = 0, current = 0, finished = 0;
  ucontext_t scheduler;
  std::vector<ucontext_t> contexts;
  std::vector<std::unique_ptr<char[]>> stacks;
  Group all;
  std::vector<Group> warps;
  std::vector<float> slots;
  std::vector<Dim3> threadIds;
  Dim3 blockId;
  /// What each thread waits for: a group's generation to pass, or (done)
  /// nothing more.
  std::vector<const Group *> waitingOn;
  std::vector<unsigned> waitingFor;
  std::vector<char> done;

  bool runnable(int t) const {
    const Group *group = waitingOn[size_t(t)];
    return !done[size_t(t)] &&
           (!group || group->generation != waitingFor[size_t(t)]);
  }
};

inline Block *block = nullptr;

/// Lets another runnable thread of the block run: mostly one of the same
/// warp, so warps drift apart and a missing barrier shows as a wrong result.
/// Called only by a thread that waits.
inline void yield() {
  static std::mt19937 rng(7);
  const int self = block->current, threads = block->threads;
  const int warpFirst = self / 32 * 32;
  const int warpSize = std::min(32, threads - warpFirst);
  int next = -1;
  for (int tries = 0; tries < 64 && next < 0; ++tries) {
    int candidate = rng() % 8 != 0 ? warpFirst + int(rng() % unsigned(warpSize))
                                   : int(rng() % unsigned(threads));
    if (candidate != self && block->runnable(candidate))
      next = candidate;
  }
  for (int t = 0; t < threads && next < 0; ++t)
    if (t != self && block->runnable(t))
      next = t;
  if (next < 0) {
    std::fprintf(stderr, "emulated block deadlocked (a barrier not every "
                         "thread reaches)\n");
    std::abort();
  }
  block->current = next;
  swapcontext(&block->contexts[size_t(self)], &block->contexts[size_t(next)]);
}

inline void arriveAndWait(Group &group) {
  unsigned generation = group.generation;
  if (++group.arrived == group.count) {
    group.arrived = 0;
    ++group.generation;
    return;
  }
  const int self = block->current;
  block->waitingOn[size_t(self)] = &group;
  block->waitingFor[size_t(self)] = generation;
  while (group.generation == generation)
    yield();
  block->waitingOn[size_t(self)] = nullptr;
}

inline int lane() {
  return int(block->threadIds[size_t(block->current)].x) % 32;
}
inline int warp() {
  return int(block->threadIds[size_t(block->current)].x) / 32;
}

/// `value` of lane `source` of this thread's warp.
inline float shuffle(float value, int source) {
  Group &group = block->warps[size_t(warp())];
  float *slots = &block->slots[size_t(warp()) * 32];
  slots[lane()] = value;
  arriveAndWait(group);
  float result = slots[source & 31];
  arriveAndWait(group);
  return result;
}

} // namespace emu

// What CUDA provides, on the host.
#define threadIdx (emu::block->threadIds[size_t(emu::block->current)])
#define blockIdx (emu::block->blockId)
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
struct float4 {
  float x, y, z, w;
};
inline float __int_as_float(int v) { return std::bit_cast<float>(v); }
inline float __shfl_sync(unsigned, float v, int source) {
  return emu::shuffle(v, source);
}
inline float __shfl_xor_sync(unsigned, float v, int mask) {
  return emu::shuffle(v, emu::lane() ^ mask);
}
inline void __syncthreads() { emu::arriveAndWait(emu::block->all); }
inline int min(int a, int b) { return a < b ? a : b; }

// What Attention.cuh takes from Common.cuh (not included: it needs CUDA).
#define QLORACC_KERNELS_COMMON_CUH
namespace qlora::cuda {
using Index = long long;
constexpr int kWarpSize = 32;
inline float toFloat(float v) { return v; }
template <typename T> T fromFloat(float v);
template <> inline float fromFloat<float>(float v) { return v; }
inline int misalignedLoads = 0;
template <int Width, typename T>
void loadFloats(const T *p, Index i, float (&out)[Width]) {
  if (reinterpret_cast<uintptr_t>(p + i) % (sizeof(T) * Width) != 0)
    ++misalignedLoads;
  for (int k = 0; k < Width; ++k)
    out[k] = p[i + k];
}
struct SumOp {
  float operator()(float a, float b) const { return a + b; }
};
struct MaxOp {
  float operator()(float a, float b) const { return fmaxf(a, b); }
};
template <typename V, typename Op> V warpReduce(V v, Op op) {
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1)
    v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}
} // namespace qlora::cuda

#include "kernels/Attention.cuh"

namespace {

using qlora::cuda::Index;

/// Runs `kernel` on every block of `grid`, `threads` threads each.
template <typename Kernel>
void launch(emu::Dim3 grid, int threads, Kernel kernel) {
  static Kernel *current;
  current = &kernel;
  constexpr size_t kStack = 256 * 1024;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        emu::Block block;
        block.threads = threads;
        block.blockId = {x, y, z};
        block.all.count = threads;
        block.warps.assign(size_t((threads + 31) / 32), emu::Group{32});
        block.slots.assign(size_t(threads), 0.0f);
        block.contexts.resize(size_t(threads));
        block.threadIds.resize(size_t(threads));
        block.waitingOn.assign(size_t(threads), nullptr);
        block.waitingFor.assign(size_t(threads), 0);
        block.done.assign(size_t(threads), 0);
        emu::block = &block;
        for (int t = 0; t < threads; ++t) {
          block.threadIds[size_t(t)] = {unsigned(t), 0, 0};
          block.stacks.emplace_back(new char[kStack]);
          ucontext_t &context = block.contexts[size_t(t)];
          getcontext(&context);
          context.uc_stack.ss_sp = block.stacks.back().get();
          context.uc_stack.ss_size = kStack;
          context.uc_link = nullptr;
          makecontext(
              &context,
              +[] {
                (*current)();
                // Finished: hand over to the others until all are done.
                emu::Block &self = *emu::block;
                self.done[size_t(self.current)] = 1;
                if (++self.finished < self.threads)
                  emu::yield(); // never comes back
                setcontext(&self.scheduler);
              },
              0);
        }
        block.current = 0;
        swapcontext(&block.scheduler, &block.contexts[0]);
        emu::block = nullptr;
      }
}

struct Shape {
  int batch, seq, heads, kvHeads, headDim;
  float scale;
  bool causal;
  int group() const { return heads / kvHeads; }
  size_t at(int b, int s, int h, int n, int d) const {
    return ((size_t(b) * seq + s) * n + h) * headDim + d;
  }
};

struct Reference {
  std::vector<float> o, dq, dk, dv;
};

/// Naive attention and its gradients in double.
Reference reference(const Shape &s, const std::vector<float> &q,
                    const std::vector<float> &k, const std::vector<float> &v,
                    const std::vector<float> &dout) {
  const int D = s.headDim;
  Reference r;
  r.o.assign(q.size(), 0.0f);
  r.dq.assign(q.size(), 0.0f);
  std::vector<double> dk(k.size()), dv(v.size());
  std::vector<double> p(size_t(s.seq)), dp(size_t(s.seq));
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < s.heads; ++h) {
      int g = h / s.group();
      for (int i = 0; i < s.seq; ++i) {
        int keys = s.causal ? i + 1 : s.seq;
        double max = -INFINITY;
        for (int j = 0; j < keys; ++j) {
          double dot = 0;
          for (int d = 0; d < D; ++d)
            dot += double(q[s.at(b, i, h, s.heads, d)]) *
                   k[s.at(b, j, g, s.kvHeads, d)];
          p[size_t(j)] = dot * s.scale;
          max = std::max(max, p[size_t(j)]);
        }
        double sum = 0;
        for (int j = 0; j < keys; ++j)
          sum += p[size_t(j)] = std::exp(p[size_t(j)] - max);
        double pdp = 0;
        for (int j = 0; j < keys; ++j) {
          p[size_t(j)] /= sum;
          double dot = 0;
          for (int d = 0; d < D; ++d)
            dot += double(dout[s.at(b, i, h, s.heads, d)]) *
                   v[s.at(b, j, g, s.kvHeads, d)];
          dp[size_t(j)] = dot;
          pdp += p[size_t(j)] * dot;
        }
        for (int d = 0; d < D; ++d) {
          double out = 0, gq = 0;
          for (int j = 0; j < keys; ++j) {
            double ds = p[size_t(j)] * (dp[size_t(j)] - pdp);
            out += p[size_t(j)] * v[s.at(b, j, g, s.kvHeads, d)];
            gq += ds * k[s.at(b, j, g, s.kvHeads, d)];
          }
          r.o[s.at(b, i, h, s.heads, d)] = float(out);
          r.dq[s.at(b, i, h, s.heads, d)] = float(gq * s.scale);
        }
        for (int j = 0; j < keys; ++j) {
          double ds = p[size_t(j)] * (dp[size_t(j)] - pdp);
          for (int d = 0; d < D; ++d) {
            dk[s.at(b, j, g, s.kvHeads, d)] +=
                s.scale * ds * q[s.at(b, i, h, s.heads, d)];
            dv[s.at(b, j, g, s.kvHeads, d)] +=
                p[size_t(j)] * dout[s.at(b, i, h, s.heads, d)];
          }
        }
      }
    }
  r.dk.assign(dk.begin(), dk.end());
  r.dv.assign(dv.begin(), dv.end());
  return r;
}

void expectNear(const std::vector<float> &actual,
                const std::vector<float> &expected, const char *what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < actual.size(); ++i)
    if (!(std::fabs(actual[i] - expected[i]) <=
          1e-4f + 1e-4f * std::fabs(expected[i])) &&
        bad++ < 5)
      ADD_FAILURE() << what << "[" << i << "] = " << actual[i] << ", expected "
                    << expected[i];
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << actual.size()
                     << " elements differ";
}

template <int Batch, int Seq, int Heads, int KvHeads, int HeadDim, bool Causal,
          int RowsPerWarp, int KeysPerWarp, bool Accumulate>
struct TestConfig {
  using T = float;
  static constexpr Index kBatch = Batch, kSeq = Seq, kHeads = Heads,
                         kKvHeads = KvHeads;
  static constexpr int kHeadDim = HeadDim;
  static constexpr float kScale = 0.3f;
  static constexpr bool kCausal = Causal, kAccumulate = Accumulate;
  static constexpr int kVec = 4, kWarps = 4;
  static constexpr int kRowsPerWarp = RowsPerWarp;
  static constexpr int kKeysPerWarp = KeysPerWarp;
};

std::vector<float> randomVector(size_t n, std::mt19937 &rng, float range) {
  std::uniform_real_distribution<float> dist(-range, range);
  std::vector<float> values(n);
  for (float &value : values)
    value = dist(rng);
  return values;
}

/// Runs the forward kernel with FwdConfig and the backward phases with
/// BwdConfig (same shape) and compares them with the reference.
template <class FwdConfig, class BwdConfig> void check() {
  using Config = FwdConfig;
  const Shape s{int(Config::kBatch),   int(Config::kSeq), int(Config::kHeads),
                int(Config::kKvHeads), Config::kHeadDim,  Config::kScale,
                Config::kCausal};
  std::mt19937 rng(1234);
  size_t qn = size_t(s.batch) * s.seq * s.heads * s.headDim;
  size_t kvn = size_t(s.batch) * s.seq * s.kvHeads * s.headDim;
  auto q = randomVector(qn, rng, 2.0f), k = randomVector(kvn, rng, 2.0f);
  auto v = randomVector(kvn, rng, 1.0f), dout = randomVector(qn, rng, 1.0f);
  Reference expected = reference(s, q, k, v, dout);
  qlora::cuda::misalignedLoads = 0;

  std::vector<float> o(qn, NAN);
  constexpr int kFwdRows = Config::kWarps * Config::kRowsPerWarp;
  launch({unsigned((s.seq + kFwdRows - 1) / kFwdRows), unsigned(s.heads),
          unsigned(s.batch)},
         128, [&] {
           qlora::cuda::attentionFwd<FwdConfig>(q.data(), k.data(), v.data(),
                                                o.data());
         });
  expectNear(o, expected.o, "o");

  // The backward pass reads the reference o, so D matches the reference's.
  constexpr bool kAccumulate = BwdConfig::kAccumulate;
  const float initial = kAccumulate ? 0.5f : NAN;
  std::vector<float> dq(qn, initial), dk(kvn, initial), dv(kvn, initial);
  std::vector<float> lse(size_t(s.batch) * s.heads * s.seq, NAN);
  std::vector<float> delta(lse.size(), NAN);
  constexpr int kBwdRows = BwdConfig::kWarps * BwdConfig::kRowsPerWarp;
  constexpr int kBwdKeys = BwdConfig::kWarps * BwdConfig::kKeysPerWarp;
  launch({unsigned((s.seq + kBwdRows - 1) / kBwdRows), unsigned(s.heads),
          unsigned(s.batch)},
         128, [&] {
           qlora::cuda::attentionBwdQuery<BwdConfig>(
               dout.data(), q.data(), k.data(), v.data(), expected.o.data(),
               dq.data(), lse.data(), delta.data());
         });
  launch({unsigned((s.seq + kBwdKeys - 1) / kBwdKeys), unsigned(s.kvHeads),
          unsigned(s.batch)},
         128, [&] {
           qlora::cuda::attentionBwdKeyValue<BwdConfig>(
               dout.data(), q.data(), k.data(), v.data(), dk.data(), dv.data(),
               lse.data(), delta.data());
         });
  if (kAccumulate)
    for (auto *grads : {&expected.dq, &expected.dk, &expected.dv})
      for (float &g : *grads)
        g += initial;
  expectNear(dq, expected.dq, "dq");
  expectNear(dk, expected.dk, "dk");
  expectNear(dv, expected.dv, "dv");
  EXPECT_EQ(qlora::cuda::misalignedLoads, 0);
}

// The tiny preset as the builder instantiates it (forward 8 rows per warp,
// backward 4).
TEST(AttentionTiling, TinyCausal) {
  check<TestConfig<2, 8, 4, 4, 16, true, 8, 1, false>,
        TestConfig<2, 8, 4, 4, 16, true, 4, 4, false>>();
}

// Several key tiles, a partial last tile, grouped-query heads.
TEST(AttentionTiling, GroupedCausalPartialTiles) {
  check<TestConfig<2, 45, 4, 2, 16, true, 8, 1, false>,
        TestConfig<2, 45, 4, 2, 16, true, 4, 4, false>>();
}

// head_dim not a multiple of 32 (lanes past it idle), one kv head for all.
TEST(AttentionTiling, NonCausalOddHeadDim) {
  check<TestConfig<1, 50, 4, 1, 40, false, 4, 1, false>,
        TestConfig<1, 50, 4, 1, 40, false, 2, 2, false>>();
}

// llama's head_dim with the builder's 7B tiles, and accumulate.
TEST(AttentionTiling, HeadDim128Accumulate) {
  check<TestConfig<1, 67, 2, 2, 128, true, 4, 1, false>,
        TestConfig<1, 67, 2, 2, 128, true, 2, 2, true>>();
}

} // namespace
