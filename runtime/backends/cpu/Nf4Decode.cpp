//===- Nf4Decode.cpp - NF4 weights as the CPU kernels read them -----------===//
//
// Every product and sum rounds to fp32 on its own (the backend is built with
// -ffp-contract=off), as format::dequantizeNf4 and format::recoverAbsmax do.
//
//===----------------------------------------------------------------------===//
#include "runtime/backends/cpu/Nf4Decode.h"
#include "runtime/backends/cpu/Float16.h"
#include "runtime/format/Nf4.h"

#include <algorithm>
#include <cstring>

namespace qlora::cpu::detail {
namespace {

using format::DType;

/// `value` rounded to `Type` (nearest even) and widened back.
template <DType Type> float roundTo(float value) {
  if constexpr (Type == DType::BF16)
    return bf16ToFloat(floatToBf16(value));
  else if constexpr (Type == DType::F16)
    return halfToFloat(floatToHalf(value));
  else
    return value;
}

template <DType Type> float elementAt(const Nf4View &view, int64_t e) {
  uint8_t byte = view.codes[e >> 1];
  uint8_t code = (e & 1) ? byte & 0x0f : byte >> 4;
  return roundTo<Type>(format::kNf4Code[code] *
                       view.absmax[e / view.blockSize]);
}

/// A block's 16 possible values are computed once and its elements looked
/// up, two per code byte; runs shorter than the table are decoded directly.
template <DType Type>
void decodeRunAs(const Nf4View &view, int64_t first, int64_t count,
                 float *out) {
  constexpr int64_t kTableSize = 16;
  const int64_t end = first + count;
  int64_t e = first;
  while (e < end) {
    int64_t block = e / view.blockSize;
    int64_t stop = std::min(end, (block + 1) * view.blockSize);
    float *o = out + (e - first);
    if (stop - e < kTableSize) {
      for (; e < stop; ++e)
        *o++ = elementAt<Type>(view, e);
      continue;
    }
    float table[kTableSize];
    float scale = view.absmax[block];
    for (int64_t c = 0; c < kTableSize; ++c)
      table[c] = roundTo<Type>(format::kNf4Code[size_t(c)] * scale);
    if (e & 1)
      *o++ = table[view.codes[e++ >> 1] & 0x0f];
    const uint8_t *bytes = view.codes + (e >> 1);
    int64_t pairs = (stop - e) >> 1;
    for (int64_t p = 0; p < pairs; ++p) {
      uint8_t byte = bytes[p];
      o[2 * p] = table[byte >> 4];
      o[2 * p + 1] = table[byte & 0x0f];
    }
    e += 2 * pairs;
    o += 2 * pairs;
    if (e < stop)
      *o = table[view.codes[e++ >> 1] >> 4];
  }
}

template <typename T> T loadUnaligned(const std::byte *at) {
  T value;
  std::memcpy(&value, at, sizeof(T));
  return value;
}

} // namespace

void decodeNf4Run(const Nf4View &view, int64_t first, int64_t count,
                  float *out) {
  switch (view.dequantType) {
  case DType::BF16:
    return decodeRunAs<DType::BF16>(view, first, count, out);
  case DType::F16:
    return decodeRunAs<DType::F16>(view, first, count, out);
  default:
    return decodeRunAs<DType::F32>(view, first, count, out);
  }
}

Nf4Weight::Nf4Weight(const void *buffer, int64_t count, const Nf4Params &params,
                     ThreadPool &pool) {
  format::Nf4Layout layout =
      *format::Nf4Layout::compute(count, params.blockSize, params.dqBlockSize);
  const auto *base = static_cast<const std::byte *>(buffer);
  absmax_.resize(size_t(layout.blocks));
  // The buffer's f32 pieces are read with memcpy: an arena range need not be
  // 4-byte aligned.
  if (!layout.isDoubleQuantized()) {
    std::memcpy(absmax_.data(), base + layout.absmaxOffset,
                size_t(layout.absmaxBytes));
  } else {
    // absmax(b) = dyn[code(b)] * nested(b / dq) + offset, one fp32 rounding
    // per operation (format::recoverAbsmax).
    static const std::vector<float> dynamicMap = format::createDynamicMap(true);
    const auto *codes =
        reinterpret_cast<const uint8_t *>(base + layout.absmaxOffset);
    std::vector<float> nested(size_t(layout.nestedBlocks));
    std::memcpy(nested.data(), base + layout.nestedAbsmaxOffset,
                size_t(layout.nestedAbsmaxBytes));
    float offset = loadUnaligned<float>(base + layout.offsetOffset);
    int64_t dq = params.dqBlockSize;
    pool.parallelFor(0, layout.blocks, 1 << 14, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        float product = dynamicMap[codes[b]] * nested[size_t(b / dq)];
        absmax_[size_t(b)] = product + offset;
      }
    });
  }
  view_ = {reinterpret_cast<const uint8_t *>(base + layout.codesOffset),
           absmax_.data(), params.blockSize, params.dequantType};
}

} // namespace qlora::cpu::detail
