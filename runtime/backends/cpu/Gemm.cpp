//===- Gemm.cpp - Blocked fp32 matrix multiply for the CPU kernels --------===//
//
// Packing, blocking, threading and the epilogue; the inner loops are in
// GemmMicroKernel.cpp, the one file compiled to use FMA.
//
//===----------------------------------------------------------------------===//
#include "runtime/backends/cpu/Gemm.h"
#include "runtime/backends/cpu/Float16.h"
#include "runtime/backends/cpu/GemmMicroKernel.h"
#include "runtime/backends/cpu/Nf4Decode.h"

#include <algorithm>
#include <vector>

namespace qlora::cpu::detail {
namespace {

constexpr int64_t kMR = kMicroRows;
constexpr int64_t kNR = kMicroColumns;
constexpr int64_t kMC = 96;  // rows of a packed A block
constexpr int64_t kKC = 256; // depth of a packed block
constexpr int64_t kNC = 256; // columns of a packed B panel (= one task)
constexpr int64_t kMaxTaskRows = 1024;

int64_t roundUp(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

/// A 64-byte aligned float buffer that only grows.
class AlignedBuffer {
public:
  float *get(int64_t count) {
    if (count + 16 > int64_t(storage.size()))
      storage.resize(size_t(count + 16));
    auto address = reinterpret_cast<uintptr_t>(storage.data());
    return storage.data() + ((64 - address % 64) % 64) / sizeof(float);
  }

private:
  std::vector<float> storage;
};

struct Scratch {
  AlignedBuffer a, b, tile;
};

/// Ap[panel][kk][r] = A(row0 + panel*MR + r, k0 + kk), zero past `rows`.
void packA(const MatrixRef &a, int64_t row0, int64_t rows, int64_t k0,
           int64_t kc, float *out) {
  const auto *base = static_cast<const float *>(a.data);
  for (int64_t p = 0; p < rows; p += kMR, out += kc * kMR) {
    int64_t height = std::min(kMR, rows - p);
    for (int64_t r = 0; r < kMR; ++r) {
      if (r >= height) {
        for (int64_t kk = 0; kk < kc; ++kk)
          out[kk * kMR + r] = 0.0f;
        continue;
      }
      const float *row = base + (row0 + p + r) * a.rowStride + k0 * a.colStride;
      for (int64_t kk = 0; kk < kc; ++kk)
        out[kk * kMR + r] = row[kk * a.colStride];
    }
  }
}

/// Bp[panel][kk][c] = B(k0 + kk, col0 + panel*NR + c), zero past `cols`.
template <typename Widen>
void packBAs(const MatrixRef &b, int64_t k0, int64_t kc, int64_t col0,
             int64_t cols, float *out, Widen widen) {
  for (int64_t p = 0; p < cols; p += kNR, out += kc * kNR) {
    int64_t width = std::min(kNR, cols - p);
    for (int64_t c = 0; c < kNR; ++c) {
      if (c >= width) {
        for (int64_t kk = 0; kk < kc; ++kk)
          out[kk * kNR + c] = 0.0f;
        continue;
      }
      int64_t start = k0 * b.rowStride + (col0 + p + c) * b.colStride;
      for (int64_t kk = 0; kk < kc; ++kk)
        out[kk * kNR + c] = widen(start + kk * b.rowStride);
    }
  }
}

/// packB of an NF4 B: contiguous runs of elements are decoded at once (one
/// row of the panels when B's rows are contiguous, W row-major; one column
/// when its columns are, W transposed) and then scattered into the panels.
void packNf4B(const MatrixRef &b, int64_t k0, int64_t kc, int64_t col0,
              int64_t cols, float *out) {
  const Nf4View &w = *b.nf4;
  if (b.colStride != 1 && b.rowStride != 1)
    return packBAs(b, k0, kc, col0, cols, out, [&](int64_t i) {
      float value;
      decodeNf4Run(w, i, 1, &value);
      return value;
    });
  float run[std::max(kKC, kNC)];
  int64_t panelFloats = kc * kNR;
  if (b.colStride == 1) {
    for (int64_t kk = 0; kk < kc; ++kk) {
      decodeNf4Run(w, (k0 + kk) * b.rowStride + col0, cols, run);
      for (int64_t p = 0; p < cols; p += kNR) {
        float *dst = out + p / kNR * panelFloats + kk * kNR;
        int64_t width = std::min(kNR, cols - p);
        std::copy(run + p, run + p + width, dst);
        std::fill(dst + width, dst + kNR, 0.0f);
      }
    }
    return;
  }
  for (int64_t c = 0; c < cols; ++c) {
    decodeNf4Run(w, k0 + (col0 + c) * b.colStride, kc, run);
    float *dst = out + c / kNR * panelFloats + c % kNR;
    for (int64_t kk = 0; kk < kc; ++kk)
      dst[kk * kNR] = run[kk];
  }
  // The last panel's columns past `cols` are zero, as packBAs leaves them.
  if (int64_t width = cols % kNR) {
    float *last = out + cols / kNR * panelFloats;
    for (int64_t kk = 0; kk < kc; ++kk)
      std::fill(last + kk * kNR + width, last + (kk + 1) * kNR, 0.0f);
  }
}

void packB(const MatrixRef &b, int64_t k0, int64_t kc, int64_t col0,
           int64_t cols, float *out) {
  if (b.nf4)
    return packNf4B(b, k0, kc, col0, cols, out);
  const auto *half = static_cast<const uint16_t *>(b.data);
  switch (b.dtype) {
  case format::DType::BF16:
    return packBAs(b, k0, kc, col0, cols, out,
                   [&](int64_t i) { return bf16ToFloat(half[i]); });
  case format::DType::F16:
    return packBAs(b, k0, kc, col0, cols, out,
                   [&](int64_t i) { return halfToFloat(half[i]); });
  default: {
    const auto *single = static_cast<const float *>(b.data);
    return packBAs(b, k0, kc, col0, cols, out,
                   [&](int64_t i) { return single[i]; });
  }
  }
}

/// Computes rows [m0, m1) x columns [n0, n1) of C, n1 - n0 <= NC.
void gemmTile(const GemmSpec &s, int64_t m0, int64_t m1, int64_t n0,
              int64_t n1) {
  thread_local Scratch scratch;
  MicroKernel microKernel = selectMicroKernel(s.portable);
  int64_t cols = n1 - n0, colsPad = roundUp(cols, kNR);
  int64_t rows = m1 - m0, rowsPad = roundUp(rows, kMR);
  float *tile = scratch.tile.get(rowsPad * colsPad);
  float *bp = scratch.b.get(kKC * colsPad);
  float *ap = scratch.a.get(kKC * kMC);
  if (s.k == 0)
    std::fill(tile, tile + rowsPad * colsPad, 0.0f);
  for (int64_t pc = 0; pc < s.k; pc += kKC) {
    int64_t kc = std::min(kKC, s.k - pc);
    packB(s.b, pc, kc, n0, cols, bp);
    for (int64_t ic = m0; ic < m1; ic += kMC) {
      int64_t mc = std::min(kMC, m1 - ic);
      packA(s.a, ic, mc, pc, kc, ap);
      for (int64_t jr = 0; jr < colsPad; jr += kNR)
        for (int64_t ir = 0; ir < mc; ir += kMR)
          microKernel(kc, ap + ir * kc, bp + jr * kc,
                      tile + (ic - m0 + ir) * colsPad + jr, colsPad, pc == 0);
    }
  }
  for (int64_t i = 0; i < rows; ++i) {
    float *out = s.c + (m0 + i) * s.ldc + n0;
    const float *acc = tile + i * colsPad;
    for (int64_t j = 0; j < cols; ++j) {
      float value = s.alpha == 1.0f ? acc[j] : s.alpha * acc[j];
      out[j] = s.accumulate ? out[j] + value : value;
    }
  }
}

} // namespace

void gemmSerial(const GemmSpec &spec) {
  if (spec.m <= 0 || spec.n <= 0)
    return;
  for (int64_t n0 = 0; n0 < spec.n; n0 += kNC)
    for (int64_t m0 = 0; m0 < spec.m; m0 += kMaxTaskRows)
      gemmTile(spec, m0, std::min(spec.m, m0 + kMaxTaskRows), n0,
               std::min(spec.n, n0 + kNC));
}

void gemm(const GemmSpec &spec, ThreadPool &pool) {
  if (spec.m <= 0 || spec.n <= 0)
    return;
  // Any split gives the same bits (see Gemm.h); this one aims at a few tasks
  // per thread while keeping each task's rows a whole number of A blocks.
  int64_t panels = (spec.n + kNC - 1) / kNC;
  int64_t blocks = (spec.m + kMC - 1) / kMC;
  int64_t wanted = (4 * int64_t(pool.size()) + panels - 1) / panels;
  int64_t groups = std::clamp<int64_t>(
      std::max(wanted, (spec.m + kMaxTaskRows - 1) / kMaxTaskRows), 1, blocks);
  int64_t groupRows = (blocks + groups - 1) / groups * kMC;
  groups = (spec.m + groupRows - 1) / groupRows;
  pool.parallelFor(0, panels * groups, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t task = lo; task < hi; ++task) {
      int64_t m0 = task / panels * groupRows, n0 = task % panels * kNC;
      gemmTile(spec, m0, std::min(spec.m, m0 + groupRows), n0,
               std::min(spec.n, n0 + kNC));
    }
  });
}

} // namespace qlora::cpu::detail
