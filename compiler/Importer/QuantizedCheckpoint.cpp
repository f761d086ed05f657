//===- QuantizedCheckpoint.cpp - bitsandbytes 4-bit checkpoints -----------===//
#include "compiler/Importer/QuantizedCheckpoint.h"

#include "runtime/format/Json.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/FormatVariadic.h"

using namespace qloracc::importer;
using nlohmann::json;
using qlora::format::BnbNf4Tensor;
using qlora::format::formatShape;
using qlora::format::LocatedTensor;

static llvm::Error quantizationError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

namespace {

/// Checks the members of `quantization_config`, keeping the first error.
class QuantizationConfigReader {
public:
  QuantizationConfigReader(const json &object, llvm::StringRef file)
      : object(object), file(file) {}

  /// The member `key` when present and not null.
  const json *find(llvm::StringRef key) const {
    auto it = object.find(key.str());
    return it == object.end() || it->is_null() ? nullptr : &*it;
  }

  /// The boolean `key`, `fallback` when absent.
  bool boolean(llvm::StringRef key, bool fallback) {
    const json *value = find(key);
    if (!value)
      return fallback;
    if (!value->is_boolean()) {
      fail(key, "expected true or false, found " + value->dump());
      return fallback;
    }
    return value->get<bool>();
  }

  void fail(llvm::StringRef key, const std::string &message) {
    if (!error)
      error = llvm::formatv("{0}: key 'quantization_config.{1}': {2}", file,
                            key, message)
                  .str();
  }

  std::optional<std::string> error;

private:
  const json &object;
  llvm::StringRef file;
};

} // namespace

llvm::Expected<std::optional<BnbQuantizationConfig>>
qloracc::importer::readBnbQuantizationConfig(llvm::StringRef configPath) {
  std::string error;
  std::optional<json> root =
      qlora::format::readJsonFile(configPath.str(), error);
  if (!root)
    return quantizationError(error);
  auto it = root->is_object() ? root->find("quantization_config") : root->end();
  if (it == root->end() || it->is_null())
    return std::nullopt;
  if (!it->is_object())
    return quantizationError(configPath +
                             ": key 'quantization_config': expected an "
                             "object, found " +
                             it->dump());
  QuantizationConfigReader fields(*it, configPath);

  if (const json *method = fields.find("quant_method");
      method && *method != "bitsandbytes")
    fields.fail("quant_method",
                "unsupported quantization method " + method->dump() +
                    " (expected \"bitsandbytes\" with load_in_4bit and "
                    "bnb_4bit_quant_type \"nf4\")");
  if (fields.boolean("load_in_8bit", false))
    fields.fail("load_in_8bit",
                "8-bit (LLM.int8) checkpoints are not supported (expected "
                "load_in_4bit with bnb_4bit_quant_type \"nf4\")");
  if (!fields.boolean("load_in_4bit", false))
    fields.fail("load_in_4bit",
                "expected true (a bitsandbytes 4-bit NF4 checkpoint), found " +
                    (fields.find("load_in_4bit")
                         ? fields.find("load_in_4bit")->dump()
                         : std::string("nothing")));
  const json *quantType = fields.find("bnb_4bit_quant_type");
  if (!quantType)
    fields.fail("bnb_4bit_quant_type",
                "missing (transformers' default is \"fp4\"): FP4 is not "
                "supported, only NF4");
  else if (*quantType == "fp4")
    fields.fail("bnb_4bit_quant_type", "FP4 is not supported, only NF4");
  else if (*quantType != "nf4")
    fields.fail("bnb_4bit_quant_type",
                "expected \"nf4\", found " + quantType->dump());
  // Another storage type packs the codes into wider elements (for FSDP).
  if (const json *storage = fields.find("bnb_4bit_quant_storage");
      storage && *storage != "uint8")
    fields.fail("bnb_4bit_quant_storage",
                "expected \"uint8\", found " + storage->dump());

  BnbQuantizationConfig config;
  config.doubleQuant = fields.boolean("bnb_4bit_use_double_quant", false);
  if (const json *skip = fields.find("llm_int8_skip_modules")) {
    if (!skip->is_array() ||
        !llvm::all_of(*skip, [](const json &m) { return m.is_string(); }))
      fields.fail("llm_int8_skip_modules",
                  "expected a list of module names, found " + skip->dump());
    else
      for (const json &module : *skip)
        config.skipModules.push_back(module.get<std::string>());
  }
  if (fields.error)
    return quantizationError(*fields.error);
  return config;
}

bool qloracc::importer::isQuantizedOnLoad(const BnbQuantizationConfig &config,
                                          const FrozenTensor &tensor) {
  llvm::StringRef module(tensor.name);
  module.consume_back(".weight");
  if (!tensor.linear || module == "lm_head")
    return false;
  // transformers skips a module when a skip entry occurs in its name.
  return llvm::none_of(config.skipModules, [&](const std::string &skip) {
    return module.contains(skip);
  });
}

mlir::nf4::Nf4TensorType
qloracc::importer::getNf4Type(mlir::MLIRContext &context,
                              llvm::ArrayRef<int64_t> shape, int64_t blocksize,
                              int64_t nestedBlocksize) {
  return mlir::nf4::Nf4TensorType::get(&context, shape, blocksize,
                                       nestedBlocksize);
}

llvm::Expected<BnbNf4Tensor> qloracc::importer::readQuantizedTensor(
    const qlora::format::TensorLookup &lookup, const FrozenTensor &want,
    bool configIsQuantized) {
  std::string stateKey =
      want.name + std::string(qlora::format::kBnbNf4QuantStateSuffix);
  LocatedTensor state = lookup(stateKey);
  if (!state.view) {
    stateKey = want.name + std::string(qlora::format::kBnbFp4QuantStateSuffix);
    state = lookup(stateKey);
  }
  std::string where = (state.path ? *state.path : std::string("checkpoint")) +
                      ": tensor '" + want.name + "'";
  if (!configIsQuantized)
    return quantizationError(
        where + " is stored in bitsandbytes 4-bit (it has '" + stateKey +
        "'), but config.json has no quantization_config "
        "with load_in_4bit");
  if (!want.linear)
    return quantizationError(where +
                             " is stored in bitsandbytes 4-bit, but only "
                             "linear layer weights can be (bitsandbytes "
                             "quantizes nn.Linear weights only)");
  std::string error;
  std::optional<BnbNf4Tensor> tensor =
      qlora::format::readBnbNf4Tensor(lookup, want.name, error);
  if (!tensor)
    return quantizationError(error);
  if (tensor->shape != want.shape)
    return quantizationError(
        *lookup(want.name).path + ": tensor '" + want.name +
        "': expected shape " + formatShape(want.shape) + ", found " +
        formatShape(tensor->shape) + " (the shape in its quant state)");
  return *tensor;
}
