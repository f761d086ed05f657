//===- AdapterTest.cpp - PEFT adapter save/load tests ---------------------===//
//
// Round trips through saveAdapter/loadAdapter, the exact bytes of
// adapter_config.json and the safetensors keys PEFT expects, adapters
// written the way PEFT and other tools write them (adapter names in keys,
// BF16/F16 weights), and every refusal, each checked word for word.
//
//===----------------------------------------------------------------------===//
#include "runtime/adapter/Adapter.h"

#include "runtime/format/Safetensors.h"
#include "runtime/format/SafetensorsWriter.h"

#include "test/runtime/TempDirTest.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <unistd.h>

namespace qlora::adapter {
namespace {

namespace fs = std::filesystem;
using format::DType;

/// Owns the fp32 buffers of some LoRA modules and hands out views of them.
struct LoraWeights {
  struct Module {
    std::string name;
    int64_t in, out;
    std::vector<float> a, b;
  };

  LoraWeights(int64_t rank, std::vector<std::pair<std::string, int64_t>> dims,
              float seed)
      : rank(rank) {
    for (auto &[name, in] : dims) {
      // out = in / 2 keeps A and B of different shapes.
      Module module{name, in, in / 2, {}, {}};
      module.a.resize(static_cast<size_t>(rank * module.in));
      module.b.resize(static_cast<size_t>(module.out * rank));
      for (size_t i = 0; i < module.a.size(); ++i)
        module.a[i] = seed + 0.001f * static_cast<float>(i);
      for (size_t i = 0; i < module.b.size(); ++i)
        module.b[i] = -seed - 0.5f * static_cast<float>(i);
      modules.push_back(std::move(module));
    }
  }

  std::vector<LoraTensorRef> refs() {
    std::vector<LoraTensorRef> result;
    for (Module &module : modules)
      result.push_back({module.name, rank, module.in, module.out,
                        module.a.data(), module.b.data()});
    return result;
  }

  int64_t rank;
  std::vector<Module> modules;
};

const std::vector<std::pair<std::string, int64_t>> kModules = {
    {"model.layers.0.self_attn.q_proj", 8},
    {"model.layers.0.self_attn.v_proj", 8},
    {"model.layers.1.self_attn.q_proj", 12},
    {"model.layers.1.self_attn.v_proj", 12},
};

AdapterConfig makeConfig(int64_t r) {
  AdapterConfig config;
  config.r = r;
  config.alpha = 16;
  config.dropout = 0.05;
  config.useRslora = false;
  config.targetModules = {"v_proj", "q_proj"};
  config.baseModelNameOrPath = "tiny-llama";
  return config;
}

class AdapterTest : public qlora::testing::TempDirTest {
protected:
  AdapterTest() : TempDirTest("adapter") {}

  std::string adapterDir() const { return (dir / "adapter").string(); }
  std::string weightsPath() const {
    return (dir / "adapter" / "adapter_model.safetensors").string();
  }
  std::string configPath() const {
    return (dir / "adapter" / "adapter_config.json").string();
  }
  void writeText(const std::string &path, const std::string &text) {
    std::ofstream out(path, std::ios::binary);
    out << text;
  }
  /// Saves `weights` with `config` into adapterDir(), failing the test if
  /// that fails.
  void save(LoraWeights &weights, const AdapterConfig &config) {
    std::string error;
    std::vector<LoraTensorRef> refs = weights.refs();
    ASSERT_TRUE(saveAdapter(adapterDir(), config, refs, error)) << error;
  }
  /// Loads adapterDir() into `weights`; returns the error ("" on success).
  std::string load(LoraWeights &weights, const AdapterConfig &expected) {
    std::string error;
    std::vector<LoraTensorRef> refs = weights.refs();
    bool ok = loadAdapter(adapterDir(), expected, refs, error);
    EXPECT_EQ(ok, error.empty()) << error;
    return error;
  }
  /// Replaces the weights file with `tensors` (the config stays).
  void writeWeights(const std::vector<format::TensorToWrite> &tensors) {
    std::string error;
    ASSERT_TRUE(format::writeSafetensors(weightsPath(), tensors,
                                         {{"format", "pt"}}, error))
        << error;
  }
};

template <typename T>
std::span<const uint8_t> bytesOf(const std::vector<T> &v) {
  return {reinterpret_cast<const uint8_t *>(v.data()), v.size() * sizeof(T)};
}

//===----------------------------------------------------------------------===//
// Saving
//===----------------------------------------------------------------------===//

TEST_F(AdapterTest, SavesTheKeysShapesAndMetadataPeftExpects) {
  LoraWeights weights(4, kModules, 1.0f);
  save(weights, makeConfig(4));
  std::vector<std::string> files;
  for (const auto &entry : fs::directory_iterator(adapterDir()))
    files.push_back(entry.path().filename().string());
  std::sort(files.begin(), files.end());
  // No temporary file is left behind.
  EXPECT_EQ(files, (std::vector<std::string>{"adapter_config.json",
                                             "adapter_model.safetensors"}));

  std::string error;
  auto file = format::SafetensorsFile::open(weightsPath(), error);
  ASSERT_TRUE(file) << error;
  EXPECT_EQ(file->metadata(),
            (std::map<std::string, std::string>{{"format", "pt"}}));
  const std::vector<std::string> keys = {
      "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
      "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
      "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight",
      "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight",
      "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight",
      "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight",
      "base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight",
      "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight",
  };
  ASSERT_EQ(file->tensors().size(), keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    const format::TensorView &view = file->tensors()[i];
    SCOPED_TRACE(keys[i]);
    EXPECT_EQ(view.name, keys[i]);
    EXPECT_EQ(view.dtype, DType::F32);
    const LoraWeights::Module &module = weights.modules[i / 2];
    bool isB = i % 2 == 1;
    std::vector<int64_t> shape = {4, module.in};
    if (isB)
      shape = {module.out, 4};
    EXPECT_EQ(view.shape, shape);
    std::span<const uint8_t> expected = bytesOf(isB ? module.b : module.a);
    EXPECT_EQ(std::vector<uint8_t>(view.bytes.begin(), view.bytes.end()),
              std::vector<uint8_t>(expected.begin(), expected.end()));
  }
  EXPECT_EQ(adapterTensorKey("model.layers.3.mlp.down_proj", true),
            "base_model.model.model.layers.3.mlp.down_proj.lora_B.weight");
}

// What PEFT writes for LoraConfig(r=4, lora_alpha=16, lora_dropout=0.05,
// target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"): sorted keys,
// two-space indent, no trailing newline (json.dumps(indent=2,
// sort_keys=True)), inference_mode true after save_pretrained.
const char kConfigJson[] = R"({
  "alpha_pattern": {},
  "auto_mapping": null,
  "base_model_name_or_path": "tiny-llama",
  "bias": "none",
  "fan_in_fan_out": false,
  "inference_mode": true,
  "init_lora_weights": true,
  "layers_pattern": null,
  "layers_to_transform": null,
  "lora_alpha": 16,
  "lora_dropout": 0.05,
  "modules_to_save": null,
  "peft_type": "LORA",
  "r": 4,
  "rank_pattern": {},
  "revision": null,
  "target_modules": [
    "q_proj",
    "v_proj"
  ],
  "task_type": "CAUSAL_LM",
  "use_dora": false,
  "use_rslora": false
})";

TEST_F(AdapterTest, WritesTheConfigAsPeftDoes) {
  LoraWeights weights(4, kModules, 1.0f);
  save(weights, makeConfig(4));
  EXPECT_EQ(readFile(configPath()), kConfigJson);
}

TEST_F(AdapterTest, ConfigDerivesTargetModulesAndKeepsFractionalAlpha) {
  LoraWeights weights(2, kModules, 1.0f);
  AdapterConfig config = makeConfig(2);
  config.targetModules.clear();
  config.alpha = 7.5;
  config.dropout = 0;
  config.useRslora = true;
  config.baseModelNameOrPath.clear();
  save(weights, config);
  std::string text = readFile(configPath());
  EXPECT_NE(text.find("\"target_modules\": [\n    \"q_proj\",\n    "
                      "\"v_proj\"\n  ]"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\"lora_alpha\": 7.5,"), std::string::npos) << text;
  EXPECT_NE(text.find("\"lora_dropout\": 0.0,"), std::string::npos) << text;
  EXPECT_NE(text.find("\"use_rslora\": true"), std::string::npos) << text;
  EXPECT_NE(text.find("\"base_model_name_or_path\": null,"), std::string::npos)
      << text;
  // The derived target modules also satisfy the load-time check.
  LoraWeights loaded(2, kModules, 0.0f);
  EXPECT_EQ(load(loaded, config), "");
}

TEST_F(AdapterTest, SaveReplacesAnExistingAdapter) {
  LoraWeights first(4, kModules, 1.0f);
  save(first, makeConfig(4));
  LoraWeights second(4, kModules, 2.0f);
  save(second, makeConfig(4));
  LoraWeights loaded(4, kModules, 0.0f);
  ASSERT_EQ(load(loaded, makeConfig(4)), "");
  EXPECT_EQ(loaded.modules[3].a, second.modules[3].a);
}

TEST_F(AdapterTest, SaveRefusesInconsistentTensors) {
  LoraWeights weights(4, kModules, 1.0f);
  std::vector<LoraTensorRef> refs = weights.refs();
  std::string error;
  EXPECT_FALSE(saveAdapter(adapterDir(), makeConfig(8), refs, error));
  EXPECT_EQ(error, weightsPath() +
                       ": module 'model.layers.0.self_attn.q_proj': rank 4, "
                       "expected r = 8 as in the config");
  refs[1].loraB = nullptr;
  EXPECT_FALSE(saveAdapter(adapterDir(), makeConfig(4), refs, error));
  EXPECT_EQ(error, weightsPath() +
                       ": module 'model.layers.0.self_attn.v_proj': no "
                       "buffer for lora_A or lora_B");
  refs = weights.refs();
  refs[2].inFeatures = 0;
  EXPECT_FALSE(saveAdapter(adapterDir(), makeConfig(4), refs, error));
  EXPECT_EQ(error, weightsPath() +
                       ": module 'model.layers.1.self_attn.q_proj': "
                       "in_features 0 and out_features 6, expected both "
                       "positive");
  EXPECT_FALSE(saveAdapter(adapterDir(), makeConfig(0), {}, error));
  EXPECT_EQ(error, configPath() + ": r is 0, expected a positive LoRA rank");
  // Nothing was written.
  EXPECT_FALSE(fs::exists(adapterDir()));
}

TEST_F(AdapterTest, SaveRefusesAFileWhereTheDirectoryGoes) {
  writeText(adapterDir(), "not a directory");
  LoraWeights weights(4, kModules, 1.0f);
  std::vector<LoraTensorRef> refs = weights.refs();
  std::string error;
  EXPECT_FALSE(saveAdapter(adapterDir(), makeConfig(4), refs, error));
  EXPECT_EQ(error.rfind(adapterDir() + ": ", 0), 0u) << error;
}

//===----------------------------------------------------------------------===//
// Loading
//===----------------------------------------------------------------------===//

TEST_F(AdapterTest, RoundTripsEveryValue) {
  LoraWeights saved(4, kModules, 1.0f);
  save(saved, makeConfig(4));
  LoraWeights loaded(4, kModules, 0.0f);
  ASSERT_EQ(load(loaded, makeConfig(4)), "");
  for (size_t i = 0; i < saved.modules.size(); ++i) {
    EXPECT_EQ(loaded.modules[i].a, saved.modules[i].a);
    EXPECT_EQ(loaded.modules[i].b, saved.modules[i].b);
  }
}

TEST_F(AdapterTest, AcceptsKeysWithThePeftAdapterName) {
  LoraWeights saved(4, {{"model.layers.0.self_attn.q_proj", 8}}, 1.0f);
  AdapterConfig config = makeConfig(4);
  config.targetModules = {"q_proj"};
  save(saved, config);
  const LoraWeights::Module &m = saved.modules[0];
  writeWeights({
      {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.default."
       "weight",
       DType::F32,
       {4, 8},
       bytesOf(m.a)},
      {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.default."
       "weight",
       DType::F32,
       {4, 4},
       bytesOf(m.b)},
  });
  LoraWeights loaded(4, {{"model.layers.0.self_attn.q_proj", 8}}, 0.0f);
  ASSERT_EQ(load(loaded, config), "");
  EXPECT_EQ(loaded.modules[0].a, m.a);
  EXPECT_EQ(loaded.modules[0].b, m.b);
}

TEST_F(AdapterTest, WidensBf16AndF16Exactly) {
  LoraWeights saved(1, {{"model.layers.0.mlp.up_proj", 4}}, 1.0f);
  AdapterConfig config = makeConfig(1);
  config.targetModules = {"up_proj"};
  save(saved, config);
  // lora_A [1, 4] in BF16: 1.0, -2.0, 1/3 rounded to bf16, the smallest
  // subnormal; lora_B [2, 1] in F16: 65504 (max), -2^-24 (smallest
  // subnormal).
  std::vector<uint16_t> bf16 = {0x3f80, 0xc000, 0x3eab, 0x0001};
  std::vector<uint16_t> f16 = {0x7bff, 0x8001};
  writeWeights({
      {"base_model.model.model.layers.0.mlp.up_proj.lora_A.weight",
       DType::BF16,
       {1, 4},
       bytesOf(bf16)},
      {"base_model.model.model.layers.0.mlp.up_proj.lora_B.weight",
       DType::F16,
       {2, 1},
       bytesOf(f16)},
  });
  LoraWeights loaded(1, {{"model.layers.0.mlp.up_proj", 4}}, 0.0f);
  ASSERT_EQ(load(loaded, config), "");
  uint32_t thirdBits = 0x3eab0000;
  float third;
  std::memcpy(&third, &thirdBits, sizeof(third));
  EXPECT_EQ(loaded.modules[0].a,
            (std::vector<float>{1.0f, -2.0f, third, std::ldexp(1.0f, -133)}));
  EXPECT_EQ(loaded.modules[0].b,
            (std::vector<float>{65504.0f, -std::ldexp(1.0f, -24)}));
}

TEST_F(AdapterTest, WidensF16NormalsAndSpecials) {
  LoraWeights saved(1, {{"model.layers.0.mlp.up_proj", 4}}, 1.0f);
  AdapterConfig config = makeConfig(1);
  config.targetModules = {"up_proj"};
  save(saved, config);
  // 1.0, -0.5, 0x3555 = 0.333251953125, +inf; B: -0.0, 2^-14 (min normal).
  std::vector<uint16_t> a = {0x3c00, 0xb800, 0x3555, 0x7c00};
  std::vector<uint16_t> b = {0x8000, 0x0400};
  writeWeights({
      {"base_model.model.model.layers.0.mlp.up_proj.lora_A.weight",
       DType::F16,
       {1, 4},
       bytesOf(a)},
      {"base_model.model.model.layers.0.mlp.up_proj.lora_B.weight",
       DType::F16,
       {2, 1},
       bytesOf(b)},
  });
  LoraWeights loaded(1, {{"model.layers.0.mlp.up_proj", 4}}, 0.0f);
  ASSERT_EQ(load(loaded, config), "");
  EXPECT_EQ(loaded.modules[0].a,
            (std::vector<float>{1.0f, -0.5f, 0.333251953125f, HUGE_VALF}));
  EXPECT_EQ(loaded.modules[0].b[1], std::ldexp(1.0f, -14));
  EXPECT_TRUE(std::signbit(loaded.modules[0].b[0]));
  EXPECT_EQ(loaded.modules[0].b[0], 0.0f);
}

TEST_F(AdapterTest, ShapeMismatchNamesKeyAndBothShapes) {
  // A rank-8 adapter whose config was edited to say r=4.
  LoraWeights saved(8, {{"model.layers.0.self_attn.q_proj", 64}}, 1.0f);
  AdapterConfig config8 = makeConfig(8);
  config8.targetModules = {"q_proj"};
  save(saved, config8);
  AdapterConfig config4 = config8;
  config4.r = 4;
  LoraWeights four(4, {{"model.layers.0.self_attn.q_proj", 64}}, 0.0f);
  {
    std::vector<LoraTensorRef> refs = four.refs();
    std::string error;
    ASSERT_TRUE(saveAdapter((dir / "four").string(), config4, refs, error));
  }
  fs::copy_file(dir / "four" / "adapter_config.json", configPath(),
                fs::copy_options::overwrite_existing);
  std::vector<float> before = four.modules[0].a;
  EXPECT_EQ(load(four, config4),
            weightsPath() +
                ": base_model.model.model.layers.0.self_attn.q_proj.lora_A."
                "weight has shape [8, 64], but train.bin expects [4, 64] "
                "(r=4)");
  // A refused adapter leaves the buffers alone.
  EXPECT_EQ(four.modules[0].a, before);
}

TEST_F(AdapterTest, RankMismatchInTheConfig) {
  LoraWeights saved(8, kModules, 1.0f);
  save(saved, makeConfig(8));
  LoraWeights loaded(4, kModules, 0.0f);
  EXPECT_EQ(load(loaded, makeConfig(4)),
            configPath() + ": \"r\" is 8, but train.bin expects 4");
}

TEST_F(AdapterTest, AlphaRsloraTargetsAndTypeMismatches) {
  LoraWeights saved(4, kModules, 1.0f);
  save(saved, makeConfig(4));
  LoraWeights loaded(4, kModules, 0.0f);

  AdapterConfig expected = makeConfig(4);
  expected.alpha = 32;
  EXPECT_EQ(load(loaded, expected),
            configPath() + ": \"lora_alpha\" is 16, but train.bin expects 32");
  expected.alpha = 16.5;
  EXPECT_EQ(load(loaded, expected),
            configPath() +
                ": \"lora_alpha\" is 16, but train.bin expects 16.5");

  expected = makeConfig(4);
  expected.useRslora = true;
  EXPECT_EQ(load(loaded, expected),
            configPath() +
                ": \"use_rslora\" is false, but train.bin expects true");

  expected = makeConfig(4);
  expected.targetModules = {"q_proj", "k_proj", "v_proj"};
  EXPECT_EQ(load(loaded, expected),
            configPath() + ": \"target_modules\" is [\"q_proj\",\"v_proj\"], "
                           "but train.bin expects "
                           "[\"k_proj\",\"q_proj\",\"v_proj\"]");

  // Dropout is a training setting, not part of the adapter's identity.
  expected = makeConfig(4);
  expected.dropout = 0.1;
  EXPECT_EQ(load(loaded, expected), "");
}

TEST_F(AdapterTest, ConfigFieldsFromOtherWriters) {
  LoraWeights saved(4, kModules, 1.0f);
  save(saved, makeConfig(4));
  LoraWeights loaded(4, kModules, 0.0f);
  // An older PEFT: no use_rslora/use_dora, alpha as a float, a regex for
  // target_modules (not compared: the keys decide).
  writeText(configPath(), R"({"peft_type": "LORA", "r": 4,
      "lora_alpha": 16.0, "target_modules": ".*(q|v)_proj"})");
  EXPECT_EQ(load(loaded, makeConfig(4)), "");

  writeText(configPath(), R"({"peft_type": "IA3", "r": 4})");
  EXPECT_EQ(load(loaded, makeConfig(4)),
            configPath() + ": \"peft_type\" is \"IA3\", but train.bin expects "
                           "\"LORA\"");
  writeText(configPath(), R"({"r": 4})");
  EXPECT_EQ(load(loaded, makeConfig(4)),
            configPath() + ": no \"peft_type\" key, expected \"LORA\"");
  writeText(configPath(), R"({"peft_type": "LORA", "lora_alpha": 16})");
  EXPECT_EQ(load(loaded, makeConfig(4)),
            configPath() + ": no \"r\" key, expected the LoRA rank 4");
  writeText(configPath(), R"({"peft_type": "LORA", "r": 4})");
  EXPECT_EQ(load(loaded, makeConfig(4)),
            configPath() + ": no \"lora_alpha\" key, expected 16");
  writeText(configPath(),
            R"({"peft_type": "LORA", "r": 4, "lora_alpha": 16,
                "use_dora": true})");
  EXPECT_EQ(load(loaded, makeConfig(4)),
            configPath() + ": \"use_dora\" is true, but train.bin expects "
                           "false");
  writeText(configPath(), "[1]");
  EXPECT_EQ(load(loaded, makeConfig(4)),
            configPath() +
                ": found array, expected a JSON object (a PEFT LoraConfig)");
  writeText(configPath(), "{\"r\": ");
  std::string error = load(loaded, makeConfig(4));
  EXPECT_EQ(error.rfind(configPath() + ": malformed JSON at byte ", 0), 0u)
      << error;
}

TEST_F(AdapterTest, MissingTensorsAreListed) {
  LoraWeights saved(4, kModules, 1.0f);
  save(saved, makeConfig(4));
  const LoraWeights::Module &m = saved.modules[0];
  writeWeights({{"base_model.model.model.layers.0.self_attn.q_proj.lora_A."
                 "weight",
                 DType::F32,
                 {4, 8},
                 bytesOf(m.a)}});
  LoraWeights loaded(4, kModules, 0.0f);
  EXPECT_EQ(load(loaded, makeConfig(4)),
            weightsPath() +
                ": 7 LoRA tensors that train.bin expects are missing: "
                "'base_model.model.model.layers.0.self_attn.q_proj.lora_B."
                "weight', "
                "'base_model.model.model.layers.0.self_attn.v_proj.lora_A."
                "weight', "
                "'base_model.model.model.layers.0.self_attn.v_proj.lora_B."
                "weight' and 4 more");
}

TEST_F(AdapterTest, UnexpectedTensorsAreRefused) {
  LoraWeights saved(4, kModules, 1.0f);
  save(saved, makeConfig(4));
  // train.bin only has layer 0's modules.
  LoraWeights loaded(4, {kModules[0], kModules[1]}, 0.0f);
  EXPECT_EQ(load(loaded, makeConfig(4)),
            weightsPath() +
                ": 4 tensors that train.bin has no LoRA parameter for: "
                "'base_model.model.model.layers.1.self_attn.q_proj.lora_A."
                "weight', "
                "'base_model.model.model.layers.1.self_attn.q_proj.lora_B."
                "weight', "
                "'base_model.model.model.layers.1.self_attn.v_proj.lora_A."
                "weight' and 1 more");
}

TEST_F(AdapterTest, TheSameKeyTwiceIsRefused) {
  LoraWeights saved(4, {{"model.layers.0.self_attn.q_proj", 8}}, 1.0f);
  AdapterConfig config = makeConfig(4);
  config.targetModules = {"q_proj"};
  save(saved, config);
  const LoraWeights::Module &m = saved.modules[0];
  std::string prefix = "base_model.model.model.layers.0.self_attn.q_proj.";
  writeWeights({
      {prefix + "lora_A.weight", DType::F32, {4, 8}, bytesOf(m.a)},
      {prefix + "lora_A.default.weight", DType::F32, {4, 8}, bytesOf(m.a)},
      {prefix + "lora_B.weight", DType::F32, {4, 4}, bytesOf(m.b)},
  });
  LoraWeights loaded(4, {{"model.layers.0.self_attn.q_proj", 8}}, 0.0f);
  EXPECT_EQ(load(loaded, config),
            weightsPath() + ": tensors '" + prefix + "lora_A.weight' and '" +
                prefix + "lora_A.default.weight' are both " + prefix +
                "lora_A.weight, expected one tensor per key");
}

TEST_F(AdapterTest, UnsupportedDTypeIsRefused) {
  LoraWeights saved(1, {{"model.layers.0.mlp.up_proj", 4}}, 1.0f);
  AdapterConfig config = makeConfig(1);
  config.targetModules = {"up_proj"};
  save(saved, config);
  std::vector<double> a(4, 1.0), b(2, 1.0);
  writeWeights({
      {"base_model.model.model.layers.0.mlp.up_proj.lora_A.weight",
       DType::F64,
       {1, 4},
       bytesOf(a)},
      {"base_model.model.model.layers.0.mlp.up_proj.lora_B.weight",
       DType::F64,
       {2, 1},
       bytesOf(b)},
  });
  LoraWeights loaded(1, {{"model.layers.0.mlp.up_proj", 4}}, 0.0f);
  EXPECT_EQ(load(loaded, config),
            weightsPath() +
                ": base_model.model.model.layers.0.mlp.up_proj.lora_A.weight "
                "has dtype F64, expected F32, BF16 or F16");
}

TEST_F(AdapterTest, MissingFilesAreNamed) {
  LoraWeights loaded(4, kModules, 0.0f);
  EXPECT_EQ(load(loaded, makeConfig(4)),
            configPath() + ": cannot open: No such file or directory");

  LoraWeights saved(4, kModules, 1.0f);
  save(saved, makeConfig(4));
  fs::remove(weightsPath());
  EXPECT_EQ(load(loaded, makeConfig(4)),
            weightsPath() + ": cannot open: No such file or directory");

  std::string pickled = (dir / "adapter" / "adapter_model.bin").string();
  writeText(pickled, "PK");
  EXPECT_EQ(load(loaded, makeConfig(4)),
            pickled + ": only adapter_model.safetensors adapters are "
                      "supported, found a pickled adapter_model.bin (save "
                      "with safe_serialization=True)");
}

TEST_F(AdapterTest, LoadChecksTheCallersTensors) {
  LoraWeights saved(4, kModules, 1.0f);
  save(saved, makeConfig(4));
  LoraWeights loaded(4, kModules, 0.0f);
  std::vector<LoraTensorRef> refs = loaded.refs();
  refs[0].rank = 8;
  std::string error;
  EXPECT_FALSE(loadAdapter(adapterDir(), makeConfig(4), refs, error));
  EXPECT_EQ(error, weightsPath() +
                       ": module 'model.layers.0.self_attn.q_proj': rank 8, "
                       "expected r = 4 as in the config");
}

} // namespace
} // namespace qlora::adapter
