//===- DataTest.cpp - TokenDataset tests ----------------------------------===//
//
// Raw uint16/uint32 token files and JSONL files: windows, labels, padding,
// truncation, wraparound and seeking, and every error a user can cause, each
// checked word for word.
//
//===----------------------------------------------------------------------===//
#include "runtime/data/TokenDataset.h"

#include "test/runtime/TempDirTest.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <unistd.h>

namespace qlora::data {
namespace {

namespace fs = std::filesystem;

class DataTest : public qlora::testing::TempDirTest {
protected:
  DataTest() : TempDirTest("data") {}

  std::string writeBytes(const std::string &name, const std::string &bytes) {
    std::string path = (dir / name).string();
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path;
  }
  /// Little-endian ids of `width` bytes each.
  std::string writeTokens(const std::string &name,
                          const std::vector<uint32_t> &ids, int width) {
    std::string bytes;
    for (uint32_t id : ids)
      for (int i = 0; i < width; ++i)
        bytes += static_cast<char>((id >> (8 * i)) & 0xff);
    return writeBytes(name, bytes);
  }

  std::unique_ptr<TokenDataset> open(const std::string &path, int64_t batch,
                                     int64_t seq, int64_t vocab,
                                     DataFormat format = DataFormat::Auto) {
    error.clear();
    return TokenDataset::open(path, format, batch, seq, vocab, error);
  }
  /// Opening `path` fails with exactly `path + ": " + message`.
  void expectError(const std::string &path, int64_t batch, int64_t seq,
                   int64_t vocab, const std::string &message,
                   DataFormat format = DataFormat::Auto) {
    EXPECT_EQ(open(path, batch, seq, vocab, format), nullptr);
    EXPECT_EQ(error, path + ": " + message);
  }

  std::string error;
};

/// One batch as [tokens, labels].
struct Batch {
  std::vector<int32_t> tokens, labels;
};

Batch next(TokenDataset &dataset) {
  Batch batch;
  batch.tokens.resize(static_cast<size_t>(dataset.tokensPerBatch()));
  batch.labels.resize(batch.tokens.size());
  dataset.nextBatch(batch.tokens, batch.labels);
  return batch;
}

std::vector<uint32_t> iota(uint32_t count, uint32_t first = 0) {
  std::vector<uint32_t> ids(count);
  std::iota(ids.begin(), ids.end(), first);
  return ids;
}

//===----------------------------------------------------------------------===//
// Formats
//===----------------------------------------------------------------------===//

TEST(DataFormatTest, DetectsFormatFromTheFileName) {
  EXPECT_EQ(detectDataFormat("train.jsonl"), DataFormat::Jsonl);
  EXPECT_EQ(detectDataFormat("train.u32"), DataFormat::U32);
  EXPECT_EQ(detectDataFormat("train.bin32"), DataFormat::U32);
  EXPECT_EQ(detectDataFormat("train.bin"), DataFormat::U16);
  EXPECT_EQ(detectDataFormat("train.u16"), DataFormat::U16);
  EXPECT_EQ(detectDataFormat("train"), DataFormat::U16);
  EXPECT_EQ(detectDataFormat("jsonl/train.bin"), DataFormat::U16);
}

TEST(DataFormatTest, ParsesFormatNames) {
  EXPECT_EQ(parseDataFormat("auto"), DataFormat::Auto);
  EXPECT_EQ(parseDataFormat("u16"), DataFormat::U16);
  EXPECT_EQ(parseDataFormat("u32"), DataFormat::U32);
  EXPECT_EQ(parseDataFormat("jsonl"), DataFormat::Jsonl);
  EXPECT_EQ(parseDataFormat("U16"), std::nullopt);
  EXPECT_EQ(parseDataFormat(""), std::nullopt);
  for (DataFormat format :
       {DataFormat::Auto, DataFormat::U16, DataFormat::U32, DataFormat::Jsonl})
    EXPECT_EQ(parseDataFormat(dataFormatName(format)), format);
}

//===----------------------------------------------------------------------===//
// Raw token files
//===----------------------------------------------------------------------===//

TEST_F(DataTest, U16FileIsCutIntoWindowsOfSeqPlusOne) {
  // seq 3: windows of 4 tokens, so 14 tokens make 3 windows and a tail of 2.
  std::string path = writeTokens("data.u16", iota(14, 100), 2);
  auto dataset = open(path, /*batch=*/2, /*seq=*/3, /*vocab=*/200);
  ASSERT_TRUE(dataset) << error;
  EXPECT_EQ(dataset->format(), DataFormat::U16);
  EXPECT_EQ(dataset->numSequences(), 3);
  EXPECT_EQ(dataset->tokensPerBatch(), 6);
  EXPECT_EQ(dataset->batchSize(), 2);
  EXPECT_EQ(dataset->seqLength(), 3);

  // The window's last token (103, 107, ...) is never an input; labels equal
  // input_ids.
  Batch first = next(*dataset);
  EXPECT_EQ(first.tokens, (std::vector<int32_t>{100, 101, 102, 104, 105, 106}));
  EXPECT_EQ(first.labels, first.tokens);
  // The second batch straddles the wrap: window 2, then window 0 again.
  Batch second = next(*dataset);
  EXPECT_EQ(second.tokens,
            (std::vector<int32_t>{108, 109, 110, 100, 101, 102}));
  EXPECT_EQ(second.labels, second.tokens);
  EXPECT_EQ(dataset->position(), 1);
  Batch third = next(*dataset);
  EXPECT_EQ(third.tokens, (std::vector<int32_t>{104, 105, 106, 108, 109, 110}));
}

TEST_F(DataTest, U16IdsAreLittleEndianAndUseAllSixteenBits) {
  std::string path = writeTokens("data.bin", {0x1234, 0xfffe, 1, 2}, 2);
  auto dataset = open(path, 1, 3, 65535);
  ASSERT_TRUE(dataset) << error;
  Batch batch = next(*dataset);
  EXPECT_EQ(batch.tokens, (std::vector<int32_t>{0x1234, 0xfffe, 1}));
}

TEST_F(DataTest, U32FilesAreDetectedByExtensionOrChosenExplicitly) {
  std::vector<uint32_t> ids = {70000, 1, 128255, 5, 6, 7};
  for (const char *name : {"data.u32", "data.bin32"}) {
    SCOPED_TRACE(name);
    auto dataset = open(writeTokens(name, ids, 4), 2, 2, 128256);
    ASSERT_TRUE(dataset) << error;
    EXPECT_EQ(dataset->format(), DataFormat::U32);
    Batch batch = next(*dataset);
    EXPECT_EQ(batch.tokens, (std::vector<int32_t>{70000, 1, 5, 6}));
    EXPECT_EQ(batch.labels, batch.tokens);
  }
  auto dataset =
      open(writeTokens("data.bin", ids, 4), 2, 2, 128256, DataFormat::U32);
  ASSERT_TRUE(dataset) << error;
  EXPECT_EQ(dataset->format(), DataFormat::U32);
  EXPECT_EQ(next(*dataset).tokens, (std::vector<int32_t>{70000, 1, 5, 6}));
}

TEST_F(DataTest, SeekSetsTheNextSequenceModuloTheFile) {
  std::string path = writeTokens("data.u16", iota(12), 2); // 3 windows of 4
  auto dataset = open(path, 1, 3, 100);
  ASSERT_TRUE(dataset) << error;
  dataset->seek(2);
  EXPECT_EQ(next(*dataset).tokens, (std::vector<int32_t>{8, 9, 10}));
  EXPECT_EQ(dataset->position(), 0);
  // Resuming after 7 batches of 1: sequence 7 mod 3.
  dataset->seek(7);
  EXPECT_EQ(next(*dataset).tokens, (std::vector<int32_t>{4, 5, 6}));
  dataset->seek(-1);
  EXPECT_EQ(next(*dataset).tokens, (std::vector<int32_t>{8, 9, 10}));
}

TEST_F(DataTest, ShuffleVisitsEverySequenceOncePerPassInASeededOrder) {
  // 8 windows of seq+1 = 2 tokens; window k starts with token 2k.
  std::string path = writeTokens("shuffled.u16", iota(16), 2);
  auto firstTokens = [&](uint64_t seed) {
    auto dataset = open(path, 1, 1, 16);
    dataset->shuffle(seed);
    std::vector<int32_t> seen;
    for (int i = 0; i < 16; ++i)
      seen.push_back(next(*dataset).tokens[0]);
    return seen;
  };
  std::vector<int32_t> order = firstTokens(7);
  EXPECT_EQ(order, firstTokens(7)) << "the order is a function of the seed";
  EXPECT_NE(order, firstTokens(8));
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<int32_t> visited(order.begin() + pass * 8,
                                 order.begin() + pass * 8 + 8);
    std::sort(visited.begin(), visited.end());
    EXPECT_EQ(visited, (std::vector<int32_t>{0, 2, 4, 6, 8, 10, 12, 14}))
        << "pass " << pass << " visits every window once";
  }
  EXPECT_NE(std::vector<int32_t>(order.begin(), order.begin() + 8),
            std::vector<int32_t>(order.begin() + 8, order.end()))
      << "each pass draws a fresh order";
  EXPECT_EQ(firstTokens(0)[3], 6) << "seed 0 keeps file order";
}

TEST_F(DataTest, FewerWindowsThanOneBatchIsAnError) {
  std::string path = writeTokens("data.u16", iota(812), 2);
  expectError(path, 4, 256, 1000,
              "812 tokens make 3 windows of seq+1 = 257 tokens, fewer than "
              "one batch of 4 sequences");
  // Exactly one batch is enough.
  EXPECT_TRUE(open(path, 3, 256, 1000)) << error;
}

TEST_F(DataTest, EmptyRawFileIsAnError) {
  std::string path = writeBytes("empty.u16", "");
  expectError(path, 1, 8, 100,
              "0 tokens make 0 windows of seq+1 = 9 tokens, fewer than one "
              "batch of 1 sequences");
}

TEST_F(DataTest, SizeNotAMultipleOfTheElementIsAnError) {
  std::string path = writeBytes("odd.u16", "abc");
  expectError(path, 1, 1, 100,
              "file is 3 bytes, expected a multiple of 2 (little-endian "
              "uint16 token ids)");
  path = writeBytes("odd.u32", "abcdef");
  expectError(path, 1, 1, 100,
              "file is 6 bytes, expected a multiple of 4 (little-endian "
              "uint32 token ids)");
}

TEST_F(DataTest, RawTokenOutOfRangeNamesIndexAndByteOffset) {
  std::vector<uint32_t> ids = iota(20);
  ids[13] = 300;
  std::string path = writeTokens("data.u16", ids, 2);
  expectError(path, 1, 3, 256,
              "token id 300 at token index 13 (byte offset 26) is out of "
              "range for vocab_size 256");
  path = writeTokens("data.u32", ids, 4);
  expectError(path, 1, 3, 256,
              "token id 300 at token index 13 (byte offset 52) is out of "
              "range for vocab_size 256");
}

TEST_F(DataTest, RawTokenOutOfRangeIsFoundInTheUnusedTail) {
  // 4 windows of 4 tokens use 16 tokens; token 17 is past them.
  std::vector<uint32_t> ids = iota(18);
  ids[17] = 256;
  std::string path = writeTokens("data.u16", ids, 2);
  expectError(path, 1, 3, 256,
              "token id 256 at token index 17 (byte offset 34) is out of "
              "range for vocab_size 256");
}

TEST_F(DataTest, MissingFileIsAnError) {
  std::string path = (dir / "missing.u16").string();
  expectError(path, 1, 1, 10, "cannot open: No such file or directory");
  path = (dir / "missing.jsonl").string();
  expectError(path, 1, 1, 10, "cannot open: No such file or directory");
}

TEST_F(DataTest, DirectoryIsNotATokenFile) {
  std::string path = dir.string();
  expectError(path, 1, 1, 10, "is not a regular file, expected a token file",
              DataFormat::U16);
}

TEST_F(DataTest, ShapeArgumentsAreChecked) {
  std::string path = writeTokens("data.u16", iota(8), 2);
  expectError(path, 0, 3, 10,
              "batch size is 0, expected an integer in [1, "
              "2147483648]");
  expectError(path, 1, -1, 10,
              "sequence length is -1, expected an integer "
              "in [1, 2147483648]");
  expectError(path, 1, 3, 0,
              "vocab_size is 0, expected an integer in [1, "
              "2147483648]");
  expectError(path, 65536, 65536, 10,
              "batch size 65536 times sequence length 65536 is 4294967296 "
              "tokens, expected at most 2147483648");
}

//===----------------------------------------------------------------------===//
// JSONL
//===----------------------------------------------------------------------===//

TEST_F(DataTest, JsonlPadsTruncatesAndKeepsLabels) {
  std::string path = writeBytes(
      "data.jsonl",
      "{\"input_ids\": [1, 2]}\n"
      "\n"
      "   \n"
      "{\"input_ids\": [3, 4, 5, 6, 7, 8], \"labels\": [-100, 4, 5, 6, 7, 8]}\n"
      "{\"labels\": [-100, -100, 9, 10], \"input_ids\": [7, 8, 9, 10], "
      "\"text\": \"ignored\"}\r\n"
      "{\"input_ids\": [11, 12, 13, 14]}");
  auto dataset = open(path, 2, 4, 20);
  ASSERT_TRUE(dataset) << error;
  EXPECT_EQ(dataset->format(), DataFormat::Jsonl);
  EXPECT_EQ(dataset->numSequences(), 4);
  EXPECT_EQ(dataset->tokensPerBatch(), 8);

  Batch first = next(*dataset);
  // Padded with token 0 / label -100; the second record is truncated to 4.
  EXPECT_EQ(first.tokens, (std::vector<int32_t>{1, 2, 0, 0, 3, 4, 5, 6}));
  EXPECT_EQ(first.labels,
            (std::vector<int32_t>{1, 2, -100, -100, -100, 4, 5, 6}));
  Batch second = next(*dataset);
  EXPECT_EQ(second.tokens, (std::vector<int32_t>{7, 8, 9, 10, 11, 12, 13, 14}));
  EXPECT_EQ(second.labels,
            (std::vector<int32_t>{-100, -100, 9, 10, 11, 12, 13, 14}));
  // Back to the start.
  EXPECT_EQ(next(*dataset).tokens, first.tokens);
}

TEST_F(DataTest, JsonlBatchStraddlesTheWrap) {
  std::string path = writeBytes("data.jsonl", "{\"input_ids\": [1]}\n"
                                              "{\"input_ids\": [2]}\n"
                                              "{\"input_ids\": [3]}\n");
  auto dataset = open(path, 2, 1, 10);
  ASSERT_TRUE(dataset) << error;
  EXPECT_EQ(next(*dataset).tokens, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(next(*dataset).tokens, (std::vector<int32_t>{3, 1}));
  EXPECT_EQ(next(*dataset).tokens, (std::vector<int32_t>{2, 3}));
  dataset->seek(4);
  EXPECT_EQ(next(*dataset).tokens, (std::vector<int32_t>{2, 3}));
}

TEST_F(DataTest, JsonlTokenOutOfRangeNamesLineAndPosition) {
  std::string text;
  for (int line = 1; line < 17; ++line)
    text += line % 4 == 0 ? "\n" : "{\"input_ids\": [1, 2, 3]}\n";
  text += "{\"input_ids\": [0, 1, 2, 3, 4, 300, 6]}\n";
  std::string path = writeBytes("data.jsonl", text);
  EXPECT_FALSE(open(path, 1, 4, 256));
  EXPECT_EQ(error, path + ":17: token id 300 at position 5 is out of range "
                          "for vocab_size 256");
}

TEST_F(DataTest, JsonlChecksTokensThatTruncationDrops) {
  std::string path =
      writeBytes("data.jsonl", "{\"input_ids\": [1, 2, 3, 4, 999]}\n");
  EXPECT_FALSE(open(path, 1, 2, 256));
  EXPECT_EQ(error, path + ":1: token id 999 at position 4 is out of range "
                          "for vocab_size 256");
}

/// Each bad line, alone in a file, gives `path:1: <message>`.
struct BadLine {
  const char *line;
  const char *message;
};

TEST_F(DataTest, JsonlBadLinesNameFileAndLine) {
  const BadLine cases[] = {
      {"{\"input_ids\": [1, 2", "malformed JSON at column 20: syntax error "
                                "while parsing array - unexpected end of "
                                "input; expected ']'"},
      {"{\"input_ids\": [1]} x",
       "malformed JSON at column 20: syntax error while parsing value - "
       "invalid literal; last read: '1]} x'; expected end of input"},
      {"[1, 2, 3]", "found array [1,2,3], expected a JSON object with an "
                    "\"input_ids\" array"},
      {"{\"tokens\": [1]}",
       "no \"input_ids\" key, expected an array of token ids"},
      {"{\"input_ids\": \"hello\"}",
       "\"input_ids\" is string \"hello\", expected a non-empty array of "
       "token ids"},
      {"{\"input_ids\": []}",
       "\"input_ids\" is array [], expected a non-empty array of token ids"},
      {"{\"input_ids\": [1, 2.5]}",
       "input_ids[1] is number 2.5, expected a non-negative integer"},
      {"{\"input_ids\": [1, -3]}",
       "input_ids[1] is number -3, expected a non-negative integer"},
      {"{\"input_ids\": [\"a\"]}",
       "input_ids[0] is string \"a\", expected a non-negative integer"},
      {"{\"input_ids\": [1, 2], \"labels\": [1]}",
       "\"labels\" has 1 entries, expected 2 like \"input_ids\""},
      {"{\"input_ids\": [1, 2], \"labels\": 5}",
       "\"labels\" is number 5, expected an array of token ids or -100"},
      {"{\"input_ids\": [1, 2], \"labels\": [1, -5]}",
       "labels[1] is number -5, expected -100 or a token id in [0, 10)"},
      {"{\"input_ids\": [1, 2], \"labels\": [10, 2]}",
       "labels[0] is number 10, expected -100 or a token id in [0, 10)"},
      {"{\"input_ids\": [1, 2], \"labels\": [null, 2]}",
       "labels[0] is null null, expected -100 or a token id in [0, 10)"},
  };
  for (const BadLine &bad : cases) {
    SCOPED_TRACE(bad.line);
    std::string path = writeBytes("bad.jsonl", std::string("\n") + bad.line);
    EXPECT_FALSE(open(path, 1, 4, 10));
    EXPECT_EQ(error, path + ":2: " + bad.message);
  }
}

TEST_F(DataTest, JsonlFewerRecordsThanOneBatchIsAnError) {
  std::string path = writeBytes("data.jsonl", "{\"input_ids\": [1]}\n\n"
                                              "{\"input_ids\": [2]}\n"
                                              "{\"input_ids\": [3]}\n");
  expectError(path, 4, 8, 10,
              "3 records (non-blank lines), fewer than one batch of 4 "
              "sequences");
  path = writeBytes("empty.jsonl", "\n\n");
  expectError(path, 1, 8, 10,
              "0 records (non-blank lines), fewer than one batch of 1 "
              "sequences");
}

TEST_F(DataTest, JsonlCanBeChosenExplicitly) {
  std::string path = writeBytes("data.txt", "{\"input_ids\": [4, 5]}\n");
  auto dataset = open(path, 1, 2, 10, DataFormat::Jsonl);
  ASSERT_TRUE(dataset) << error;
  EXPECT_EQ(next(*dataset).tokens, (std::vector<int32_t>{4, 5}));
}

} // namespace
} // namespace qlora::data
