//===- CounterRng.h - Counter-based random numbers --------------*- C++ -*-===//
//
// Value i of the stream (seed, name) is a pure function of the three, so the
// compiler and the runtime, any thread and any order of creation, draw the
// same initial weights. The function is part of qloracc's file contract:
//
//   key      = splitmix64(seed) XOR fnv1a64(name)
//   bits(i)  = splitmix64(key + (i + 1) * 0x9E3779B97F4A7C15)
//   uniform  = (bits >> 40) * 2^-24            in [0, 1), exact in fp32
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_FORMAT_COUNTERRNG_H
#define QLORACC_RUNTIME_FORMAT_COUNTERRNG_H

#include <cstdint>
#include <string_view>

namespace qlora::format {

class CounterRng {
public:
  CounterRng(uint64_t seed, std::string_view stream)
      : key(mix(seed) ^ fnv1a(stream)) {}

  uint64_t bits(uint64_t index) const {
    return mix(key + (index + 1) * kGamma);
  }

  /// Uniform in [0, 1) with 24 random bits.
  float uniform(uint64_t index) const {
    return float(bits(index) >> 40) * (1.0f / 16777216.0f);
  }

  /// mix(seed) ^ fnv1a(stream): what a kernel that draws on the device bakes
  /// in (kernels/GemmOperands.cuh's DropoutMask).
  uint64_t streamKey() const { return key; }

  /// Uniform in [low, high).
  float uniform(uint64_t index, float low, float high) const {
    return low + (high - low) * uniform(index);
  }

private:
  static constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;

  static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  static uint64_t fnv1a(std::string_view text) {
    uint64_t hash = 0xCBF29CE484222325ull;
    for (unsigned char c : text)
      hash = (hash ^ c) * 0x100000001B3ull;
    return hash;
  }

  uint64_t key;
};

} // namespace qlora::format

#endif // QLORACC_RUNTIME_FORMAT_COUNTERRNG_H
