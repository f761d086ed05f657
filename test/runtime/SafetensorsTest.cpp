//===- SafetensorsTest.cpp - Safetensors reader and writer tests ----------===//
//
// Round trips through writeSafetensors/SafetensorsFile, byte-exact layout
// against the Python `safetensors` package, and one case per way a header can
// be damaged, each built by hand so that the reader sees exactly those bytes.
//
//===----------------------------------------------------------------------===//
#include "runtime/format/Safetensors.h"
#include "runtime/format/SafetensorsWriter.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sys/stat.h>
#include <unistd.h>

namespace qlora::format {
namespace {

namespace fs = std::filesystem;

template <typename T>
std::span<const uint8_t> asBytes(const std::vector<T> &v) {
  return {reinterpret_cast<const uint8_t *>(v.data()), v.size() * sizeof(T)};
}

std::vector<uint8_t> toVector(std::span<const uint8_t> bytes) {
  return {bytes.begin(), bytes.end()};
}

/// A safetensors file spelled out: the length field (the header's own size
/// unless `length` overrides it), `header` verbatim, then `dataBytes` bytes.
std::string fileBytes(const std::string &header, size_t dataBytes,
                      std::optional<uint64_t> length = std::nullopt) {
  uint64_t value = length.value_or(header.size());
  std::string bytes;
  for (int i = 0; i < 8; ++i)
    bytes += static_cast<char>((value >> (8 * i)) & 0xff);
  bytes += header;
  for (size_t i = 0; i < dataBytes; ++i)
    bytes += static_cast<char>(i);
  return bytes;
}

/// Gives every test its own directory under gtest's temp dir, so tests can
/// run in parallel (ctest -j) and check what a directory holds afterwards.
class SafetensorsTest : public ::testing::Test {
protected:
  void SetUp() override {
    const auto *info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "." +
                       info->name() + "." + std::to_string(::getpid());
    for (char &c : name)
      if (c == '/')
        c = '_';
    dir = fs::path(::testing::TempDir()) / ("qlora-safetensors-" + name);
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }

  std::string pathOf(const std::string &name) const {
    return (dir / name).string();
  }
  std::string writeRaw(const std::string &name, const std::string &bytes) {
    std::string path = pathOf(name);
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path;
  }
  std::string readRaw(const std::string &path) const {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in),
            std::istreambuf_iterator<char>()};
  }
  std::vector<std::string> filesInDir() const {
    std::vector<std::string> names;
    for (const auto &entry : fs::directory_iterator(dir))
      names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  fs::path dir;
};

//===----------------------------------------------------------------------===//
// Round trips
//===----------------------------------------------------------------------===//

TEST_F(SafetensorsTest, RoundTripsEveryDTypeAndShapeKind) {
  std::vector<float> f32 = {1, 2, 3, 4, 5, 6};
  std::vector<uint16_t> bf16 = {0x3f80, 0x4000, 0xc040, 0x0000};
  std::vector<uint16_t> f16 = {0x3c00, 0x4000, 0x4200, 0x7bff};
  std::vector<int32_t> i32 = {-1, 0, 1};
  std::vector<uint8_t> u8 = {1, 2, 3, 4, 5};
  std::vector<float> scalar = {42};
  std::vector<TensorToWrite> tensors = {
      {"f32", DType::F32, {2, 3}, asBytes(f32)},
      {"bf16", DType::BF16, {4}, asBytes(bf16)},
      {"f16", DType::F16, {2, 2}, asBytes(f16)},
      {"i32", DType::I32, {3}, asBytes(i32)},
      {"u8", DType::U8, {5}, asBytes(u8)},
      {"scalar", DType::F32, {}, asBytes(scalar)},
      {"empty", DType::F32, {0, 4}, {}},
  };
  std::string path = pathOf("model.safetensors");
  std::string error;
  ASSERT_TRUE(writeSafetensors(path, tensors, {}, error)) << error;

  std::unique_ptr<SafetensorsFile> file = SafetensorsFile::open(path, error);
  ASSERT_TRUE(file) << error;
  EXPECT_EQ(file->path(), path);
  EXPECT_TRUE(file->metadata().empty());
  ASSERT_EQ(file->tensors().size(), tensors.size());
  // Written contiguously in the given order, so data-offset order is that.
  for (size_t i = 0; i < tensors.size(); ++i)
    EXPECT_EQ(file->tensors()[i].name, tensors[i].name);
  EXPECT_EQ(file->tensors().front().fileOffset % 8, 0u)
      << "the data buffer must start 8-byte aligned";

  for (const TensorToWrite &expected : tensors) {
    SCOPED_TRACE(expected.name);
    const TensorView *view = file->find(expected.name);
    ASSERT_TRUE(view);
    EXPECT_EQ(view->name, expected.name);
    EXPECT_EQ(view->dtype, expected.dtype);
    EXPECT_EQ(view->shape, expected.shape);
    EXPECT_EQ(toVector(view->bytes), toVector(expected.bytes));
    EXPECT_EQ(static_cast<size_t>(view->numElements()) * dtypeSize(view->dtype),
              view->bytes.size());
  }
  EXPECT_EQ(file->find("scalar")->numElements(), 1);
  EXPECT_EQ(file->find("empty")->numElements(), 0);
  EXPECT_EQ(file->find("missing"), nullptr);
}

TEST_F(SafetensorsTest, RoundTripsMetadata) {
  std::vector<float> weight = {0.5f, -0.5f};
  std::vector<TensorToWrite> tensors = {
      {"w", DType::F32, {2}, asBytes(weight)}};
  std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"note", "h\xc3\xa9llo \xe2\x9c\x93"}, {"empty", ""}};
  std::string path = pathOf("adapter_model.safetensors");
  std::string error;
  ASSERT_TRUE(writeSafetensors(path, tensors, metadata, error)) << error;

  std::unique_ptr<SafetensorsFile> file = SafetensorsFile::open(path, error);
  ASSERT_TRUE(file) << error;
  EXPECT_EQ(file->metadata(), metadata);
  ASSERT_EQ(file->tensors().size(), 1u);
  EXPECT_EQ(toVector(file->tensors()[0].bytes), toVector(asBytes(weight)));
}

TEST_F(SafetensorsTest, RoundTripsAFileWithoutTensors) {
  std::string path = pathOf("empty.safetensors");
  std::string error;
  ASSERT_TRUE(writeSafetensors(path, {}, {}, error)) << error;
  std::unique_ptr<SafetensorsFile> file = SafetensorsFile::open(path, error);
  ASSERT_TRUE(file) << error;
  EXPECT_TRUE(file->tensors().empty());
  EXPECT_EQ(file->find(""), nullptr);
}

// Bytes produced by safetensors 0.8.0:
//   safetensors.numpy.save({"a": np.array([1, 2], np.float32)},
//                          metadata={"format": "pt"})
const char kPythonFile[] =
    "X\0\0\0\0\0\0\0"
    R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],)"
    R"("data_offsets":[0,8]}}   )"
    "\0\0\x80?\0\0\0@";

TEST_F(SafetensorsTest, WritesTheSameBytesAsThePythonPackage) {
  std::vector<float> a = {1, 2};
  std::vector<TensorToWrite> tensors = {{"a", DType::F32, {2}, asBytes(a)}};
  std::string path = pathOf("a.safetensors");
  std::string error;
  ASSERT_TRUE(writeSafetensors(path, tensors, {{"format", "pt"}}, error))
      << error;
  EXPECT_EQ(readRaw(path), std::string(kPythonFile, sizeof(kPythonFile) - 1));
}

TEST_F(SafetensorsTest, ReadsAFileWrittenByThePythonPackage) {
  std::string path = writeRaw(
      "a.safetensors", std::string(kPythonFile, sizeof(kPythonFile) - 1));
  std::string error;
  std::unique_ptr<SafetensorsFile> file = SafetensorsFile::open(path, error);
  ASSERT_TRUE(file) << error;
  EXPECT_EQ(file->metadata().at("format"), "pt");
  const TensorView *a = file->find("a");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->dtype, DType::F32);
  EXPECT_EQ(a->shape, std::vector<int64_t>{2});
  EXPECT_EQ(a->fileOffset, 8u + 88u);
  float values[2];
  ASSERT_EQ(a->bytes.size(), sizeof(values));
  std::memcpy(values, a->bytes.data(), sizeof(values));
  EXPECT_EQ(values[0], 1.0f);
  EXPECT_EQ(values[1], 2.0f);
}

TEST_F(SafetensorsTest, SortsTensorsByDataOffsetNotHeaderOrder) {
  std::string header =
      R"({"z":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
      R"("b":{"dtype":"U8","shape":[1],"data_offsets":[4,5]},)"
      R"("a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})";
  std::string path = writeRaw("order.safetensors", fileBytes(header, 5));
  std::string error;
  std::unique_ptr<SafetensorsFile> file = SafetensorsFile::open(path, error);
  ASSERT_TRUE(file) << error;
  ASSERT_EQ(file->tensors().size(), 3u);
  EXPECT_EQ(file->tensors()[0].name, "z");
  EXPECT_EQ(file->tensors()[1].name, "a");
  EXPECT_EQ(file->tensors()[2].name, "b");
  EXPECT_EQ(file->find("a")->fileOffset, 8 + header.size() + 2);
  EXPECT_EQ(file->find("b")->bytes[0], 4);
}

TEST_F(SafetensorsTest, AcceptsHeaderPaddingEmptyTensorsAndUnusedBytes) {
  // An empty tensor owns no byte, so sharing an offset with a non-empty one
  // is not an overlap; bytes no tensor claims are allowed, as in the Python
  // reader.
  std::string header = R"({"w":{"dtype":"F32","shape":[1],)"
                       R"("data_offsets":[0,4]},)"
                       R"("e":{"dtype":"BF16","shape":[3,0],)"
                       R"("data_offsets":[0,0]}}      )";
  std::string path = writeRaw("ok.safetensors", fileBytes(header, 16));
  std::string error;
  std::unique_ptr<SafetensorsFile> file = SafetensorsFile::open(path, error);
  ASSERT_TRUE(file) << error;
  ASSERT_EQ(file->tensors().size(), 2u);
  EXPECT_EQ(file->tensors()[0].name, "e");
  EXPECT_TRUE(file->find("e")->bytes.empty());
  EXPECT_EQ(file->find("w")->bytes.size(), 4u);
}

//===----------------------------------------------------------------------===//
// Malformed files: open() fails with one line naming the file and the spot
//===----------------------------------------------------------------------===//

struct MalformedCase {
  std::string name;
  std::string bytes;
  /// Substrings the error must contain besides the file's path.
  std::vector<std::string> expected;
};

/// Keeps gtest from listing each case as a hex dump of the struct.
void PrintTo(const MalformedCase &c, std::ostream *os) { *os << c.name; }

std::string entry(const std::string &dtype, const std::string &shape,
                  const std::string &offsets) {
  return R"({"dtype":)" + dtype + R"(,"shape":)" + shape +
         R"(,"data_offsets":)" + offsets + "}";
}

std::vector<MalformedCase> malformedCases() {
  std::string past =
      R"({"model.norm.weight":)" + entry(R"("F32")", "[256]", "[0,1024]") + "}";
  return {
      {"FileShorterThanLengthField",
       std::string("\x05\0\0\0\0", 5),
       {"file is 5 bytes", "expected at least 8", "byte offset 0"}},
      {"HeaderLengthPastEndOfFile",
       fileBytes("{}", 0, 1000),
       {"header length 1000 at byte offset 0",
        "runs past the end of the file (10 bytes, so at most 2)"}},
      {"HeaderLengthAbsurd",
       fileBytes("{}", 0, uint64_t{1} << 40),
       {"header length 1099511627776 at byte offset 0",
        "exceeds the limit of 100000000 bytes"}},
      {"MalformedJson",
       fileBytes(R"({"a": })", 0),
       {"malformed JSON header at byte offset 14", "unexpected '}'"}},
      {"TruncatedJson",
       fileBytes(R"({"a": {"dtype": "F32")", 64),
       {"malformed JSON header at byte offset 29", "unexpected end of input"}},
      {"InvalidUtf8InHeader",
       fileBytes("{\"\xff\": 1}", 0),
       {"malformed JSON header at byte offset 10", "ill-formed UTF-8",
        "last read: '\"\\xff'"}},
      {"HeaderNotObject",
       fileBytes("[1, 2]", 0),
       {"header at byte offset 8 is array [1,2]", "expected a JSON object"}},
      {"DuplicateKey",
       fileBytes(R"({"w":)" + entry(R"("U8")", "[1]", "[0,1]") + R"(,"w":)" +
                     entry(R"("U8")", "[1]", "[1,2]") + "}",
                 2),
       {"key 'w' appears twice in the header"}},
      {"EntryNotObject",
       fileBytes(R"({"w": 3})", 0),
       {"tensor 'w': entry is number 3", "expected an object"}},
      {"MissingDtype",
       fileBytes(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4),
       {"tensor 'w': \"dtype\" is missing", "expected a string"}},
      {"DtypeNotString",
       fileBytes(R"({"w":)" + entry("7", "[1]", "[0,4]") + "}", 4),
       {"tensor 'w': \"dtype\" is number 7", "expected a string"}},
      {"UnknownDtype",
       fileBytes(R"({"w":)" + entry(R"("F8_E4M3")", "[1]", "[0,1]") + "}", 1),
       {"tensor 'w': \"dtype\" is unknown dtype 'F8_E4M3'",
        "expected one of F64, F32, F16, BF16"}},
      {"MissingShape",
       fileBytes(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", 4),
       {"tensor 'w': \"shape\" is missing", "expected an array"}},
      {"ShapeNotArray",
       fileBytes(R"({"w":)" + entry(R"("F32")", R"("2x2")", "[0,16]") + "}",
                 16),
       {"tensor 'w': \"shape\" is string \"2x2\"", "expected an array"}},
      {"NegativeDim",
       fileBytes(R"({"w":)" + entry(R"("F32")", "[2,-3]", "[0,24]") + "}", 24),
       {"tensor 'w': shape[1] is number -3",
        "expected a non-negative integer"}},
      {"NonIntegerDim",
       fileBytes(R"({"w":)" + entry(R"("F32")", "[2.5]", "[0,8]") + "}", 8),
       {"tensor 'w': shape[0] is number 2.5",
        "expected a non-negative integer"}},
      {"DimPastInt64",
       fileBytes(R"({"w":)" +
                     entry(R"("U8")", "[9223372036854775808]", "[0,8]") + "}",
                 8),
       {"tensor 'w': shape[0] is number 9223372036854775808", "below 2^63"}},
      {"ElementCountOverflow",
       fileBytes(R"({"w":)" +
                     entry(R"("U8")", "[4294967296,4294967296]", "[0,8]") + "}",
                 8),
       {"tensor 'w': shape [4294967296, 4294967296]",
        "more elements than fit in 64 bits"}},
      {"ByteSizeOverflow",
       fileBytes(R"({"w":)" +
                     entry(R"("F32")", "[4611686018427387904]", "[0,8]") + "}",
                 8),
       {"tensor 'w': shape [4611686018427387904]",
        "more elements than fit in 64 bits"}},
      {"MissingDataOffsets",
       fileBytes(R"({"w":{"dtype":"F32","shape":[1]}})", 4),
       {"tensor 'w': \"data_offsets\" is missing",
        "expected an array of two non-negative integers"}},
      {"DataOffsetsWrongLength",
       fileBytes(R"({"w":)" + entry(R"("F32")", "[1]", "[0]") + "}", 4),
       {"tensor 'w': \"data_offsets\" is array [0]",
        "expected an array of two non-negative integers"}},
      {"DataOffsetsNegative",
       fileBytes(R"({"w":)" + entry(R"("F32")", "[1]", "[-4,0]") + "}", 4),
       {"tensor 'w': \"data_offsets\" is array [-4,0]",
        "expected an array of two non-negative integers"}},
      {"DataOffsetsNotNumbers",
       fileBytes(R"({"w":)" + entry(R"("F32")", "[1]", R"(["0","4"])") + "}",
                 4),
       {"tensor 'w': \"data_offsets\" is array [\"0\",\"4\"]"}},
      {"BeginAfterEnd",
       fileBytes(R"({"w":)" + entry(R"("F32")", "[1]", "[8,4]") + "}", 8),
       {"tensor 'w': data_offsets [8, 4] begin after they end"}},
      {"EndPastDataBuffer",
       fileBytes(past, 512),
       {"tensor 'model.norm.weight': data_offsets [0, 1024] run past the "
        "data buffer (512 bytes at byte offset " +
        std::to_string(8 + past.size()) + ")"}},
      {"ByteSizeMismatch",
       fileBytes(R"({"w":)" + entry(R"("F32")", "[2,2]", "[0,12]") + "}", 12),
       {"tensor 'w': data_offsets [0, 12] span 12 bytes",
        "expected 16 for F32 shape [2, 2]"}},
      {"OverlappingTensors",
       fileBytes(R"({"a":)" + entry(R"("F32")", "[2]", "[0,8]") + R"(,"b":)" +
                     entry(R"("F32")", "[2]", "[4,12]") + "}",
                 12),
       {"tensor 'b': data_offsets [4, 12] overlap tensor 'a' at "
        "data_offsets [0, 8]"}},
      {"TensorInsideAnother",
       fileBytes(R"({"outer":)" + entry(R"("U8")", "[16]", "[0,16]") +
                     R"(,"inner":)" + entry(R"("U8")", "[4]", "[8,12]") +
                     R"(,"after":)" + entry(R"("U8")", "[2]", "[12,14]") + "}",
                 16),
       {"tensor 'inner': data_offsets [8, 12] overlap tensor 'outer'"}},
      {"MetadataNotObject",
       fileBytes(R"({"__metadata__": ["pt"]})", 0),
       {"\"__metadata__\" is array [\"pt\"]", "expected an object of strings"}},
      {"MetadataValueNotString",
       fileBytes(R"({"__metadata__": {"format": "pt", "step": 3}})", 0),
       {"\"__metadata__\" key 'step' is number 3", "expected a string"}},
      {"ControlCharacterInKeyStaysOnOneLine",
       fileBytes(R"({"a\nb": 3})", 0),
       {"tensor 'a\\x0ab': entry is number 3"}},
  };
}

class MalformedSafetensorsTest
    : public SafetensorsTest,
      public ::testing::WithParamInterface<MalformedCase> {};

TEST_P(MalformedSafetensorsTest, IsRejectedWithAPreciseMessage) {
  const MalformedCase &c = GetParam();
  std::string path = writeRaw("bad.safetensors", c.bytes);
  std::string error;
  EXPECT_EQ(SafetensorsFile::open(path, error), nullptr);
  EXPECT_EQ(error.rfind(path + ": ", 0), 0u) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  EXPECT_TRUE(isValidUtf8(error)) << error;
  for (const std::string &words : c.expected)
    EXPECT_NE(error.find(words), std::string::npos)
        << "expected '" << words << "' in: " << error;
}

INSTANTIATE_TEST_SUITE_P(
    Header, MalformedSafetensorsTest, ::testing::ValuesIn(malformedCases()),
    [](const ::testing::TestParamInfo<MalformedCase> &info) {
      return info.param.name;
    });

TEST_F(SafetensorsTest, RejectsAMissingFile) {
  std::string path = pathOf("absent.safetensors");
  std::string error;
  EXPECT_EQ(SafetensorsFile::open(path, error), nullptr);
  EXPECT_EQ(error, path + ": cannot open: No such file or directory");
}

TEST_F(SafetensorsTest, RejectsADirectory) {
  std::string error;
  EXPECT_EQ(SafetensorsFile::open(dir.string(), error), nullptr);
  EXPECT_EQ(error, dir.string() + ": is not a regular file");
}

TEST(SafetensorsUtf8Test, AcceptsWellFormedAndRefusesTheRest) {
  EXPECT_TRUE(isValidUtf8(""));
  EXPECT_TRUE(isValidUtf8("h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80"));
  EXPECT_FALSE(isValidUtf8("\xff"));
  EXPECT_FALSE(isValidUtf8("\xc3"));             // truncated sequence
  EXPECT_FALSE(isValidUtf8("\xc0\x80"));         // overlong NUL
  EXPECT_FALSE(isValidUtf8("\xed\xa0\x80"));     // UTF-16 surrogate
  EXPECT_FALSE(isValidUtf8("\xf4\x90\x80\x80")); // past U+10FFFF
  EXPECT_EQ(escapeForMessage("a\nb \xc3\xa9"), "a\\x0ab \xc3\xa9");
  EXPECT_EQ(escapeForMessage("a\xff \xc3\xa9"), "a\\xff \\xc3\\xa9");
}

//===----------------------------------------------------------------------===//
// Writer errors and atomicity
//===----------------------------------------------------------------------===//

TEST_F(SafetensorsTest, WriterLeavesNoFileBehindOnByteSizeMismatch) {
  std::vector<float> three = {1, 2, 3};
  std::vector<TensorToWrite> tensors = {
      {"w", DType::F32, {2, 2}, asBytes(three)}};
  std::string path = pathOf("out.safetensors");
  std::string error;
  EXPECT_FALSE(writeSafetensors(path, tensors, {}, error));
  EXPECT_EQ(error, path + ": tensor 'w': 12 bytes given, expected 16 for F32 "
                          "shape [2, 2]");
  EXPECT_TRUE(filesInDir().empty());
}

TEST_F(SafetensorsTest, WriterRejectsBadNamesAndShapes) {
  std::vector<uint8_t> one = {7};
  struct Case {
    std::vector<TensorToWrite> tensors;
    std::string expected;
  };
  std::vector<Case> cases = {
      {{{"w", DType::U8, {1}, asBytes(one)},
        {"w", DType::U8, {1}, asBytes(one)}},
       "tensor 'w': name appears twice"},
      {{{"__metadata__", DType::U8, {1}, asBytes(one)}},
       "tensor '__metadata__': name is reserved"},
      {{{"bad\xff", DType::U8, {1}, asBytes(one)}},
       "tensor 'bad\\xff': name is not UTF-8"},
      {{{"w", DType::U8, {-1}, asBytes(one)}},
       "tensor 'w': shape [-1] has a negative dimension"},
      {{{"w", DType::U8, {int64_t{1} << 32, int64_t{1} << 32}, asBytes(one)}},
       "more elements than fit in 64 bits"},
  };
  std::string path = pathOf("out.safetensors");
  for (const Case &c : cases) {
    std::string error;
    EXPECT_FALSE(writeSafetensors(path, c.tensors, {}, error));
    EXPECT_NE(error.find(c.expected), std::string::npos) << error;
  }
  std::string error;
  EXPECT_FALSE(writeSafetensors(path, {}, {{"k", "\xc0\x80"}}, error));
  EXPECT_NE(error.find("metadata key 'k' or its value is not UTF-8"),
            std::string::npos)
      << error;
  EXPECT_TRUE(filesInDir().empty());
}

TEST_F(SafetensorsTest, WriterReportsAMissingDirectory) {
  std::string path = pathOf("no/such/dir/out.safetensors");
  std::string error;
  EXPECT_FALSE(writeSafetensors(path, {}, {}, error));
  EXPECT_EQ(error.rfind(path + ": cannot create temporary file '" + path +
                            ".tmp.XXXXXX': No such file or directory",
                        0),
            0u)
      << error;
}

TEST_F(SafetensorsTest, WriterRemovesItsTemporaryFileWhenRenameFails) {
  // A non-empty directory in the way makes the very last step, the rename,
  // fail after every byte was written and synced.
  std::string path = pathOf("taken");
  fs::create_directories(fs::path(path) / "child");
  std::vector<uint8_t> one = {7};
  std::vector<TensorToWrite> tensors = {{"w", DType::U8, {1}, asBytes(one)}};
  std::string error;
  EXPECT_FALSE(writeSafetensors(path, tensors, {}, error));
  EXPECT_EQ(error.rfind(
                path + ": cannot rename temporary file '" + path + ".tmp.", 0),
            0u)
      << error;
  EXPECT_EQ(filesInDir(), std::vector<std::string>{"taken"});
}

TEST_F(SafetensorsTest, WriterReplacesAnExistingFileAtomically) {
  std::vector<uint8_t> before = {1, 2, 3};
  std::vector<float> after = {4, 5, 6, 7};
  std::string path = pathOf("checkpoint.safetensors");
  std::string error;
  std::vector<TensorToWrite> first = {{"w", DType::U8, {3}, asBytes(before)}};
  ASSERT_TRUE(writeSafetensors(path, first, {{"step", "1"}}, error)) << error;
  ::chmod(path.c_str(), 0640);
  std::unique_ptr<SafetensorsFile> old = SafetensorsFile::open(path, error);
  ASSERT_TRUE(old) << error;

  // A failed write must leave the old file exactly as it was.
  std::string oldBytes = readRaw(path);
  std::vector<TensorToWrite> wrong = {{"w", DType::F32, {3}, asBytes(after)}};
  EXPECT_FALSE(writeSafetensors(path, wrong, {}, error));
  EXPECT_EQ(readRaw(path), oldBytes);

  std::vector<TensorToWrite> second = {{"w", DType::F32, {4}, asBytes(after)}};
  ASSERT_TRUE(writeSafetensors(path, second, {{"step", "2"}}, error)) << error;
  EXPECT_EQ(filesInDir(), std::vector<std::string>{"checkpoint.safetensors"});

  // The rename gave `path` a new inode: a reader that mapped the old file
  // still sees it whole, and a new reader sees only the new one.
  EXPECT_EQ(old->metadata().at("step"), "1");
  EXPECT_EQ(toVector(old->find("w")->bytes), before);
  std::unique_ptr<SafetensorsFile> fresh = SafetensorsFile::open(path, error);
  ASSERT_TRUE(fresh) << error;
  EXPECT_EQ(fresh->metadata().at("step"), "2");
  EXPECT_EQ(toVector(fresh->find("w")->bytes), toVector(asBytes(after)));

  struct stat info;
  ASSERT_EQ(::stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0640u) << "a replaced file keeps its mode";
}

} // namespace
} // namespace qlora::format
