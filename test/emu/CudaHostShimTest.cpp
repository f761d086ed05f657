//===- CudaHostShimTest.cpp - CudaHostShim.h's pieces, one by one ---------===//
//
// Small hand-written kernels, built like the generated ones, checked against
// what CUDA documents: shuffles (widths, out-of-range lanes), votes,
// barriers between interleaved threads, shared memory undefined at a block's
// start, deferred and aligned async copies, aligned vector loads, the last
// block of a grid through __device__ globals and atomics, fp16/bf16
// rounding, WMMA layouts, and a barrier that can never release.
//
//===----------------------------------------------------------------------===//
#include "test/emu/HostKernelLibrary.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

namespace qlora::cuda::emu {
namespace {

constexpr const char *kSource = R"(
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

// out[8][64]: each lane's view of its warp after each shuffle and vote.
extern "C" __global__ void __launch_bounds__(64) shuffles(float *out) {
  const int t = threadIdx.x, lane = t % 32;
  const float v = float(t);
  out[0 * 64 + t] = __shfl_sync(0xffffffffu, v, 5);
  out[1 * 64 + t] = __shfl_sync(0xffffffffu, v, lane + 1, 8);
  out[2 * 64 + t] = __shfl_xor_sync(0xffffffffu, v, 3);
  out[3 * 64 + t] = __shfl_down_sync(0xffffffffu, v, 4);
  out[4 * 64 + t] = __shfl_down_sync(0xffffffffu, v, 2, 16);
  out[5 * 64 + t] = float(__shfl_up_sync(0xffffffffu, double(t), 1));
  out[6 * 64 + t] = float(__ballot_sync(0xffffffffu, lane % 3 == 0) & 0xffff);
  out[7 * 64 + t] = float(__popc(__ballot_sync(0xffffffffu, t % 2)));
}

// out[t] = sum of in[0..t] through shared memory, one barrier a round
// (none in racyPrefix).
template <bool kBarriers>
__device__ void prefixSum(const float *in, float *out) {
  __shared__ float buffer[2][96];
  const int t = threadIdx.x;
  int from = 0;
  buffer[0][t] = in[t];
  __syncthreads();
  for (int offset = 1; offset < 96; offset *= 2) {
    float before = t >= offset ? buffer[from][t - offset] : 0;
    buffer[1 - from][t] = buffer[from][t] + before;
    from = 1 - from;
    if (kBarriers)
      __syncthreads();
  }
  out[t] = buffer[from][t];
}
extern "C" __global__ void __launch_bounds__(96) prefix(const float *in,
                                                       float *out) {
  prefixSum<true>(in, out);
}
extern "C" __global__ void __launch_bounds__(96) racyPrefix(const float *in,
                                                           float *out) {
  prefixSum<false>(in, out);
}

__device__ float partials[7];
__device__ unsigned counter;

// out[0] = sum over the grid, by the block that finishes last.
extern "C" __global__ void __launch_bounds__(32) lastBlock(const float *in,
                                                          float *out) {
  __shared__ bool last;
  float v = in[blockIdx.x * 32 + threadIdx.x];
  for (int offset = 16; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  if (threadIdx.x == 0)
    partials[blockIdx.x] = v;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0)
    last = atomicInc(&counter, gridDim.x - 1) == gridDim.x - 1;
  __syncthreads();
  if (last && threadIdx.x == 0) {
    float sum = 0;
    for (int b = 0; b < gridDim.x; ++b)
      sum += partials[b];
    out[0] = sum;
    out[1] = float(counter); // atomicInc wrapped it to 0
  }
}

extern "C" __global__ void __launch_bounds__(32) roundings(const float *in,
                                                          float *out) {
  const int t = threadIdx.x;
  out[t] = __half2float(__float2half_rn(in[t]));
  out[32 + t] = __bfloat162float(__float2bfloat16_rn(in[t]));
}

// C = A·B + 1 over one 16x16x16 tile: A row-major, B column-major; out is
// C row-major then C column-major.
extern "C" __global__ void __launch_bounds__(32) tile(const float *a,
                                                     const float *b,
                                                     float *out) {
  namespace wmma = nvcuda::wmma;
  __shared__ __align__(32) __nv_bfloat16 as[256], bs[256];
  for (int i = threadIdx.x; i < 256; i += 32) {
    as[i] = __float2bfloat16_rn(a[i]);
    bs[i] = __float2bfloat16_rn(b[i]);
  }
  __syncwarp();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 1.0f);
  wmma::load_matrix_sync(fa, as, 16);
  wmma::load_matrix_sync(fb, bs, 16);
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(out, acc, 16, wmma::mem_row_major);
  wmma::store_matrix_sync(out + 256, acc, 16, wmma::mem_col_major);
}

// A fragment loaded 2 bytes past a 32-byte boundary.
extern "C" __global__ void __launch_bounds__(32) misaligned(float *out) {
  __shared__ __align__(32) __nv_bfloat16 as[512];
  nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __nv_bfloat16,
                         nvcuda::wmma::row_major>
      fa;
  nvcuda::wmma::load_matrix_sync(fa, as + 1, 16);
  out[threadIdx.x] = 1;
}

// cp.async on the emulator (kernels/Common.cuh's copyAsync): a copy lands
// at the thread's waitCopies, not before; one that reads 0 bytes writes
// zeros.
extern "C" __global__ void __launch_bounds__(32) copies(const float *in,
                                                       float *out) {
  __shared__ float s[64];
  const int t = threadIdx.x;
  s[t] = -1;
  s[32 + t] = -1;
  qlora_emu::copyAsync(&s[t], &in[t], 4, 4);
  qlora_emu::copyAsync(&s[32 + t], &in[t], 0, 4);
  out[t] = s[t];
  qlora_emu::waitCopies();
  out[32 + t] = s[t];
  out[64 + t] = s[32 + t];
}

// A 16-byte cp.async from 4 bytes past a 16-byte boundary.
extern "C" __global__ void __launch_bounds__(32) misalignedCopy(
    const float *in, float *out) {
  __shared__ __align__(16) float s[8];
  qlora_emu::copyAsync(s, in + 1, 16, 16);
  qlora_emu::waitCopies();
  out[threadIdx.x] = s[0];
}

// A 16-byte vector load from 4 bytes past a 16-byte boundary.
extern "C" __global__ void __launch_bounds__(32) misalignedVector(
    const float *in, float *out) {
  const uint4 v = *reinterpret_cast<const uint4 *>(in + 1);
  out[threadIdx.x] = float(v.x);
}

// Block 0 writes its shared array before reading it; the others only read.
extern "C" __global__ void __launch_bounds__(32) unwritten(float *out) {
  __shared__ float s[32];
  if (blockIdx.x == 0)
    s[threadIdx.x] = 1;
  __syncthreads();
  out[blockIdx.x * 32 + threadIdx.x] = s[threadIdx.x];
}

// Thread 0 waits on its warp while the others wait on the block.
extern "C" __global__ void __launch_bounds__(64) stuck(float *out) {
  if (threadIdx.x == 0)
    __syncwarp();
  else
    __syncthreads();
  out[threadIdx.x] = 1;
}
)";

class CudaHostShim : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    std::string error;
    library = HostKernelLibrary::build(
                  "shim", kSource,
                  {"shuffles", "prefix", "racyPrefix", "lastBlock", "roundings",
                   "tile", "misaligned", "stuck", "copies", "misalignedCopy",
                   "misalignedVector", "unwritten"},
                  error)
                  .release();
    ASSERT_TRUE(library) << error;
  }
  static void TearDownTestSuite() { delete library; }

  void run(const char *entry, std::vector<void *> args, uint32_t blocks,
           uint32_t threads) {
    ASSERT_TRUE(library);
    std::string error;
    ASSERT_TRUE(library->launch(entry, args, {blocks, 1, 1}, threads, error))
        << error;
  }

  static HostKernelLibrary *library;
};
HostKernelLibrary *CudaHostShim::library = nullptr;

TEST_F(CudaHostShim, ShufflesAndVotesFollowTheirWidths) {
  std::vector<float> out(8 * 64, -1);
  run("shuffles", {out.data()}, 1, 64);
  for (int t = 0; t < 64; ++t) {
    int lane = t % 32, warp = t / 32 * 32;
    SCOPED_TRACE("thread " + std::to_string(t));
    EXPECT_EQ(out[0 * 64 + t], warp + 5);
    EXPECT_EQ(out[1 * 64 + t], warp + lane / 8 * 8 + (lane + 1) % 8);
    EXPECT_EQ(out[2 * 64 + t], warp + (lane ^ 3));
    EXPECT_EQ(out[3 * 64 + t], lane + 4 < 32 ? t + 4 : t);
    EXPECT_EQ(out[4 * 64 + t], lane % 16 + 2 < 16 ? t + 2 : t);
    EXPECT_EQ(out[5 * 64 + t], lane >= 1 ? t - 1 : t);
    EXPECT_EQ(out[6 * 64 + t], float(0x9249)); // lanes 0, 3, ..., 15
    EXPECT_EQ(out[7 * 64 + t], 16);
  }
}

TEST_F(CudaHostShim, BarriersOrderSharedMemory) {
  std::vector<float> in(96), out(96);
  for (int i = 0; i < 96; ++i)
    in[size_t(i)] = float(i % 7);
  run("prefix", {in.data(), out.data()}, 1, 96);
  float sum = 0;
  for (int i = 0; i < 96; ++i)
    EXPECT_EQ(out[size_t(i)], sum += in[size_t(i)]) << i;
}

TEST_F(CudaHostShim, AMissingBarrierShows) {
  // Threads switch only at barriers: without them each thread runs its
  // rounds alone and reads what the others have not written yet.
  std::vector<float> in(96, 1.0f), out(96);
  run("racyPrefix", {in.data(), out.data()}, 1, 96);
  int wrong = 0;
  for (int i = 0; i < 96; ++i)
    wrong += out[size_t(i)] != float(i + 1);
  EXPECT_GT(wrong, 48);
}

TEST_F(CudaHostShim, AsyncCopiesLandAtTheWait) {
  std::vector<float> in(32), out(96, 7);
  for (int i = 0; i < 32; ++i)
    in[size_t(i)] = float(i + 1);
  run("copies", {in.data(), out.data()}, 1, 32);
  for (int t = 0; t < 32; ++t) {
    EXPECT_EQ(out[size_t(t)], -1) << t;
    EXPECT_EQ(out[size_t(32 + t)], float(t + 1)) << t;
    EXPECT_EQ(out[size_t(64 + t)], 0) << t;
  }
}

TEST_F(CudaHostShim, TheLastBlockSeesEveryBlocksGlobals) {
  std::vector<float> in(7 * 32), out(2, -1);
  for (size_t i = 0; i < in.size(); ++i)
    in[i] = float(i);
  for (int launch = 0; launch < 2; ++launch) {
    run("lastBlock", {in.data(), out.data()}, 7, 32);
    EXPECT_EQ(out[0], float(7 * 32 * (7 * 32 - 1) / 2));
    EXPECT_EQ(out[1], 0);
  }
}

TEST_F(CudaHostShim, EachBlockStartsWithPoisonedSharedMemory) {
  std::vector<float> out(96, 0);
  run("unwritten", {out.data()}, 3, 32);
  for (int t = 0; t < 32; ++t) {
    EXPECT_EQ(out[size_t(t)], 1) << t;
    EXPECT_TRUE(std::isnan(out[size_t(32 + t)])) << t;
    EXPECT_TRUE(std::isnan(out[size_t(64 + t)])) << t;
  }
}

TEST_F(CudaHostShim, RoundsToNearestEven) {
  // Ties (1 + 2^-11 in fp16, 1 + 2^-8 in bf16), overflow, a subnormal
  // and NaN.
  std::vector<float> in = {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 65519.0f,
                           65520.0f,        0x1p-24f * 1.5f,     -2.5e-8f,
                           1.0f + 0x1p-8f,  1.0f + 3 * 0x1p-8f,  std::nanf("")};
  in.resize(32, 0.5f);
  std::vector<float> out(64);
  run("roundings", {in.data(), out.data()}, 1, 32);
  std::vector<float> half = {1.0f,           1.0f + 0x1p-9f,    65504.0f,
                             INFINITY,       0x1p-23f,          -0.0f,
                             1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f};
  std::vector<float> bf16 = {
      1.0f,     1.0f, 65536.0f,      65536.0f, 0x1p-24f * 1.5f,
      -2.5e-8f, 1.0f, 1.0f + 0x1p-6f};
  for (size_t i = 0; i < half.size(); ++i) {
    EXPECT_EQ(out[i], half[i]) << "fp16 of " << in[i];
    EXPECT_EQ(std::signbit(out[i]), std::signbit(half[i])) << in[i];
  }
  EXPECT_EQ(out[4 + 32], 0x1p-24f * 1.5f); // exact in bf16
  EXPECT_NEAR(out[5 + 32], -2.5e-8f, 1e-10f);
  for (size_t i : {0, 1, 2, 3, 6, 7})
    EXPECT_EQ(out[32 + i], bf16[i]) << "bf16 of " << in[i];
  EXPECT_TRUE(std::isnan(out[8]) && std::isnan(out[32 + 8]));
}

TEST_F(CudaHostShim, WmmaReadsAndWritesBothLayouts) {
  std::vector<float> a(256), b(256);
  alignas(32) static float out[512]; // WMMA stores need 32-byte alignment
  for (int i = 0; i < 256; ++i) {
    a[size_t(i)] = float(i % 5) - 2;       // exact in bf16
    b[size_t(i)] = float((i * 7) % 9) - 4; // b[n * 16 + k] is B(k, n)
  }
  run("tile", {a.data(), b.data(), out}, 1, 32);
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 16; ++n) {
      float c = 1;
      for (int k = 0; k < 16; ++k)
        c += a[size_t(m * 16 + k)] * b[size_t(n * 16 + k)];
      EXPECT_EQ(out[m * 16 + n], c) << m << ", " << n;
      EXPECT_EQ(out[256 + n * 16 + m], c) << m << ", " << n;
    }
}

TEST_F(CudaHostShim, AMisalignedFragmentAborts) {
  std::vector<float> out(32);
  EXPECT_DEATH(run("misaligned", {out.data()}, 1, 32), "32-byte aligned");
}

TEST_F(CudaHostShim, AMisalignedAsyncCopyAborts) {
  alignas(16) float in[8] = {}, out[32];
  EXPECT_DEATH(run("misalignedCopy", {in, out}, 1, 32), "16-byte aligned");
}

TEST_F(CudaHostShim, AMisalignedVectorLoadAborts) {
  alignas(16) float in[8] = {}, out[32];
  EXPECT_DEATH(run("misalignedVector", {in, out}, 1, 32),
               "misaligned address .* requires 16 byte alignment");
}

TEST_F(CudaHostShim, ABarrierThatNeverReleasesAborts) {
  std::vector<float> out(64);
  EXPECT_DEATH(run("stuck", {out.data()}, 1, 64), "never releases");
}

} // namespace
} // namespace qlora::cuda::emu
