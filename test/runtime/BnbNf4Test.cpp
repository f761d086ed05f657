//===- BnbNf4Test.cpp - Reading bitsandbytes 4-bit checkpoint tensors -----===//
//
// test/golden/bnb4bit/ is test/golden/tiny-llama saved by transformers +
// bitsandbytes in 4 bits: every weight read from it must be, byte for byte,
// what runtime/format/Nf4.h computes from the fp32 original. Then small
// damaged files, one fault each, written with SafetensorsWriter.
//
//===----------------------------------------------------------------------===//
#include "runtime/format/BnbNf4.h"
#include "runtime/format/Nf4.h"
#include "runtime/format/Safetensors.h"
#include "runtime/format/SafetensorsWriter.h"
#include "test/runtime/TempDirTest.h"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace qlora::format {
namespace {

const std::string kGoldenDir = std::string(QLORA_GOLDEN_DIR);

std::unique_ptr<SafetensorsFile> openOrFail(const std::string &path) {
  std::string error;
  auto file = SafetensorsFile::open(path, error);
  EXPECT_TRUE(file) << error;
  return file;
}

template <typename T> std::vector<T> copyAs(std::span<const std::byte> bytes) {
  std::vector<T> out(bytes.size() / sizeof(T));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(T));
  return out;
}

template <typename T> std::vector<uint8_t> toBytes(const std::vector<T> &v) {
  std::vector<uint8_t> out(v.size() * sizeof(T));
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

TEST(BnbNf4Golden, EveryProjectionIsQuantizeNf4OfTheOriginal) {
  auto quantized = openOrFail(kGoldenDir + "/bnb4bit/model.safetensors");
  auto original = openOrFail(kGoldenDir + "/tiny-llama/model.safetensors");
  ASSERT_TRUE(quantized && original);
  int weights = 0;
  for (const TensorView &view : quantized->tensors()) {
    if (!view.name.ends_with("_proj.weight"))
      continue;
    SCOPED_TRACE(view.name);
    ++weights;
    ASSERT_TRUE(hasBnbNf4QuantState(*quantized, view.name));
    std::string error;
    std::optional<BnbNf4Tensor> tensor =
        readBnbNf4Tensor(*quantized, view.name, error);
    ASSERT_TRUE(tensor) << error;
    const TensorView *fp32 = original->find(view.name);
    ASSERT_TRUE(fp32);
    EXPECT_EQ(tensor->shape, fp32->shape);
    EXPECT_EQ(tensor->dtype, DType::F32);
    EXPECT_EQ(tensor->blocksize, 64);
    EXPECT_EQ(tensor->nestedBlocksize, 256);

    std::vector<float> values = copyAs<float>(std::as_bytes(fp32->bytes));
    std::optional<Nf4Quantized> nf4 = quantizeNf4(values, 64, error);
    ASSERT_TRUE(nf4) << error;
    std::optional<DoubleQuantized> dq = doubleQuantize(nf4->absmax, 256, error);
    ASSERT_TRUE(dq) << error;

    EXPECT_EQ(
        std::vector<uint8_t>(tensor->packed.begin(), tensor->packed.end()),
        nf4->packed);
    EXPECT_EQ(copyAs<uint8_t>(tensor->absmax), dq->codes);
    std::vector<float> nested = copyAs<float>(tensor->nestedAbsmax);
    ASSERT_EQ(nested.size(), dq->nestedAbsmax.size());
    EXPECT_EQ(
        std::memcmp(nested.data(), dq->nestedAbsmax.data(), nested.size() * 4),
        0);
    EXPECT_EQ(std::memcmp(&tensor->offset, &dq->offset, 4), 0)
        << tensor->offset << " vs " << dq->offset;
  }
  EXPECT_EQ(weights, 14); // 2 layers x 7 projections
  // Embeddings and norms are stored as they were.
  EXPECT_FALSE(hasBnbNf4QuantState(*quantized, "model.embed_tokens.weight"));
  EXPECT_FALSE(hasBnbNf4QuantState(*quantized, "lm_head.weight"));
}

/// One stored tensor of a hand-made checkpoint.
struct Piece {
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
using Pieces = std::map<std::string, Piece>;

std::string quantStateJson(const std::string &quantType, int64_t blocksize,
                           const std::string &dtype, const std::string &shape,
                           const std::string &nested) {
  return "{\"quant_type\": \"" + quantType +
         "\", \"blocksize\": " + std::to_string(blocksize) + ", \"dtype\": \"" +
         dtype + "\", \"shape\": " + shape + nested + "}";
}

Piece textPiece(const std::string &text) {
  return {DType::U8,
          {static_cast<int64_t>(text.size())},
          std::vector<uint8_t>(text.begin(), text.end())};
}

/// A weight "w" of shape [8, 64] (8 blocks of 64, one nested block) as
/// bitsandbytes saves it, with or without double quantization.
Pieces validWeight(bool doubleQuantized) {
  std::vector<float> values(8 * 64);
  for (size_t i = 0; i < values.size(); ++i)
    values[i] = static_cast<float>((static_cast<int>(i * 37) % 101) - 50) /
                (50.0f + static_cast<float>(i / 64));
  std::string error;
  Nf4Quantized nf4 = *quantizeNf4(values, 64, error);
  Pieces pieces;
  pieces["w"] = {DType::U8, {256, 1}, nf4.packed};
  pieces["w.quant_map"] = {
      DType::F32,
      {16},
      toBytes(std::vector<float>(kNf4Code.begin(), kNf4Code.end()))};
  if (!doubleQuantized) {
    pieces["w.absmax"] = {DType::F32, {8}, toBytes(nf4.absmax)};
    pieces["w.quant_state.bitsandbytes__nf4"] =
        textPiece(quantStateJson("nf4", 64, "float32", "[8, 64]", ""));
    return pieces;
  }
  DoubleQuantized dq = *doubleQuantize(nf4.absmax, 256, error);
  pieces["w.absmax"] = {DType::U8, {8}, dq.codes};
  pieces["w.nested_absmax"] = {DType::F32, {1}, toBytes(dq.nestedAbsmax)};
  pieces["w.nested_quant_map"] = {
      DType::F32, {256}, toBytes(createDynamicMap(true))};
  pieces["w.quant_state.bitsandbytes__nf4"] = textPiece(quantStateJson(
      "nf4", 64, "bfloat16", "[8, 64]",
      ", \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", "
      "\"nested_offset\": 0.25"));
  return pieces;
}

class BnbNf4Corrupt : public qlora::testing::TempDirTest {
protected:
  BnbNf4Corrupt() : TempDirTest("bnbnf4") {}

  /// Writes `pieces` to a file and opens it.
  std::unique_ptr<SafetensorsFile> write(const Pieces &pieces) {
    std::vector<TensorToWrite> tensors;
    for (const auto &[name, piece] : pieces)
      tensors.push_back({name, piece.dtype, piece.shape, piece.bytes});
    path = (dir / "model.safetensors").string();
    std::string error;
    EXPECT_TRUE(writeSafetensors(path, tensors, {}, error)) << error;
    auto file = SafetensorsFile::open(path, error);
    EXPECT_TRUE(file) << error;
    return file;
  }

  /// The error reading "w" after `mutate` damaged a valid weight; it must
  /// name the file and contain every string of `expected`.
  void expectError(bool doubleQuantized,
                   const std::function<void(Pieces &)> &mutate,
                   std::initializer_list<std::string> expected) {
    Pieces pieces = validWeight(doubleQuantized);
    mutate(pieces);
    auto file = write(pieces);
    ASSERT_TRUE(file);
    std::string error;
    EXPECT_FALSE(readBnbNf4Tensor(*file, "w", error));
    EXPECT_EQ(error.find('\n'), std::string::npos) << error;
    EXPECT_EQ(error.rfind(path + ": ", 0), 0u) << error;
    for (const std::string &part : expected)
      EXPECT_NE(error.find(part), std::string::npos)
          << "'" << part << "' not in: " << error;
  }

  std::string path;
};

TEST_F(BnbNf4Corrupt, ValidDoubleQuantizedWeightReads) {
  Pieces pieces = validWeight(true);
  auto file = write(pieces);
  ASSERT_TRUE(file);
  std::string error;
  std::optional<BnbNf4Tensor> tensor = readBnbNf4Tensor(*file, "w", error);
  ASSERT_TRUE(tensor) << error;
  EXPECT_EQ(tensor->shape, (std::vector<int64_t>{8, 64}));
  EXPECT_EQ(tensor->dtype, DType::BF16);
  EXPECT_EQ(tensor->nestedBlocksize, 256);
  EXPECT_EQ(tensor->offset, 0.25f);
  EXPECT_EQ(tensor->packed.size(), 256u);
  EXPECT_EQ(tensor->absmax.size(), 8u);
  EXPECT_EQ(tensor->nestedAbsmax.size(), 4u);
  EXPECT_EQ(std::memcmp(tensor->packed.data(), pieces["w"].bytes.data(), 256),
            0);
}

TEST_F(BnbNf4Corrupt, ValidPlainWeightReads) {
  auto file = write(validWeight(false));
  ASSERT_TRUE(file);
  std::string error;
  std::optional<BnbNf4Tensor> tensor = readBnbNf4Tensor(*file, "w", error);
  ASSERT_TRUE(tensor) << error;
  EXPECT_FALSE(tensor->isDoubleQuantized());
  EXPECT_EQ(tensor->dtype, DType::F32);
  EXPECT_EQ(tensor->absmax.size(), 8u * 4);
  EXPECT_TRUE(tensor->nestedAbsmax.empty());
}

TEST_F(BnbNf4Corrupt, OddElementCountPadsTheLastByte) {
  Pieces pieces = validWeight(false);
  pieces["w"] = {DType::U8, {8, 1}, std::vector<uint8_t>(8, 0x77)};
  pieces["w.absmax"] = {DType::F32, {1}, toBytes(std::vector<float>{1.0f})};
  pieces["w.quant_state.bitsandbytes__nf4"] =
      textPiece(quantStateJson("nf4", 64, "float16", "[3, 5]", ""));
  auto file = write(pieces);
  ASSERT_TRUE(file);
  std::string error;
  std::optional<BnbNf4Tensor> tensor = readBnbNf4Tensor(*file, "w", error);
  ASSERT_TRUE(tensor) << error;
  EXPECT_EQ(tensor->numElements(), 15);
  EXPECT_EQ(tensor->dtype, DType::F16);
}

TEST_F(BnbNf4Corrupt, WrongQuantMap) {
  expectError(
      true,
      [](Pieces &p) {
        float other = 0.5f;
        std::memcpy(p["w.quant_map"].bytes.data() + 4 * 5, &other, 4);
      },
      {"tensor 'w.quant_map'", "NF4 code table", "found 0.5 at index 5"});
}

TEST_F(BnbNf4Corrupt, WrongNestedQuantMap) {
  expectError(true, [](Pieces &p) { p["w.nested_quant_map"].bytes[0] ^= 1; },
              {"tensor 'w.nested_quant_map'", "dynamic map", "at index 0"});
}

TEST_F(BnbNf4Corrupt, Fp4QuantType) {
  expectError(true,
              [](Pieces &p) {
                p["w.quant_state.bitsandbytes__nf4"] = textPiece(
                    quantStateJson("fp4", 64, "float32", "[8, 64]", ""));
              },
              {"FP4 is not supported, only NF4"});
}

TEST_F(BnbNf4Corrupt, Fp4QuantStateKey) {
  Pieces pieces = validWeight(false);
  pieces["w.quant_state.bitsandbytes__fp4"] =
      pieces["w.quant_state.bitsandbytes__nf4"];
  pieces.erase("w.quant_state.bitsandbytes__nf4");
  auto file = write(pieces);
  ASSERT_TRUE(file);
  EXPECT_TRUE(hasBnbNf4QuantState(*file, "w"));
  std::string error;
  EXPECT_FALSE(readBnbNf4Tensor(*file, "w", error));
  EXPECT_NE(error.find("tensor 'w': bitsandbytes FP4 weight"),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("FP4 is not supported, only NF4"), std::string::npos)
      << error;
}

TEST_F(BnbNf4Corrupt, MissingAbsmax) {
  expectError(true, [](Pieces &p) { p.erase("w.absmax"); },
              {"tensor 'w.absmax': missing; expected U8 [8]"});
}

TEST_F(BnbNf4Corrupt, MissingNestedAbsmax) {
  expectError(true, [](Pieces &p) { p.erase("w.nested_absmax"); },
              {"tensor 'w.nested_absmax': missing; expected F32 [1]"});
}

TEST_F(BnbNf4Corrupt, MissingPackedCodes) {
  expectError(true, [](Pieces &p) { p.erase("w"); }, {"tensor 'w': missing"});
}

TEST_F(BnbNf4Corrupt, AbsmaxSizeMismatch) {
  expectError(
      true,
      [](Pieces &p) {
        p["w.absmax"].shape = {7};
        p["w.absmax"].bytes.resize(7);
      },
      {"tensor 'w.absmax': expected U8 [8]", "8 blocks of 64", "found U8 [7]"});
}

TEST_F(BnbNf4Corrupt, PackedShapeMismatch) {
  expectError(true, [](Pieces &p) { p["w"].shape = {256}; },
              {"tensor 'w': expected U8 [256, 1]",
               "512 elements of shape [8, 64]", "found U8 [256]"});
}

TEST_F(BnbNf4Corrupt, QuantStateShapeDisagreesWithPackedCodes) {
  expectError(
      true,
      [](Pieces &p) {
        p["w.quant_state.bitsandbytes__nf4"] = textPiece(quantStateJson(
            "nf4", 64, "float32", "[8, 128]",
            ", \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", "
            "\"nested_offset\": 0.25"));
      },
      {"tensor 'w': expected U8 [512, 1]", "found U8 [256, 1]"});
}

TEST_F(BnbNf4Corrupt, PlainAbsmaxMustBeF32) {
  expectError(false,
              [](Pieces &p) {
                p["w.absmax"] = {DType::U8, {8}, std::vector<uint8_t>(8)};
              },
              {"tensor 'w.absmax': expected F32 [8]", "found U8 [8]"});
}

TEST_F(BnbNf4Corrupt, NestedTensorsWithoutNestedQuantState) {
  expectError(
      false,
      [](Pieces &p) {
        p["w.nested_absmax"] = {DType::F32, {1}, std::vector<uint8_t>(4)};
      },
      {"tensor 'w.nested_absmax': unexpected", "not double quantized"});
}

TEST_F(BnbNf4Corrupt, NestedDtypeMustBeFloat32) {
  expectError(
      true,
      [](Pieces &p) {
        p["w.quant_state.bitsandbytes__nf4"] = textPiece(quantStateJson(
            "nf4", 64, "float32", "[8, 64]",
            ", \"nested_blocksize\": 256, \"nested_dtype\": \"float16\", "
            "\"nested_offset\": 0.25"));
      },
      {"w.quant_state.bitsandbytes__nf4'", "key 'nested_dtype'",
       "expected \"float32\", found \"float16\""});
}

TEST_F(BnbNf4Corrupt, MissingNestedOffset) {
  expectError(
      true,
      [](Pieces &p) {
        p["w.quant_state.bitsandbytes__nf4"] = textPiece(quantStateJson(
            "nf4", 64, "float32", "[8, 64]",
            ", \"nested_blocksize\": 256, \"nested_dtype\": \"float32\""));
      },
      {"missing key 'nested_offset'"});
}

TEST_F(BnbNf4Corrupt, UnknownDtype) {
  expectError(
      false,
      [](Pieces &p) {
        p["w.quant_state.bitsandbytes__nf4"] =
            textPiece(quantStateJson("nf4", 64, "int8", "[8, 64]", ""));
      },
      {"key 'dtype': expected \"float32\", \"bfloat16\" or \"float16\", "
       "found \"int8\""});
}

TEST_F(BnbNf4Corrupt, BlocksizeNotAPowerOfTwo) {
  expectError(
      false,
      [](Pieces &p) {
        p["w.quant_state.bitsandbytes__nf4"] =
            textPiece(quantStateJson("nf4", 48, "float32", "[8, 64]", ""));
      },
      {"key 'blocksize': expected a power of two in [32, 4096]", "found 48"});
}

TEST_F(BnbNf4Corrupt, QuantStateIsNotJson) {
  expectError(false,
              [](Pieces &p) {
                p["w.quant_state.bitsandbytes__nf4"] =
                    textPiece("{\"quant_type\": ");
              },
              {"tensor 'w.quant_state.bitsandbytes__nf4'", "malformed JSON"});
}

TEST_F(BnbNf4Corrupt, QuantStateMustBeBytes) {
  expectError(
      false,
      [](Pieces &p) { p["w.quant_state.bitsandbytes__nf4"].dtype = DType::I8; },
      {"expected U8 [bytes]", "found I8"});
}

TEST_F(BnbNf4Corrupt, NoQuantState) {
  Pieces pieces = validWeight(false);
  pieces.erase("w.quant_state.bitsandbytes__nf4");
  auto file = write(pieces);
  ASSERT_TRUE(file);
  EXPECT_FALSE(hasBnbNf4QuantState(*file, "w"));
  std::string error;
  EXPECT_FALSE(readBnbNf4Tensor(*file, "w", error));
  EXPECT_NE(error.find("tensor 'w.quant_state.bitsandbytes__nf4': missing"),
            std::string::npos)
      << error;
}

} // namespace
} // namespace qlora::format
