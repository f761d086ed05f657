//===- Nf4Test.cpp - NF4 + double quantization against bitsandbytes -------===//
//
// Every output of runtime/format/Nf4.h compared byte for byte with what
// bitsandbytes 0.50 wrote on the CPU (test/golden/make_nf4_golden.py, files in
// test/golden/nf4/), plus the storage arithmetic and the non-finite errors.
//
//===----------------------------------------------------------------------===//
#include "runtime/format/Nf4.h"
#include "runtime/backends/cpu/Float16.h"
#include "runtime/format/Safetensors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace qlora::format {
namespace {

const std::string kGoldenDir = std::string(QLORA_GOLDEN_DIR) + "/nf4/";

std::unique_ptr<SafetensorsFile> openGolden(const std::string &name) {
  std::string error;
  auto file = SafetensorsFile::open(kGoldenDir + name + ".safetensors", error);
  EXPECT_TRUE(file) << error;
  return file;
}

const TensorView &tensor(const SafetensorsFile &file, const std::string &name,
                         DType dtype) {
  const TensorView *view = file.find(name);
  if (!view)
    throw std::runtime_error(file.path() + " has no tensor " + name);
  if (view->dtype != dtype)
    throw std::runtime_error(file.path() + ": " + name + " has dtype " +
                             std::string(dtypeName(view->dtype)));
  return *view;
}

std::vector<float> f32s(const TensorView &view) {
  std::vector<float> out(view.bytes.size() / sizeof(float));
  std::memcpy(out.data(), view.bytes.data(), view.bytes.size());
  return out;
}

/// The input widened to fp32 (exactly, as torch's .float() does).
std::vector<float> widenedInput(const TensorView &view) {
  if (view.dtype == DType::F32)
    return f32s(view);
  std::vector<float> out(view.bytes.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    uint16_t bits;
    std::memcpy(&bits, view.bytes.data() + 2 * i, 2);
    out[i] = view.dtype == DType::BF16 ? cpu::bf16ToFloat(bits)
                                       : cpu::halfToFloat(bits);
  }
  return out;
}

template <typename T>
::testing::AssertionResult sameBytes(const std::vector<T> &ours,
                                     std::span<const uint8_t> golden,
                                     const std::string &what) {
  if (ours.size() * sizeof(T) != golden.size())
    return ::testing::AssertionFailure()
           << what << ": " << ours.size() * sizeof(T) << " bytes, golden "
           << golden.size();
  const auto *bytes = reinterpret_cast<const uint8_t *>(ours.data());
  if (std::memcmp(bytes, golden.data(), golden.size()) == 0)
    return ::testing::AssertionSuccess();
  for (size_t i = 0; i < ours.size(); ++i) {
    T expected;
    std::memcpy(&expected, golden.data() + i * sizeof(T), sizeof(T));
    if (std::memcmp(&ours[i], &expected, sizeof(T)) != 0) {
      auto failure = ::testing::AssertionFailure();
      failure << what << ": first difference at element " << i << ": ours ";
      if constexpr (std::is_same_v<T, float>)
        failure << std::hexfloat << ours[i] << ", golden " << expected;
      else
        failure << +ours[i] << ", golden " << +expected;
      return failure;
    }
  }
  return ::testing::AssertionFailure() << what << ": differs";
}

TEST(Nf4Test, CodeTableAndDynamicMapMatchBitsandbytes) {
  auto file = openGolden("dynamic_map");
  ASSERT_TRUE(file);
  std::vector<float> nf4(kNf4Code.begin(), kNf4Code.end());
  EXPECT_TRUE(sameBytes(nf4, tensor(*file, "nf4", DType::F32).bytes, "nf4"));
  std::vector<float> dyn = createDynamicMap(true);
  ASSERT_EQ(dyn.size(), 256u);
  EXPECT_TRUE(
      sameBytes(dyn, tensor(*file, "code", DType::F32).bytes, "dynamic map"));
}

class Nf4GoldenTest : public ::testing::TestWithParam<const char *> {};

TEST_P(Nf4GoldenTest, BitExactWithBitsandbytes) {
  auto file = openGolden(GetParam());
  ASSERT_TRUE(file);
  const TensorView &input = *file->find("input");
  std::vector<float> values = widenedInput(input);
  ASSERT_EQ(static_cast<int64_t>(values.size()), input.numElements());

  std::string error;
  auto q = quantizeNf4(values, kNf4DefaultBlocksize, error);
  ASSERT_TRUE(q) << error;
  EXPECT_TRUE(
      sameBytes(q->packed, tensor(*file, "packed", DType::U8).bytes, "packed"));
  EXPECT_EQ(tensor(*file, "packed", DType::U8).shape,
            (std::vector<int64_t>{static_cast<int64_t>(q->packed.size()), 1}));
  EXPECT_TRUE(sameBytes(q->absmax, tensor(*file, "absmax", DType::F32).bytes,
                        "absmax"));

  auto dq = doubleQuantize(q->absmax, kNf4NestedBlocksize, error);
  ASSERT_TRUE(dq) << error;
  EXPECT_TRUE(sameBytes(dq->codes, tensor(*file, "absmax_q", DType::U8).bytes,
                        "absmax codes"));
  EXPECT_TRUE(sameBytes(dq->nestedAbsmax,
                        tensor(*file, "nested_absmax", DType::F32).bytes,
                        "nested absmax"));
  EXPECT_TRUE(sameBytes(std::vector<float>{dq->offset},
                        tensor(*file, "offset", DType::F32).bytes, "offset"));

  auto recovered = recoverAbsmax(*dq, kNf4NestedBlocksize, error);
  ASSERT_TRUE(recovered) << error;
  EXPECT_TRUE(sameBytes(*recovered,
                        tensor(*file, "absmax_recovered", DType::F32).bytes,
                        "recovered absmax"));

  auto deq = dequantizeNf4(q->packed, *recovered, kNf4DefaultBlocksize,
                           static_cast<int64_t>(values.size()), error);
  ASSERT_TRUE(deq) << error;
  if (const TensorView *golden = file->find("dequantized")) {
    EXPECT_EQ(golden->numElements(), input.numElements());
    EXPECT_TRUE(sameBytes(*deq, golden->bytes, "dequantized"));
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, Nf4GoldenTest,
                         ::testing::Values("randn_1000", "randn_64x64",
                                           "randn_257x65", "odd_77",
                                           "single_block_50", "fp16_64x96",
                                           "bf16_33x130", "zero_blocks",
                                           "extreme", "bf16_big_65600"));

TEST(Nf4Test, BitsPerParamWithDoubleQuantization) {
  // 4 + 8/64 + 32/(64*256) = 4.126953125 bits for a 4096x4096 tensor.
  EXPECT_EQ(nf4BitsPerParam(4096 * 4096), 4.126953125);
  EXPECT_NEAR(nf4BitsPerParam(4096 * 4096), 4.127, 5e-4);
  // Against 4.5 = 4 + 32/64 without double quantization: 0.373 saved.
  EXPECT_NEAR(4.5 - nf4BitsPerParam(4096 * 4096), 0.373, 5e-4);
}

TEST(Nf4Test, NonFiniteInputIsAnError) {
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()};
  for (float special : specials) {
    std::vector<float> values(100, 0.5f);
    values[70] = special;
    std::string error;
    EXPECT_FALSE(quantizeNf4(values, 64, error));
    EXPECT_NE(error.find("element 70"), std::string::npos) << error;
    error.clear();
    EXPECT_FALSE(doubleQuantize(values, 256, error));
    EXPECT_NE(error.find("not finite"), std::string::npos) << error;
  }
  std::string error;
  EXPECT_FALSE(quantizeNf4(std::vector<float>(4, 1.0f), 0, error));
  EXPECT_FALSE(doubleQuantize({}, 256, error));
}

TEST(Nf4Test, DequantizeChecksSizes) {
  std::string error;
  std::vector<uint8_t> packed(3);
  std::vector<float> absmax(1, 1.0f);
  EXPECT_TRUE(dequantizeNf4(packed, absmax, 64, 5, error)) << error;
  EXPECT_FALSE(dequantizeNf4(packed, absmax, 64, 7, error));
  EXPECT_FALSE(dequantizeNf4(packed, {}, 64, 5, error));
}

TEST(Nf4Test, PacksFirstElementInHighNibble) {
  std::string error;
  // -1 -> code 0, 1 -> code 15, 0 -> code 7; an odd count pads with code 7.
  auto q = quantizeNf4(std::vector<float>{-1.0f, 1.0f, 0.0f}, 64, error);
  ASSERT_TRUE(q) << error;
  EXPECT_EQ(q->packed, (std::vector<uint8_t>{0x0F, 0x77}));
  EXPECT_EQ(q->absmax, (std::vector<float>{1.0f}));
}

} // namespace
} // namespace qlora::format
