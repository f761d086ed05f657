//===- Checksum.cpp - XXH64 checksums of train.bin bytes ------------------===//
//
// The algorithm, step by step as the specification names them: four lane
// accumulators consume 32-byte stripes; they converge into one accumulator,
// which takes the input length, then the remaining 8-, 4- and 1-byte pieces,
// and is finally mixed ("avalanche"). Inputs shorter than one stripe skip
// the lanes. All reads are little-endian whatever the host.
//
//===----------------------------------------------------------------------===//
#include "runtime/format/Checksum.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace qlora::format {
namespace {

constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ULL;
constexpr uint64_t kPrime2 = 0xC2B2AE3D27D4EB4FULL;
constexpr uint64_t kPrime3 = 0x165667B19E3779F9ULL;
constexpr uint64_t kPrime4 = 0x85EBCA77C2B2AE63ULL;
constexpr uint64_t kPrime5 = 0x27D4EB2F165667C5ULL;

template <typename T> T readLe(const unsigned char *bytes) {
  T value;
  std::memcpy(&value, bytes, sizeof(value));
  if constexpr (std::endian::native == std::endian::big) {
    if constexpr (sizeof(T) == 8)
      value = __builtin_bswap64(value);
    else
      value = __builtin_bswap32(value);
  }
  return value;
}

uint64_t roundLane(uint64_t accumulator, uint64_t lane) {
  accumulator += lane * kPrime2;
  accumulator = std::rotl(accumulator, 31);
  return accumulator * kPrime1;
}

uint64_t mergeAccumulator(uint64_t accumulator, uint64_t lane) {
  accumulator ^= roundLane(0, lane);
  return accumulator * kPrime1 + kPrime4;
}

/// Consumes `stripes` 32-byte stripes starting at `bytes`.
void consumeStripes(uint64_t (&lanes)[4], const unsigned char *bytes,
                    size_t stripes) {
  // Local copies let the compiler keep the lanes in registers.
  uint64_t v0 = lanes[0], v1 = lanes[1], v2 = lanes[2], v3 = lanes[3];
  for (; stripes > 0; --stripes, bytes += 32) {
    v0 = roundLane(v0, readLe<uint64_t>(bytes));
    v1 = roundLane(v1, readLe<uint64_t>(bytes + 8));
    v2 = roundLane(v2, readLe<uint64_t>(bytes + 16));
    v3 = roundLane(v3, readLe<uint64_t>(bytes + 24));
  }
  lanes[0] = v0, lanes[1] = v1, lanes[2] = v2, lanes[3] = v3;
}

/// Adds the final (< 32) bytes to `accumulator` and mixes it.
uint64_t finish(uint64_t accumulator, const unsigned char *bytes, size_t size) {
  for (; size >= 8; size -= 8, bytes += 8) {
    accumulator ^= roundLane(0, readLe<uint64_t>(bytes));
    accumulator = std::rotl(accumulator, 27) * kPrime1 + kPrime4;
  }
  if (size >= 4) {
    accumulator ^= uint64_t{readLe<uint32_t>(bytes)} * kPrime1;
    accumulator = std::rotl(accumulator, 23) * kPrime2 + kPrime3;
    size -= 4, bytes += 4;
  }
  for (; size > 0; --size, ++bytes) {
    accumulator ^= uint64_t{*bytes} * kPrime5;
    accumulator = std::rotl(accumulator, 11) * kPrime1;
  }
  accumulator ^= accumulator >> 33;
  accumulator *= kPrime2;
  accumulator ^= accumulator >> 29;
  accumulator *= kPrime3;
  accumulator ^= accumulator >> 32;
  return accumulator;
}

} // namespace

void Xxh64::reset(uint64_t seed) {
  seed_ = seed;
  lanes_[0] = seed + kPrime1 + kPrime2;
  lanes_[1] = seed + kPrime2;
  lanes_[2] = seed;
  lanes_[3] = seed - kPrime1;
  totalBytes_ = 0;
  bufferedBytes_ = 0;
}

void Xxh64::update(const void *data, size_t size) {
  if (size == 0)
    return;
  const auto *bytes = static_cast<const unsigned char *>(data);
  totalBytes_ += size;
  if (bufferedBytes_ > 0) {
    size_t take = std::min(size, kStripeBytes - bufferedBytes_);
    std::memcpy(buffer_ + bufferedBytes_, bytes, take);
    bufferedBytes_ += take;
    bytes += take, size -= take;
    if (bufferedBytes_ < kStripeBytes)
      return;
    consumeStripes(lanes_, buffer_, 1);
    bufferedBytes_ = 0;
  }
  size_t stripes = size / kStripeBytes;
  consumeStripes(lanes_, bytes, stripes);
  bytes += stripes * kStripeBytes, size -= stripes * kStripeBytes;
  std::memcpy(buffer_, bytes, size);
  bufferedBytes_ = size;
}

uint64_t Xxh64::digest() const {
  uint64_t accumulator;
  if (totalBytes_ >= kStripeBytes) {
    accumulator = std::rotl(lanes_[0], 1) + std::rotl(lanes_[1], 7) +
                  std::rotl(lanes_[2], 12) + std::rotl(lanes_[3], 18);
    for (uint64_t lane : lanes_)
      accumulator = mergeAccumulator(accumulator, lane);
  } else {
    accumulator = seed_ + kPrime5;
  }
  accumulator += totalBytes_;
  return finish(accumulator, buffer_, bufferedBytes_);
}

uint64_t xxh64(const void *data, size_t size, uint64_t seed) {
  Xxh64 state(seed);
  state.update(data, size);
  return state.digest();
}

} // namespace qlora::format
