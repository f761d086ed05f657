//===- ChecksumTest.cpp - XXH64 against the reference implementation ------===//
#include "runtime/format/Checksum.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

using namespace qlora::format;

namespace {

/// The deterministic input: byte i is (i * 167 + 13) mod 256.
std::vector<std::byte> pattern(size_t size) {
  std::vector<std::byte> bytes(size);
  for (size_t i = 0; i < size; ++i)
    bytes[i] = static_cast<std::byte>(i * 167 + 13);
  return bytes;
}

struct Vector {
  size_t size;
  uint64_t seed;
  uint64_t hash;
};

// Made with the reference implementation, the `xxhash` package from PyPI
// (4.1.0, which bundles xxHash 0.8):
//   python3 -m venv /tmp/xxvenv && /tmp/xxvenv/bin/pip install xxhash
//   import xxhash
//   def pattern(n): return bytes(((i * 167 + 13) & 0xff) for i in range(n))
//   for seed in (0, 1, 0x9E3779B97F4A7C15):
//     for n in (0, 1, 3, 4, 7, 8, 31, 32, 33, 100, 1000):
//       print(n, hex(seed), hex(xxhash.xxh64(pattern(n),
//       seed=seed).intdigest()))
// The lengths cover every path: empty, the 1-byte and 4-byte tails, one
// 8-byte lane, just below, at and above one 32-byte stripe, many stripes.
constexpr Vector kVectors[] = {
    {0, 0x0ull, 0xef46db3751d8e999ull},
    {1, 0x0ull, 0x2078e1ad38ad738bull},
    {3, 0x0ull, 0x634d95fc01a189cdull},
    {4, 0x0ull, 0xeed340908a1ac6c6ull},
    {7, 0x0ull, 0x0da493621d6dc898ull},
    {8, 0x0ull, 0x76f916c7bb523126ull},
    {31, 0x0ull, 0x65c5feb01da7464dull},
    {32, 0x0ull, 0x7665c921c9bf2ec7ull},
    {33, 0x0ull, 0xb5a9d9ef259ae821ull},
    {100, 0x0ull, 0x74e502db362efd4cull},
    {1000, 0x0ull, 0x626443c8029d0542ull},
    {0, 0x1ull, 0xd5afba1336a3be4bull},
    {1, 0x1ull, 0x877218c0886c3aa1ull},
    {3, 0x1ull, 0x4f79f69195dddefeull},
    {4, 0x1ull, 0x0ede86208f01287bull},
    {7, 0x1ull, 0xd3f41c9d91005926ull},
    {8, 0x1ull, 0x3f6e32036d62145eull},
    {31, 0x1ull, 0x7af1d5c3bf102c57ull},
    {32, 0x1ull, 0x4d8c71d9fd9535cdull},
    {33, 0x1ull, 0xfaa058ec508dbfe0ull},
    {100, 0x1ull, 0x0b0c977eb8a18330ull},
    {1000, 0x1ull, 0xc86828d1c94b3f0aull},
    {0, 0x9e3779b97f4a7c15ull, 0xc4349fc93c010000ull},
    {1, 0x9e3779b97f4a7c15ull, 0xa70e4906c54489b3ull},
    {3, 0x9e3779b97f4a7c15ull, 0xbf3ea50ff941639eull},
    {4, 0x9e3779b97f4a7c15ull, 0x8214ccf4f1ff646eull},
    {7, 0x9e3779b97f4a7c15ull, 0x97040f7d586ab641ull},
    {8, 0x9e3779b97f4a7c15ull, 0x845c3715dc14d7a4ull},
    {31, 0x9e3779b97f4a7c15ull, 0xc30f7c92c87bbe00ull},
    {32, 0x9e3779b97f4a7c15ull, 0x8cd72221a4b73388ull},
    {33, 0x9e3779b97f4a7c15ull, 0x6100099110b4aa0full},
    {100, 0x9e3779b97f4a7c15ull, 0xec82d18e901957ebull},
    {1000, 0x9e3779b97f4a7c15ull, 0xc98e411e8ea1921aull},
};

TEST(ChecksumTest, OneShotMatchesReference) {
  for (const Vector &v : kVectors) {
    std::vector<std::byte> input = pattern(v.size);
    EXPECT_EQ(xxh64(input, v.seed), v.hash)
        << "length " << v.size << " seed " << v.seed;
  }
}

TEST(ChecksumTest, DefaultSeedIsZero) {
  std::vector<std::byte> input = pattern(100);
  EXPECT_EQ(xxh64(input), xxh64(input, 0));
  EXPECT_EQ(Xxh64().digest(), 0xef46db3751d8e999ull);
}

TEST(ChecksumTest, StreamingMatchesReferenceForEveryChunkSize) {
  for (const Vector &v : kVectors) {
    std::vector<std::byte> input = pattern(v.size);
    for (size_t chunk : {1, 3, 7, 8, 31, 32, 33, 64, 1000}) {
      Xxh64 state(v.seed);
      for (size_t at = 0; at < input.size(); at += chunk)
        state.update(
            std::span(input).subspan(at, std::min(chunk, input.size() - at)));
      EXPECT_EQ(state.digest(), v.hash)
          << "length " << v.size << " seed " << v.seed << " chunk " << chunk;
    }
  }
}

TEST(ChecksumTest, UnevenPiecesAndDigestInBetween) {
  std::vector<std::byte> input = pattern(1000);
  Xxh64 state;
  size_t at = 0;
  // Pieces of growing size straddle stripe boundaries in every phase.
  for (size_t piece = 0; at < input.size(); ++piece) {
    size_t take = std::min(piece, input.size() - at);
    state.update(input.data() + at, take);
    at += take;
    // digest() does not disturb the state.
    EXPECT_EQ(state.digest(), xxh64(input.data(), at));
  }
  EXPECT_EQ(state.digest(), 0x626443c8029d0542ull);
}

TEST(ChecksumTest, ResetStartsOver) {
  std::vector<std::byte> input = pattern(33);
  Xxh64 state(7);
  state.update(input);
  state.reset(1);
  state.update(input);
  EXPECT_EQ(state.digest(), 0xfaa058ec508dbfe0ull);
}

} // namespace
