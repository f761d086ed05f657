//===- Checksum.h - XXH64 checksums of train.bin bytes ----------*- C++ -*-===//
//
// XXH64 as the xxHash specification defines it (doc/xxhash_spec.md in the
// xxHash repository), so that any xxHash implementation (the `xxhash` Python
// package, `xxh64sum`) can check a train.bin's footer and section checksums.
// Written from the specification; no xxHash code is used.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_FORMAT_CHECKSUM_H
#define QLORACC_RUNTIME_FORMAT_CHECKSUM_H

#include <cstddef>
#include <cstdint>
#include <span>

namespace qlora::format {

/// Streaming XXH64: update() any number of times with consecutive pieces of
/// the input, then digest(); the result equals xxh64() of the concatenation,
/// however the input was split.
class Xxh64 {
public:
  explicit Xxh64(uint64_t seed = 0) { reset(seed); }

  /// Starts over with an empty input.
  void reset(uint64_t seed = 0);
  void update(const void *data, size_t size);
  void update(std::span<const std::byte> data) {
    update(data.data(), data.size());
  }
  /// The hash of everything passed to update() so far; the state is not
  /// changed, so more input may follow.
  uint64_t digest() const;

private:
  static constexpr size_t kStripeBytes = 32;

  uint64_t seed_ = 0;
  uint64_t lanes_[4] = {};
  uint64_t totalBytes_ = 0;
  /// Input not yet forming a whole stripe; bufferedBytes_ < kStripeBytes.
  unsigned char buffer_[kStripeBytes] = {};
  size_t bufferedBytes_ = 0;
};

/// One-shot XXH64 of `size` bytes at `data`.
uint64_t xxh64(const void *data, size_t size, uint64_t seed = 0);
inline uint64_t xxh64(std::span<const std::byte> data, uint64_t seed = 0) {
  return xxh64(data.data(), data.size(), seed);
}

} // namespace qlora::format

#endif // QLORACC_RUNTIME_FORMAT_CHECKSUM_H
