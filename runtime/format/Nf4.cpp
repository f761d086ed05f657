//===- Nf4.cpp - Reference NF4 + double-quantization codec ----------------===//
//
// Compiled with -ffp-contract=off: every product and sum is rounded to fp32
// on its own, as torch does it, never fused into an FMA.
//
//===----------------------------------------------------------------------===//
#include "runtime/format/Nf4.h"

#include <array>

#include <algorithm>
#include <cmath>

namespace qlora::format {

const std::array<float, 16> kNf4Code = {-1.0f,
                                        -0.6961928009986877f,
                                        -0.5250730514526367f,
                                        -0.39491748809814453f,
                                        -0.28444138169288635f,
                                        -0.18477343022823334f,
                                        -0.09105003625154495f,
                                        0.0f,
                                        0.07958029955625534f,
                                        0.16093020141124725f,
                                        0.24611230194568634f,
                                        0.33791524171829224f,
                                        0.44070982933044434f,
                                        0.5626170039176941f,
                                        0.7229568362236023f,
                                        1.0f};

namespace {

/// The fp32 lanes of torch's CPU sum kernel as the golden data was made
/// (8: the AVX2 Vectorized<float>); it decides how torch's fp32 sum rounds.
constexpr int64_t kTorchLanes = 8;

/// clamp(min=1e-38): the double 1e-38 cast to fp32.
constexpr float kTinyAbsmax = static_cast<float>(1e-38);

/// torch.linspace(start, end, steps, dtype=float32) on the CPU: the first
/// half counts up from `start`, the second half down from `end`, each value
/// one fused multiply-add (start + step * i, end - step * (steps - 1 - i)),
/// as torch's build computes it (checked against the golden map).
std::vector<float> linspaceF32(float start, float end, int64_t steps) {
  std::vector<float> out(static_cast<size_t>(steps));
  if (steps == 1) {
    out[0] = start;
    return out;
  }
  const float step = (end - start) / static_cast<float>(steps - 1);
  const int64_t halfway = steps / 2;
  for (int64_t idx = 0; idx < steps; ++idx)
    out[idx] = idx < halfway
                   ? std::fma(step, static_cast<float>(idx), start)
                   : std::fma(-step, static_cast<float>(steps - idx - 1), end);
  return out;
}

int64_t ceilLog2(int64_t x) {
  if (x <= 2)
    return 1;
  int64_t floorLog = 0;
  for (uint64_t v = static_cast<uint64_t>(x - 1); v > 1; v >>= 1)
    ++floorLog;
  return floorLog + 1;
}

/// at::native row_sum over `size` vectors of `L` floats (L = 1: scalars):
/// four interleaved accumulators (multi_row_sum, with its four-level
/// cascade), the leftover vectors added to the first, then the other three
/// added to it in order.
template <int64_t L>
std::array<float, L> rowSum(const float *in, int64_t size) {
  using Vec = std::array<float, L>;
  constexpr int64_t kIlp = 4;
  constexpr int64_t kLevels = 4;
  auto add = [](Vec &acc, const float *p) {
    for (int64_t l = 0; l < L; ++l)
      acc[l] += p[l];
  };
  auto addVec = [](Vec &acc, const Vec &v) {
    for (int64_t l = 0; l < L; ++l)
      acc[l] += v[l];
  };
  const int64_t sizeIlp = size / kIlp;
  const int64_t levelPower = std::max<int64_t>(4, ceilLog2(sizeIlp) / kLevels);
  const int64_t levelStep = int64_t(1) << levelPower;
  const int64_t levelMask = levelStep - 1;
  Vec acc[kLevels][kIlp];
  for (auto &level : acc)
    for (auto &v : level)
      v.fill(0.0f);
  int64_t i = 0;
  for (; i + levelStep <= sizeIlp;) {
    for (int64_t j = 0; j < levelStep; ++j, ++i)
      for (int64_t k = 0; k < kIlp; ++k)
        add(acc[0][k], in + (i * kIlp + k) * L);
    for (int64_t j = 1; j < kLevels; ++j) {
      for (int64_t k = 0; k < kIlp; ++k) {
        addVec(acc[j][k], acc[j - 1][k]);
        acc[j - 1][k].fill(0.0f);
      }
      if ((i & (levelMask << (j * levelPower))) != 0)
        break;
    }
  }
  for (; i < sizeIlp; ++i)
    for (int64_t k = 0; k < kIlp; ++k)
      add(acc[0][k], in + (i * kIlp + k) * L);
  for (int64_t j = 1; j < kLevels; ++j)
    for (int64_t k = 0; k < kIlp; ++k)
      addVec(acc[0][k], acc[j][k]);
  for (int64_t t = sizeIlp * kIlp; t < size; ++t)
    add(acc[0][0], in + t * L);
  for (int64_t k = 1; k < kIlp; ++k)
    addVec(acc[0][0], acc[0][k]);
  return acc[0][0];
}

/// torch.sum of a contiguous fp32 vector (SumKernel.cpp cascade_sum),
/// single-threaded.
float torchSumF32(std::span<const float> values) {
  const int64_t n = static_cast<int64_t>(values.size());
  float result;
  if (n >= kTorchLanes) {
    // vectorized_inner_sum: vectors first, then the scalar tail, then the
    // lanes of the vector sum one by one.
    const int64_t vecCount = n / kTorchLanes;
    std::array<float, kTorchLanes> lanes =
        rowSum<kTorchLanes>(values.data(), vecCount);
    float acc = 0.0f;
    for (int64_t k = vecCount * kTorchLanes; k < n; ++k)
      acc += values[k];
    for (float lane : lanes)
      acc += lane;
    result = acc;
  } else {
    result = rowSum<1>(values.data(), n)[0];
  }
  // The output starts at zero and the result is accumulated into it.
  return 0.0f + result;
}

bool allFinite(std::span<const float> values, std::string &error,
               const char *what) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      error = std::string(what) + ": element " + std::to_string(i) +
              " is not finite (" + std::to_string(values[i]) +
              "); NF4 quantization needs finite values";
      return false;
    }
  }
  return true;
}

/// torch.bucketize(x, bounds) (right=False): the number of bounds < x.
uint8_t bucketize(float x, std::span<const float> bounds) {
  return static_cast<uint8_t>(
      std::lower_bound(bounds.begin(), bounds.end(), x) - bounds.begin());
}

/// fp32 midpoints of adjacent codes: (code[i] + code[i+1]) / 2.
std::vector<float> midpoints(std::span<const float> code) {
  std::vector<float> bounds(code.size() - 1);
  for (size_t i = 0; i + 1 < code.size(); ++i)
    bounds[i] = (code[i] + code[i + 1]) / 2.0f;
  return bounds;
}

/// bitsandbytes' blockwise scaling (backends/default/ops.py): per block the
/// absmax and the scaled values clamp(x * (1/max(absmax,1e-38)), -1, 1), a
/// division for the last partial block, whose stored absmax is the clamped
/// one.
void scaleBlocks(std::span<const float> values, int64_t blocksize,
                 std::vector<float> &absmax, std::vector<float> &scaled) {
  const int64_t n = static_cast<int64_t>(values.size());
  const int64_t rem = n % blocksize;
  const int64_t full = n - rem;
  absmax.clear();
  scaled.assign(values.size(), 0.0f);
  for (int64_t b = 0; b < full; b += blocksize) {
    float am = 0.0f;
    for (int64_t i = b; i < b + blocksize; ++i)
      am = std::max(am, std::fabs(values[i]));
    absmax.push_back(am);
    const float recip = 1.0f / std::max(am, kTinyAbsmax);
    for (int64_t i = b; i < b + blocksize; ++i)
      scaled[i] = std::clamp(values[i] * recip, -1.0f, 1.0f);
  }
  if (rem) {
    float am = 0.0f;
    for (int64_t i = full; i < n; ++i)
      am = std::max(am, std::fabs(values[i]));
    am = std::max(am, kTinyAbsmax);
    absmax.push_back(am);
    for (int64_t i = full; i < n; ++i)
      scaled[i] = std::clamp(values[i] / am, -1.0f, 1.0f);
  }
}

} // namespace

std::vector<float> createDynamicMap(bool isSigned) {
  constexpr int kMaxExponentBits = 7;
  constexpr int kTotalBits = 8;
  constexpr int kNonSignBits = kTotalBits - 1;
  std::vector<float> data;
  for (int i = 0; i < kMaxExponentBits; ++i) {
    const int64_t fractionItems =
        isSigned
            ? (int64_t(1) << (i + kNonSignBits - kMaxExponentBits)) + 1
            : (int64_t(1) << (i + kNonSignBits - kMaxExponentBits + 1)) + 1;
    std::vector<float> boundaries = linspaceF32(0.1f, 1.0f, fractionItems);
    // 10 ** (-(max_exponent_bits - 1) + i): a Python float, cast to fp32 by
    // the tensor-scalar multiply.
    const double scaleD = std::pow(10.0, -(kMaxExponentBits - 1) + i);
    const float scale = static_cast<float>(scaleD);
    const float negScale = static_cast<float>(-scaleD);
    for (size_t j = 0; j + 1 < boundaries.size(); ++j) {
      const float mean = (boundaries[j] + boundaries[j + 1]) / 2.0f;
      data.push_back(scale * mean);
    }
    if (isSigned) {
      for (size_t j = 0; j + 1 < boundaries.size(); ++j) {
        const float mean = (boundaries[j] + boundaries[j + 1]) / 2.0f;
        data.push_back(negScale * mean);
      }
    }
  }
  // additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1 = 0.
  data.push_back(0.0f);
  data.push_back(1.0f);
  while (data.size() < 256)
    data.push_back(0.0f);
  std::sort(data.begin(), data.end());
  return data;
}

std::optional<Nf4Quantized> quantizeNf4(std::span<const float> values,
                                        int64_t blocksize, std::string &error) {
  if (blocksize <= 0) {
    error = "quantizeNf4: blocksize must be positive, got " +
            std::to_string(blocksize);
    return std::nullopt;
  }
  if (!allFinite(values, error, "quantizeNf4"))
    return std::nullopt;
  Nf4Quantized result;
  std::vector<float> scaled;
  scaleBlocks(values, blocksize, result.absmax, scaled);
  if (scaled.size() % 2)
    scaled.push_back(0.0f);
  static const std::vector<float> bounds = midpoints(kNf4Code);
  result.packed.resize(scaled.size() / 2);
  for (size_t i = 0; i < result.packed.size(); ++i) {
    const uint8_t hi = bucketize(scaled[2 * i], bounds);
    const uint8_t lo = bucketize(scaled[2 * i + 1], bounds);
    result.packed[i] = static_cast<uint8_t>((hi << 4) | lo);
  }
  return result;
}

std::optional<std::vector<float>>
dequantizeNf4(std::span<const uint8_t> packed, std::span<const float> absmax,
              int64_t blocksize, int64_t count, std::string &error) {
  if (blocksize <= 0 || count < 0) {
    error = "dequantizeNf4: blocksize must be positive and count not negative";
    return std::nullopt;
  }
  const int64_t bytes = (count + 1) / 2;
  const int64_t blocks = (count + blocksize - 1) / blocksize;
  if (static_cast<int64_t>(packed.size()) != bytes ||
      static_cast<int64_t>(absmax.size()) != blocks) {
    error = "dequantizeNf4: " + std::to_string(count) + " elements need " +
            std::to_string(bytes) + " packed bytes and " +
            std::to_string(blocks) + " absmax values, got " +
            std::to_string(packed.size()) + " and " +
            std::to_string(absmax.size());
    return std::nullopt;
  }
  std::vector<float> out(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t byte = packed[i / 2];
    const uint8_t idx = (i % 2 == 0) ? (byte >> 4) : (byte & 0x0F);
    out[i] = kNf4Code[idx] * absmax[i / blocksize];
  }
  return out;
}

namespace {

/// bitsandbytes' CPU kernel for the 8-bit step of double quantization
/// (quantize_cpu in csrc/cpu_ops.cpp, which quantize_blockwise runs on the
/// CPU): no search, but nestedQuantizeLut()'s table over [-1, 1] built from
/// the code's midpoints, so a value near a midpoint can land on the farther
/// code. Restated step by step, every step rounded to fp32. Per block:
/// absmax = max|x|; x * (1 / absmax) clamped to [-1, 1] maps to entry
/// trunc((v + 1) * 0.5 * 65535 + 0.5). A block of zeros gets absmax 0 and
/// code 0 (the kernel's 0/0).
void quantizeNested(std::span<const float> values, int64_t blocksize,
                    std::vector<uint8_t> &codes, std::vector<float> &absmax) {
  const std::array<uint8_t, kNestedLutSize> &lut = nestedQuantizeLut();
  size_t n = values.size();
  size_t block = static_cast<size_t>(blocksize);
  codes.assign(n, 0);
  absmax.clear();
  for (size_t start = 0; start < n; start += block) {
    size_t end = std::min(n, start + block);
    float blockMax = 0.0f;
    for (size_t i = start; i < end; ++i)
      blockMax = std::max(blockMax, std::fabs(values[i]));
    absmax.push_back(blockMax);
    if (blockMax == 0.0f)
      continue;
    float inverse = 1.0f / blockMax;
    for (size_t i = start; i < end; ++i) {
      float t = std::clamp(values[i] * inverse, -1.0f, 1.0f) + 1.0f;
      t = t * 0.5f;
      t = t * static_cast<float>(kNestedLutSize - 1);
      t = t + 0.5f;
      codes[i] = lut[static_cast<uint32_t>(t)];
    }
  }
}

} // namespace

const std::array<uint8_t, kNestedLutSize> &nestedQuantizeLut() {
  static const std::array<uint8_t, kNestedLutSize> table = [] {
    std::array<uint8_t, kNestedLutSize> lut{};
    const std::vector<float> code = createDynamicMap(true);
    std::vector<float> bounds(code.size() - 1);
    for (size_t i = 0; i + 1 < code.size(); ++i)
      bounds[i] = 0.5f * (code[i] + code[i + 1]);
    size_t index = 0;
    for (int i = 0; i < kNestedLutSize; ++i) {
      float twice = 2.0f * static_cast<float>(i);
      float value = -1.0f + twice / static_cast<float>(kNestedLutSize - 1);
      while (index < bounds.size() && bounds[index] < value)
        ++index;
      lut[i] = static_cast<uint8_t>(index);
    }
    return lut;
  }();
  return table;
}

float torchMeanF32(std::span<const float> values) {
  return torchSumF32(values) / static_cast<float>(values.size());
}

std::optional<DoubleQuantized> doubleQuantize(std::span<const float> absmax,
                                              int64_t nestedBlocksize,
                                              std::string &error) {
  if (nestedBlocksize <= 0) {
    error = "doubleQuantize: nested blocksize must be positive, got " +
            std::to_string(nestedBlocksize);
    return std::nullopt;
  }
  if (absmax.empty()) {
    error = "doubleQuantize: no absmax values";
    return std::nullopt;
  }
  if (!allFinite(absmax, error, "doubleQuantize"))
    return std::nullopt;
  DoubleQuantized result;
  result.offset = torchMeanF32(absmax);
  std::vector<float> centered(absmax.size());
  for (size_t i = 0; i < absmax.size(); ++i)
    centered[i] = absmax[i] - result.offset;
  quantizeNested(centered, nestedBlocksize, result.codes, result.nestedAbsmax);
  return result;
}

std::optional<std::vector<float>> recoverAbsmax(const DoubleQuantized &dq,
                                                int64_t nestedBlocksize,
                                                std::string &error) {
  if (nestedBlocksize <= 0) {
    error = "recoverAbsmax: nested blocksize must be positive";
    return std::nullopt;
  }
  const size_t blocks =
      (dq.codes.size() + static_cast<size_t>(nestedBlocksize) - 1) /
      static_cast<size_t>(nestedBlocksize);
  if (dq.nestedAbsmax.size() != blocks) {
    error = "recoverAbsmax: " + std::to_string(dq.codes.size()) +
            " codes need " + std::to_string(blocks) +
            " nested absmax values, got " +
            std::to_string(dq.nestedAbsmax.size());
    return std::nullopt;
  }
  static const std::vector<float> code = createDynamicMap(true);
  std::vector<float> out(dq.codes.size());
  for (size_t i = 0; i < dq.codes.size(); ++i) {
    const float product =
        code[dq.codes[i]] * dq.nestedAbsmax[i / nestedBlocksize];
    out[i] = product + dq.offset;
  }
  return out;
}

double nf4BitsPerParam(int64_t count, int64_t blocksize,
                       int64_t nestedBlocksize) {
  const int64_t blocks = (count + blocksize - 1) / blocksize;
  const int64_t nested = (blocks + nestedBlocksize - 1) / nestedBlocksize;
  const double bits = 4.0 * static_cast<double>(count) +
                      8.0 * static_cast<double>(blocks) +
                      32.0 * static_cast<double>(nested);
  return bits / static_cast<double>(count);
}

} // namespace qlora::format
