//===- TrainBinTest.cpp - train.bin writer and loader ---------------------===//
//
// A small plan with every kind of entry is written, read back field by field
// and checked against the layout train.fbs describes. Then the loader is fed
// damaged files: every single-byte flip, truncations, a foreign schema
// version, and plans that are well-formed flatbuffers but wrong (written
// from deliberately bad descriptions, or patched with the footer checksum
// recomputed so that the deeper checks are reached).
//
//===----------------------------------------------------------------------===//
#include "runtime/format/TrainBin.h"
#include "runtime/format/Checksum.h"
#include "runtime/format/TrainBinWriter.h"
#include "runtime/format/train_generated.h"

#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sys/resource.h>
#include <unistd.h>

using namespace qlora::format;
namespace fb = qlora::fb;
namespace fs = std::filesystem;

namespace {

std::vector<std::byte> pattern(size_t size, unsigned salt) {
  std::vector<std::byte> bytes(size);
  for (size_t i = 0; i < size; ++i)
    bytes[i] = static_cast<std::byte>(i * 31 + salt);
  return bytes;
}

uint64_t readLe(const std::vector<std::byte> &bytes, size_t at, int count) {
  uint64_t value = 0;
  for (int i = count; i-- > 0;)
    value = (value << 8) | std::to_integer<uint64_t>(bytes[at + i]);
  return value;
}

void writeLe(std::vector<std::byte> &bytes, size_t at, uint64_t value,
             int count) {
  for (int i = 0; i < count; ++i)
    bytes[at + i] = static_cast<std::byte>(value >> (8 * i));
}

/// Bytes that outlive the descriptions borrowing them.
const std::vector<std::byte> &kernelImage() {
  static const std::vector<std::byte> image = pattern(100, 3);
  return image;
}

enum Buffers : uint32_t { kWeight, kLoraA, kGradA, kTokens, kLoraB };
enum Sections : int32_t { kWeightInit, kLoraAInit, kCubin, kEmpty };

/// Sections: a weight spanning two pages, an initial LoRA value, a kernel
/// image borrowed from the caller, and an empty section.
TrainBinDesc makeDesc() {
  TrainBinDesc desc;
  desc.producer = "qloracc test";
  desc.model = {"LlamaForCausalLM", "tiny-llama", 32, 16, 1, 2, 8, 4};
  desc.lora = {4, 8.0, 0.05, true, {"q_proj", "v_proj"}, {}};
  desc.lora.modules.push_back(
      {"model.layers.0.self_attn.q_proj", kLoraA, kLoraB, kGradA, kGradA});
  desc.optimizer = {0.9, 0.999, 1e-8, 0.01, 1.0};

  desc.sections.push_back({"model.layers.0.mlp.w.nf4", pattern(5000, 1), {}});
  desc.sections.push_back({"lora_A.init", pattern(256, 2), {}});
  desc.sections.push_back({"linear_fwd_0.sm_80", {}, kernelImage()});
  desc.sections.push_back({"empty", {}, {}});

  desc.buffers = {
      {"model.layers.0.mlp.w",
       BufferClass::Weight,
       DType::U8,
       {5000},
       5000,
       256,
       0,
       kWeightInit},
      {"lora_A",
       BufferClass::Lora,
       DType::F32,
       {4, 16},
       256,
       256,
       5120,
       kLoraAInit},
      {"grad_A", BufferClass::Gradient, DType::F32, {4, 16}, 256, 256, 5376},
      {"tokens", BufferClass::Io, DType::I32, {2, 8}, 64, 64, 5632},
      {"lora_B", BufferClass::Lora, DType::BF16, {16, 4}, 128, 128, 5760},
  };

  TrainBinKernelDesc kernel;
  kernel.symbol = "linear_fwd_0";
  kernel.templateName = "linear_fwd";
  kernel.params.set("rows", int64_t{16});
  kernel.params.set("scaling", 0.5);
  kernel.params.set("w_dtype", std::string("BF16"));
  kernel.params.set("sizes", std::vector<int64_t>{1, -2, 3});
  kernel.params.set("accumulate", int64_t{0});
  kernel.images.push_back({"sm_80", kCubin});
  desc.kernels.push_back(kernel);

  TrainBinProgramDesc program;
  program.name = "train_step";
  program.instrs.push_back(
      TrainBinInstrDesc::launch(0, {kTokens, kWeight, kLoraA, kLoraB, kGradA},
                                {1, 2, 3}, {128, 1, 1}, 4096));
  program.instrs.push_back(TrainBinInstrDesc::copy(kLoraA, 64, kGradA, 0, 128));
  desc.programs.push_back(program);

  desc.memory.arenaSize = 8192;
  desc.memory.peakBytes = 5888;
  desc.memory.byClass = {{BufferClass::Weight, 5000, 5000},
                         {BufferClass::Lora, 384, 384},
                         {BufferClass::Gradient, 256, 256}};
  return desc;
}

class TrainBinTest : public ::testing::Test {
protected:
  void SetUp() override {
    std::string pattern =
        (fs::temp_directory_path() / "trainbin-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir = pattern;
    path = (fs::path(dir) / "train.bin").string();
  }
  void TearDown() override { fs::remove_all(dir); }

  void write(const TrainBinDesc &desc) {
    std::string error;
    ASSERT_TRUE(writeTrainBin(path, desc, error)) << error;
  }

  std::vector<std::byte> readBytes() const {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> chars((std::istreambuf_iterator<char>(in)),
                            std::istreambuf_iterator<char>());
    std::vector<std::byte> bytes(chars.size());
    std::memcpy(bytes.data(), chars.data(), chars.size());
    return bytes;
  }

  void writeBytes(const std::vector<std::byte> &bytes) const {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char *>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  }

  /// Opens `path`, expecting failure; returns the message.
  std::string openError() const {
    std::string error;
    std::unique_ptr<TrainBinFile> file = TrainBinFile::open(path, error);
    EXPECT_EQ(file, nullptr);
    EXPECT_FALSE(error.empty());
    EXPECT_EQ(error.find('\n'), std::string::npos) << error;
    EXPECT_EQ(error.rfind(path + ": ", 0), 0u) << error;
    return error;
  }

  std::unique_ptr<TrainBinFile> openOk() const {
    std::string error;
    std::unique_ptr<TrainBinFile> file = TrainBinFile::open(path, error);
    EXPECT_NE(file, nullptr) << error;
    return file;
  }

  /// Writes the good plan, lets `patch` change the flatbuffer in place,
  /// recomputes the footer checksum and returns the loader's message.
  template <typename Patch> std::string patchedError(Patch patch) {
    write(makeDesc());
    std::vector<std::byte> bytes = readBytes();
    patch(*fb::GetMutableSizePrefixedTrainBin(bytes.data()), bytes);
    size_t footer = bytes.size() - kTrainBinFooterBytes;
    writeLe(bytes, footer, xxh64(bytes.data(), footer), 8);
    writeBytes(bytes);
    return openError();
  }

  std::vector<std::string> listDir() const {
    std::vector<std::string> names;
    for (const auto &entry : fs::directory_iterator(dir))
      names.push_back(entry.path().filename().string());
    return names;
  }

  std::string dir;
  std::string path;
};

::testing::AssertionResult contains(const std::string &text,
                                    const std::string &part) {
  if (text.find(part) != std::string::npos)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "'" << part << "' not found in: " << text;
}
#define EXPECT_HAS(text, part) EXPECT_TRUE(contains((text), (part)))

TEST_F(TrainBinTest, RoundTripsEveryField) {
  TrainBinDesc desc = makeDesc();
  write(desc);
  std::unique_ptr<TrainBinFile> file = openOk();
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(file->path(), path);
  EXPECT_EQ(file->fileSize(), fs::file_size(path));
  const fb::TrainBin &root = file->root();
  EXPECT_EQ(root.schema_version(), kTrainBinSchemaVersion);
  EXPECT_EQ(root.producer()->str(), "qloracc test");

  const fb::ModelInfo *model = root.model();
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->architecture()->str(), "LlamaForCausalLM");
  EXPECT_EQ(model->name_or_path()->str(), "tiny-llama");
  EXPECT_EQ(model->vocab_size(), 32);
  EXPECT_EQ(model->hidden_size(), 16);
  EXPECT_EQ(model->num_hidden_layers(), 1);
  EXPECT_EQ(model->batch(), 2);
  EXPECT_EQ(model->seq(), 8);
  EXPECT_EQ(model->grad_accum(), 4);

  const fb::LoraInfo *lora = root.lora();
  ASSERT_NE(lora, nullptr);
  EXPECT_EQ(lora->r(), 4);
  EXPECT_EQ(lora->alpha(), 8.0);
  EXPECT_EQ(lora->dropout(), 0.05);
  EXPECT_TRUE(lora->use_rslora());
  ASSERT_EQ(lora->target_modules()->size(), 2u);
  EXPECT_EQ(lora->target_modules()->Get(0)->str(), "q_proj");
  EXPECT_EQ(lora->target_modules()->Get(1)->str(), "v_proj");
  ASSERT_EQ(lora->modules()->size(), 1u);
  const fb::LoraModule *module = lora->modules()->Get(0);
  EXPECT_EQ(module->module_()->str(), "model.layers.0.self_attn.q_proj");
  EXPECT_EQ(module->lora_a(), kLoraA);
  EXPECT_EQ(module->lora_b(), kLoraB);
  EXPECT_EQ(module->grad_a(), kGradA);
  EXPECT_EQ(module->grad_b(), kGradA);

  const fb::OptimizerInfo *optimizer = root.optimizer();
  ASSERT_NE(optimizer, nullptr);
  EXPECT_EQ(optimizer->beta1(), 0.9);
  EXPECT_EQ(optimizer->beta2(), 0.999);
  EXPECT_EQ(optimizer->epsilon(), 1e-8);
  EXPECT_EQ(optimizer->weight_decay(), 0.01);
  EXPECT_EQ(optimizer->max_grad_norm(), 1.0);

  ASSERT_EQ(root.buffers()->size(), desc.buffers.size());
  for (uint32_t i = 0; i < desc.buffers.size(); ++i) {
    const TrainBinBufferDesc &expected = desc.buffers[i];
    const fb::Buffer *buffer = root.buffers()->Get(i);
    SCOPED_TRACE(expected.name);
    EXPECT_EQ(buffer->name()->str(), expected.name);
    EXPECT_EQ(toBufferClass(buffer->buffer_class()), expected.cls);
    EXPECT_EQ(fromSchemaDType(buffer->dtype()), expected.dtype);
    EXPECT_EQ(
        std::vector<int64_t>(buffer->shape()->begin(), buffer->shape()->end()),
        expected.shape);
    EXPECT_EQ(buffer->size(), expected.size);
    EXPECT_EQ(buffer->alignment(), expected.alignment);
    EXPECT_EQ(buffer->offset(), expected.offset);
    EXPECT_EQ(buffer->init_section(), expected.initSection);
  }

  ASSERT_EQ(root.kernels()->size(), 1u);
  const fb::Kernel *kernel = root.kernels()->Get(0);
  EXPECT_EQ(kernel->symbol()->str(), "linear_fwd_0");
  EXPECT_EQ(kernel->template_name()->str(), "linear_fwd");
  ASSERT_EQ(kernel->images()->size(), 1u);
  EXPECT_EQ(kernel->images()->Get(0)->arch()->str(), "sm_80");
  EXPECT_EQ(kernel->images()->Get(0)->section(), kCubin);
  // The params are a sorted key vector, so lookups by name work.
  ASSERT_NE(kernel->params()->LookupByKey("w_dtype"), nullptr);
  EXPECT_EQ(kernel->params()->LookupByKey("w_dtype")->kind(),
            fb::ParamKind::String);
  KernelParams params = file->kernelParams(0);
  EXPECT_EQ(params.all().size(), 5u);
  EXPECT_EQ(params.getInt("rows"), 16);
  EXPECT_EQ(params.getInt("accumulate"), 0);
  EXPECT_EQ(params.getFloat("scaling"), 0.5);
  EXPECT_EQ(params.getString("w_dtype"), "BF16");
  EXPECT_EQ(params.getInts("sizes"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_TRUE(file->kernelParams(1).all().empty());

  ASSERT_EQ(root.programs()->size(), 1u);
  const fb::Program *program = root.programs()->Get(0);
  EXPECT_EQ(program->name()->str(), "train_step");
  ASSERT_EQ(program->instrs()->size(), 2u);
  const fb::Instr *launch = program->instrs()->Get(0);
  EXPECT_EQ(launch->kind(), fb::InstrKind::Launch);
  EXPECT_EQ(launch->kernel(), 0u);
  EXPECT_EQ(
      std::vector<uint32_t>(launch->args()->begin(), launch->args()->end()),
      (std::vector<uint32_t>{kTokens, kWeight, kLoraA, kLoraB, kGradA}));
  EXPECT_EQ(
      std::vector<uint32_t>(launch->grid()->begin(), launch->grid()->end()),
      (std::vector<uint32_t>{1, 2, 3}));
  EXPECT_EQ(
      std::vector<uint32_t>(launch->block()->begin(), launch->block()->end()),
      (std::vector<uint32_t>{128, 1, 1}));
  EXPECT_EQ(launch->smem(), 4096u);
  const fb::Instr *copy = program->instrs()->Get(1);
  EXPECT_EQ(copy->kind(), fb::InstrKind::Copy);
  EXPECT_EQ(copy->src(), kLoraA);
  EXPECT_EQ(copy->src_offset(), 64u);
  EXPECT_EQ(copy->dst(), kGradA);
  EXPECT_EQ(copy->dst_offset(), 0u);
  EXPECT_EQ(copy->bytes(), 128u);

  const fb::MemoryPlan *memory = root.memory();
  ASSERT_NE(memory, nullptr);
  EXPECT_EQ(memory->arena_size(), 8192u);
  EXPECT_EQ(memory->peak_bytes(), 5888u);
  ASSERT_EQ(memory->by_class()->size(), 3u);
  EXPECT_EQ(toBufferClass(memory->by_class()->Get(1)->buffer_class()),
            BufferClass::Lora);
  EXPECT_EQ(memory->by_class()->Get(1)->peak_bytes(), 384u);
  EXPECT_EQ(memory->by_class()->Get(2)->total_bytes(), 256u);

  ASSERT_EQ(file->numSections(), desc.sections.size());
  ASSERT_EQ(root.sections()->size(), desc.sections.size());
  for (uint32_t i = 0; i < desc.sections.size(); ++i) {
    SCOPED_TRACE(desc.sections[i].name);
    std::span<const std::byte> expected = desc.sections[i].bytes();
    std::span<const std::byte> actual = file->section(i);
    EXPECT_EQ(root.sections()->Get(i)->name()->str(), desc.sections[i].name);
    ASSERT_EQ(actual.size(), expected.size());
    EXPECT_TRUE(std::equal(actual.begin(), actual.end(), expected.begin()));
    EXPECT_EQ(root.sections()->Get(i)->checksum(), xxh64(expected));
  }
  EXPECT_TRUE(file->section(99).empty());
}

TEST_F(TrainBinTest, LayoutFollowsTheSchemaComment) {
  TrainBinDesc desc = makeDesc();
  write(desc);
  std::vector<std::byte> bytes = readBytes();
  uint64_t flatbufferBytes = readLe(bytes, 0, 4);
  EXPECT_EQ(std::memcmp(bytes.data() + 8, "QLTB", 4), 0);
  uint64_t base = (4 + flatbufferBytes + 4095) / 4096 * 4096;
  // Padding up to the section base is zeros.
  for (uint64_t i = 4 + flatbufferBytes; i < base; ++i)
    ASSERT_EQ(bytes[i], std::byte{0}) << "byte " << i;

  const fb::TrainBin *root = fb::GetSizePrefixedTrainBin(bytes.data());
  uint64_t end = 4 + flatbufferBytes;
  for (uint32_t i = 0; i < desc.sections.size(); ++i) {
    const fb::Section *section = root->sections()->Get(i);
    EXPECT_EQ(section->offset() % 4096, 0u);
    // Empty sections sit at the base and add no padding.
    if (section->size() == 0) {
      EXPECT_EQ(section->offset(), 0u);
      continue;
    }
    uint64_t begin = base + section->offset();
    EXPECT_GE(begin, end) << "section " << i << " overlaps the one before";
    std::span<const std::byte> expected = desc.sections[i].bytes();
    EXPECT_TRUE(std::equal(expected.begin(), expected.end(),
                           bytes.begin() + static_cast<ptrdiff_t>(begin)));
    end = begin + section->size();
  }
  // The 5000-byte weight spans two pages, so the LoRA init starts at the
  // third page after the base.
  EXPECT_EQ(root->sections()->Get(kLoraAInit)->offset(), 8192u);
  EXPECT_EQ(root->sections()->Get(kCubin)->offset(), 12288u);

  ASSERT_EQ(bytes.size(), end + kTrainBinFooterBytes);
  size_t footer = bytes.size() - 16;
  EXPECT_EQ(readLe(bytes, footer, 8), xxh64(bytes.data(), footer));
  EXPECT_EQ(readLe(bytes, footer + 8, 4), kTrainBinSchemaVersion);
  EXPECT_EQ(std::memcmp(bytes.data() + footer + 12, "QLTE", 4), 0);

  // Sections are handed out page-aligned in memory.
  std::unique_ptr<TrainBinFile> file = openOk();
  ASSERT_NE(file, nullptr);
  for (uint32_t i = 0; i < file->numSections(); ++i)
    EXPECT_EQ(reinterpret_cast<uintptr_t>(file->section(i).data()) % 4096, 0u);
}

TEST_F(TrainBinTest, EmptyPlanRoundTrips) {
  write(TrainBinDesc());
  std::unique_ptr<TrainBinFile> file = openOk();
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(file->numSections(), 0u);
  EXPECT_EQ(file->root().buffers()->size(), 0u);
  // Without sections the footer follows the flatbuffer directly.
  EXPECT_LT(file->fileSize(), 4096u);
}

TEST_F(TrainBinTest, OnlyEmptySectionsRoundTrip) {
  TrainBinDesc desc;
  desc.sections.push_back({"nothing", {}, {}});
  desc.sections.push_back({"nothing either", {}, {}});
  write(desc);
  std::unique_ptr<TrainBinFile> file = openOk();
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(file->fileSize(), 4096u + kTrainBinFooterBytes);
  ASSERT_EQ(file->numSections(), 2u);
  EXPECT_TRUE(file->section(0).empty());
  EXPECT_TRUE(file->section(1).empty());
}

TEST_F(TrainBinTest, EveryByteFlipIsRejected) {
  write(makeDesc());
  const std::vector<std::byte> good = readBytes();
  uint64_t flatbufferEnd = 4 + readLe(good, 0, 4);
  // Each byte is flipped in place and put back, which is much cheaper than
  // rewriting the file thousands of times.
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto put = [&](size_t at, std::byte value) {
    return ::pwrite(fd, &value, 1, static_cast<off_t>(at)) == 1;
  };
  std::map<std::string, size_t> rejectedIn;
  for (size_t at = 0; at < good.size(); ++at) {
    ASSERT_TRUE(put(at, good[at] ^ std::byte{0x20}));
    std::string error;
    std::unique_ptr<TrainBinFile> file = TrainBinFile::open(path, error);
    ASSERT_TRUE(put(at, good[at]));
    if (file || error.empty()) {
      ADD_FAILURE() << "flip at byte " << at << " was accepted";
      continue;
    }
    std::string region = at < flatbufferEnd       ? "flatbuffer"
                         : at >= good.size() - 16 ? "footer"
                         : at < 4096              ? "padding"
                                                  : "sections";
    ++rejectedIn[region];
  }
  ::close(fd);
  EXPECT_EQ(rejectedIn["flatbuffer"], flatbufferEnd);
  EXPECT_EQ(rejectedIn["padding"], 4096 - flatbufferEnd);
  EXPECT_EQ(rejectedIn["sections"], good.size() - 16 - 4096);
  EXPECT_EQ(rejectedIn["footer"], 16u);
  EXPECT_NE(openOk(), nullptr);
}

TEST_F(TrainBinTest, FlipMessagesNameTheDamage) {
  write(makeDesc());
  const std::vector<std::byte> good = readBytes();
  size_t footer = good.size() - 16;
  auto flipAt = [&](size_t at) {
    std::vector<std::byte> bytes = good;
    bytes[at] ^= std::byte{1};
    writeBytes(bytes);
    return openError();
  };
  EXPECT_HAS(flipAt(5000), "checksum mismatch: the file is corrupted");
  EXPECT_HAS(flipAt(5000), "expected 0x");
  EXPECT_HAS(flipAt(footer + 2), "checksum mismatch");
  EXPECT_HAS(flipAt(footer + 8), "schema version 0");
  EXPECT_HAS(flipAt(footer + 15), "no 'QLTE' footer");
}

TEST_F(TrainBinTest, TruncatedFilesSayTruncated) {
  write(makeDesc());
  const std::vector<std::byte> good = readBytes();
  for (size_t length : {size_t{0}, size_t{10}, size_t{27}, good.size() / 2,
                        good.size() - 16, good.size() - 1}) {
    SCOPED_TRACE(length);
    writeBytes(
        std::vector<std::byte>(good.begin(), good.begin() + ptrdiff_t(length)));
    std::string error = openError();
    EXPECT_HAS(error, "not a qloracc train.bin or truncated");
    EXPECT_HAS(error, "file is " + std::to_string(length) + " bytes");
  }
}

TEST_F(TrainBinTest, MissingFileAndDirectory) {
  EXPECT_HAS(openError(), "cannot open");
  std::string error;
  EXPECT_EQ(TrainBinFile::open(dir, error), nullptr);
  EXPECT_HAS(error, "not a regular file");
}

TEST_F(TrainBinTest, SchemaVersionIsCheckedBeforeTheChecksum) {
  write(makeDesc());
  std::vector<std::byte> bytes = readBytes();
  writeLe(bytes, bytes.size() - 8, 7, 4);
  writeBytes(bytes);
  std::string error = openError();
  EXPECT_HAS(error, "schema version 7");
  EXPECT_HAS(error, "this qlora-run reads version 1; recompile with the "
                    "matching qloracc");
  EXPECT_EQ(error.find("checksum"), std::string::npos) << error;
}

TEST_F(TrainBinTest, FlatbufferVersionMustMatchTheFooter) {
  std::string error = patchedError([](fb::TrainBin &root, auto &) {
    ASSERT_TRUE(root.mutate_schema_version(2));
  });
  EXPECT_HAS(error, "flatbuffer schema_version 2 differs from the footer's "
                    "version 1");
}

TEST_F(TrainBinTest, FramingErrors) {
  EXPECT_HAS(patchedError([](fb::TrainBin &, std::vector<std::byte> &bytes) {
               writeLe(bytes, 0, bytes.size(), 4);
             }),
             "runs into the footer");
  EXPECT_HAS(patchedError([](fb::TrainBin &, std::vector<std::byte> &bytes) {
               writeLe(bytes, 0, 4, 4);
             }),
             "is too small");
  EXPECT_HAS(patchedError([](fb::TrainBin &, std::vector<std::byte> &bytes) {
               bytes[9] = std::byte{'X'};
             }),
             "identifier at byte offset 8 is 'QXTB', expected 'QLTB'");
  // The root offset points outside the flatbuffer.
  EXPECT_HAS(patchedError([](fb::TrainBin &, std::vector<std::byte> &bytes) {
               writeLe(bytes, 4, 0x7ffffff0, 4);
             }),
             "fails verification");
}

TEST_F(TrainBinTest, SectionChecks) {
  auto sections = [](fb::TrainBin &root) { return root.mutable_sections(); };
  EXPECT_HAS(patchedError([&](fb::TrainBin &root, auto &) {
               ASSERT_TRUE(sections(root)->GetMutableObject(1)->mutate_offset(
                   8192 + 100));
             }),
             "section 1 'lora_A.init': offset 8292 is not a multiple of 4096");
  EXPECT_HAS(patchedError([&](fb::TrainBin &root, auto &) {
               ASSERT_TRUE(
                   sections(root)->GetMutableObject(1)->mutate_offset(4096));
             }),
             "section 1 'lora_A.init': bytes [8192, 8448) overlap section 0");
  EXPECT_HAS(patchedError([&](fb::TrainBin &root, auto &) {
               ASSERT_TRUE(sections(root)->GetMutableObject(2)->mutate_size(
                   ~uint64_t{0}));
             }),
             "run past the section area");
  EXPECT_HAS(patchedError([&](fb::TrainBin &root, auto &) {
               ASSERT_TRUE(
                   sections(root)->GetMutableObject(2)->mutate_size(4096));
             }),
             "run past the section area");
  // The section's bytes change but the whole-file checksum is refreshed:
  // only the section's own checksum can notice.
  EXPECT_HAS(patchedError([](fb::TrainBin &, std::vector<std::byte> &bytes) {
               bytes[4096 + 10] ^= std::byte{1};
             }),
             "section 0 'model.layers.0.mlp.w.nf4': checksum mismatch");
}

TEST_F(TrainBinTest, UnknownEnumValuesAreRejected) {
  EXPECT_HAS(patchedError([](fb::TrainBin &root, auto &) {
               ASSERT_TRUE(
                   root.mutable_buffers()->GetMutableObject(0)->mutate_dtype(
                       static_cast<fb::DType>(77)));
             }),
             "buffer 0 'model.layers.0.mlp.w': dtype 77 is unknown");
  EXPECT_HAS(
      patchedError([](fb::TrainBin &root, auto &) {
        ASSERT_TRUE(
            root.mutable_buffers()->GetMutableObject(1)->mutate_buffer_class(
                static_cast<fb::BufferClass>(9)));
      }),
      "buffer 1 'lora_A': buffer class 9 is unknown");
  EXPECT_HAS(patchedError([](fb::TrainBin &root, auto &) {
               ASSERT_TRUE(root.mutable_programs()
                               ->GetMutableObject(0)
                               ->mutable_instrs()
                               ->GetMutableObject(1)
                               ->mutate_kind(static_cast<fb::InstrKind>(5)));
             }),
             "program 'train_step' instr 1: kind 5 is unknown");
  EXPECT_HAS(
      patchedError([](fb::TrainBin &root, auto &) {
        auto *params =
            root.mutable_kernels()->GetMutableObject(0)->mutable_params();
        // Params are sorted: accumulate, rows, scaling, sizes, w_dtype.
        ASSERT_TRUE(params->GetMutableObject(4)->mutate_kind(
            static_cast<fb::ParamKind>(8)));
      }),
      "params[4] 'w_dtype': kind 8 is unknown");
}

/// Writes `desc` (accepted by the writer) and returns the loader's message.
class BadPlanTest : public TrainBinTest {
protected:
  std::string errorFor(const TrainBinDesc &desc) {
    write(desc);
    return openError();
  }
};

TEST_F(BadPlanTest, BufferChecks) {
  TrainBinDesc desc = makeDesc();
  desc.buffers[kWeight].size = 4096;
  EXPECT_HAS(errorFor(desc), "buffer 0 'model.layers.0.mlp.w': init_section 0 "
                             "holds 5000 bytes, expected 4096");

  desc = makeDesc();
  desc.buffers[kLoraA].initSection = 9;
  EXPECT_HAS(errorFor(desc),
             "buffer 1 'lora_A': init_section 9 is out of range, expected 0 "
             "to 3");

  desc = makeDesc();
  desc.buffers[kTokens].offset = 8192;
  EXPECT_HAS(errorFor(desc), "buffer 3 'tokens': arena offset 8192 and size 64 "
                             "run past the arena of 8192 bytes");

  desc = makeDesc();
  desc.buffers[kTokens].offset = ~uint64_t{0} - 10;
  EXPECT_HAS(errorFor(desc), "run past the arena");

  desc = makeDesc();
  desc.buffers[kTokens].alignment = 48;
  EXPECT_HAS(errorFor(desc), "alignment 48 is not a power of two");

  desc = makeDesc();
  desc.buffers[kTokens].alignment = 0;
  EXPECT_HAS(errorFor(desc), "alignment 0 is not a power of two");

  desc = makeDesc();
  desc.buffers[kTokens].offset = 5640;
  EXPECT_HAS(errorFor(desc), "buffer 3 'tokens': arena offset 5640 is not a "
                             "multiple of its alignment 64");
}

TEST_F(BadPlanTest, InstructionChecks) {
  TrainBinDesc desc = makeDesc();
  desc.programs[0].instrs[0].args.push_back(99);
  EXPECT_HAS(errorFor(desc), "program 'train_step' instr 0: args[5] buffer 99 "
                             "is out of range, expected 0 to 4");

  desc = makeDesc();
  desc.programs[0].instrs[0].kernel = 1;
  EXPECT_HAS(errorFor(desc), "instr 0: kernel 1 is out of range, expected 0 "
                             "to 0");

  desc = makeDesc();
  desc.programs[0].instrs[1].dst = 5;
  EXPECT_HAS(errorFor(desc), "instr 1: dst buffer 5 is out of range");

  desc = makeDesc();
  desc.programs[0].instrs[1].bytes = 200;
  EXPECT_HAS(errorFor(desc), "instr 1: src 200 bytes at offset 64 of buffer 1 "
                             "'lora_A' run past its 256 bytes");

  desc = makeDesc();
  desc.programs[0].instrs[1].dstOffset = ~uint64_t{0};
  EXPECT_HAS(errorFor(desc), "instr 1: dst");

  desc = makeDesc();
  desc.buffers.clear();
  desc.lora.modules.clear();
  EXPECT_HAS(errorFor(desc), "expected none: the plan has no buffers");
}

TEST_F(BadPlanTest, KernelAndLoraChecks) {
  TrainBinDesc desc = makeDesc();
  desc.kernels[0].images.push_back({"sm_90", 4});
  EXPECT_HAS(errorFor(desc), "kernel 0 'linear_fwd_0': images[1] section 4 is "
                             "out of range, expected 0 to 3");

  desc = makeDesc();
  desc.lora.modules[0].gradB = 17;
  EXPECT_HAS(errorFor(desc), "lora module 0 "
                             "'model.layers.0.self_attn.q_proj': grad_b "
                             "buffer 17 is out of range");
}

TEST_F(TrainBinTest, WriterRefusesDtypesTheSchemaLacks) {
  TrainBinDesc desc = makeDesc();
  desc.buffers[kTokens].dtype = DType::F64;
  std::string error;
  EXPECT_FALSE(writeTrainBin(path, desc, error));
  EXPECT_HAS(error, "buffer 3 'tokens': dtype F64 cannot be stored");
  EXPECT_TRUE(listDir().empty());
}

TEST_F(TrainBinTest, WriterLeavesNothingWhenTheDirectoryIsMissing) {
  std::string error;
  std::string missing = (fs::path(dir) / "no-such-dir" / "train.bin").string();
  EXPECT_FALSE(writeTrainBin(missing, makeDesc(), error));
  EXPECT_HAS(error, "cannot create temporary file");
  EXPECT_TRUE(listDir().empty());
}

TEST_F(TrainBinTest, WriterRemovesTheTemporaryFileOnAWriteError) {
  // An existing file must survive a failed replacement untouched.
  write(makeDesc());
  std::vector<std::byte> before = readBytes();

  // A file size limit makes write() fail with EFBIG part-way through (root
  // is not exempt, unlike with directory permissions).
  TrainBinDesc big = makeDesc();
  big.sections.push_back({"big", pattern(1 << 20, 9), {}});
  struct rlimit saved;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  struct rlimit limited = saved;
  limited.rlim_cur = 64 * 1024;
  auto oldHandler = std::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limited), 0);
  std::string error;
  bool written = writeTrainBin(path, big, error);
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, oldHandler);

  EXPECT_FALSE(written);
  EXPECT_HAS(error, "cannot write temporary file");
  EXPECT_EQ(listDir(), std::vector<std::string>{"train.bin"});
  EXPECT_EQ(readBytes(), before);
}

TEST_F(TrainBinTest, WriterReplacesAnExistingFile) {
  write(makeDesc());
  TrainBinDesc desc = makeDesc();
  desc.producer = "second";
  write(desc);
  std::unique_ptr<TrainBinFile> file = openOk();
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(file->root().producer()->str(), "second");
  EXPECT_EQ(listDir(), std::vector<std::string>{"train.bin"});
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write |
                fs::perms::group_read | fs::perms::others_read);
}

TEST(BufferClassTest, NamesRoundTrip) {
  const char *names[] = {
      "weight",    "lora", "gradient",         "optimizer", "activation",
      "workspace", "io",   "quantized_weight", "recompute"};
  for (unsigned i = 0; i < kNumBufferClasses; ++i) {
    auto cls = static_cast<BufferClass>(i);
    EXPECT_EQ(bufferClassName(cls), names[i]);
    EXPECT_EQ(parseBufferClass(names[i]), cls);
    EXPECT_EQ(toBufferClass(static_cast<fb::BufferClass>(i)), cls);
  }
  EXPECT_EQ(parseBufferClass("Weight"), std::nullopt);
}

TEST(SchemaDTypeTest, ConvertsTheStorableTypes) {
  for (DType dtype : {DType::F32, DType::BF16, DType::F16, DType::I32,
                      DType::I64, DType::U8}) {
    std::optional<fb::DType> schema = toSchemaDType(dtype);
    ASSERT_TRUE(schema) << dtypeName(dtype);
    EXPECT_EQ(fb::EnumNameDType(*schema), dtypeName(dtype));
    EXPECT_EQ(fromSchemaDType(*schema), dtype);
  }
  for (DType dtype : {DType::F64, DType::I16, DType::I8, DType::Bool})
    EXPECT_EQ(toSchemaDType(dtype), std::nullopt) << dtypeName(dtype);
}

} // namespace
