//===- BnbNf4.cpp - bitsandbytes 4-bit tensors in a checkpoint ------------===//
#include "runtime/format/BnbNf4.h"

#include "runtime/format/Json.h"
#include "runtime/format/Nf4.h"

#include <cmath>
#include <cstdio>
#include <cstring>

namespace qlora::format {
namespace {

using nlohmann::json;

constexpr int64_t kMinBlocksize = 32;
constexpr int64_t kMaxBlocksize = 4096;

/// The torch dtype names bitsandbytes writes ("torch.float32" stripped of
/// "torch.") for the float types a 4-bit weight dequantizes to.
std::optional<DType> parseTorchFloatDType(const std::string &name) {
  if (name == "float32")
    return DType::F32;
  if (name == "bfloat16")
    return DType::BF16;
  if (name == "float16")
    return DType::F16;
  return std::nullopt;
}

/// Validates one weight's pieces, keeping the first error.
class BnbNf4Reader {
public:
  BnbNf4Reader(const TensorLookup &lookup, std::string_view key,
               std::string &error)
      : lookup(lookup), key(key), error(error) {}

  std::optional<BnbNf4Tensor> read();

private:
  /// "<file>: tensor '<key><suffix>': ".
  std::string where(const LocatedTensor &at, std::string_view suffix) const {
    return *at.path + ": tensor '" +
           escapeForMessage(key + std::string(suffix)) + "': ";
  }

  bool fail(const LocatedTensor &at, std::string_view suffix,
            const std::string &message) {
    error = where(at, suffix) + message;
    return false;
  }

  /// `<key><suffix>` when it is there with `dtype` and `shape`.
  std::optional<LocatedTensor> expectTensor(std::string_view suffix,
                                            DType dtype,
                                            const std::vector<int64_t> &shape,
                                            std::string_view what);

  /// True when `<key><suffix>` holds exactly the fp32 values `table`.
  bool expectTable(std::string_view suffix, std::span<const float> table,
                   std::string_view what);

  bool readQuantState(const LocatedTensor &state, BnbNf4Tensor &out);

  const TensorLookup &lookup;
  std::string key;
  std::string &error;
  /// Where the weight itself lives: errors about a missing piece name it.
  LocatedTensor weight;
};

std::optional<LocatedTensor>
BnbNf4Reader::expectTensor(std::string_view suffix, DType dtype,
                           const std::vector<int64_t> &shape,
                           std::string_view what) {
  std::string expected = std::string(dtypeName(dtype)) + " " +
                         formatShape(shape) + " (" + std::string(what) + ")";
  LocatedTensor found = lookup(key + std::string(suffix));
  if (!found.view) {
    fail(weight, suffix, "missing; expected " + expected);
    return std::nullopt;
  }
  if (found.view->dtype != dtype || found.view->shape != shape) {
    fail(found, suffix,
         "expected " + expected + ", found " +
             std::string(dtypeName(found.view->dtype)) + " " +
             formatShape(found.view->shape));
    return std::nullopt;
  }
  return found;
}

bool BnbNf4Reader::expectTable(std::string_view suffix,
                               std::span<const float> table,
                               std::string_view what) {
  std::optional<LocatedTensor> found = expectTensor(
      suffix, DType::F32, {static_cast<int64_t>(table.size())}, what);
  if (!found)
    return false;
  const uint8_t *bytes = found->view->bytes.data();
  for (size_t i = 0; i < table.size(); ++i) {
    float value;
    std::memcpy(&value, bytes + 4 * i, 4);
    uint32_t haveBits, wantBits;
    std::memcpy(&haveBits, &value, 4);
    std::memcpy(&wantBits, &table[i], 4);
    if (haveBits != wantBits) {
      char text[96];
      std::snprintf(
          text, sizeof(text), "found %.9g at index %zu, expected %.9g",
          static_cast<double>(value), i, static_cast<double>(table[i]));
      return fail(*found, suffix,
                  "expected " + std::string(what) + " bit for bit; " + text);
    }
  }
  return true;
}

bool BnbNf4Reader::readQuantState(const LocatedTensor &state,
                                  BnbNf4Tensor &out) {
  const std::string_view suffix = kBnbNf4QuantStateSuffix;
  const TensorView &view = *state.view;
  if (view.dtype != DType::U8 || view.shape.size() != 1)
    return fail(state, suffix,
                "expected U8 [bytes] (the quant state's JSON text), found " +
                    std::string(dtypeName(view.dtype)) + " " +
                    formatShape(view.shape));
  std::string text(reinterpret_cast<const char *>(view.bytes.data()),
                   view.bytes.size());
  std::optional<json> root = parseJson(text, where(state, suffix), error);
  if (!root)
    return false;
  if (!root->is_object())
    return fail(state, suffix,
                std::string("expected a JSON object, found ") +
                    root->type_name());

  auto field = [&](const char *name, bool (json::*isType)() const noexcept,
                   const char *expected) -> const json * {
    auto it = root->find(name);
    if (it == root->end()) {
      fail(state, suffix,
           std::string("missing key '") + name + "' (expected " + expected +
               ")");
      return nullptr;
    }
    if (!((*it).*isType)()) {
      fail(state, suffix,
           std::string("key '") + name + "': expected " + expected +
               ", found " + it->dump());
      return nullptr;
    }
    return &*it;
  };

  const json *quantType = field("quant_type", &json::is_string, "\"nf4\"");
  if (!quantType)
    return false;
  if (*quantType == "fp4")
    return fail(state, suffix,
                "quant_type \"fp4\": FP4 is not supported, only NF4");
  if (*quantType != "nf4")
    return fail(state, suffix,
                "key 'quant_type': expected \"nf4\", found " +
                    quantType->dump());

  const json *blocksize =
      field("blocksize", &json::is_number_integer, "an integer");
  if (!blocksize)
    return false;
  out.blocksize = blocksize->get<int64_t>();
  if (out.blocksize < kMinBlocksize || out.blocksize > kMaxBlocksize ||
      (out.blocksize & (out.blocksize - 1)) != 0)
    return fail(state, suffix,
                "key 'blocksize': expected a power of two in [32, 4096] "
                "(bitsandbytes' block sizes), found " +
                    blocksize->dump());

  const json *dtype = field("dtype", &json::is_string,
                            "\"float32\", \"bfloat16\" or "
                            "\"float16\"");
  if (!dtype)
    return false;
  std::optional<DType> parsed = parseTorchFloatDType(dtype->get<std::string>());
  if (!parsed)
    return fail(state, suffix,
                "key 'dtype': expected \"float32\", \"bfloat16\" or "
                "\"float16\", found " +
                    dtype->dump());
  out.dtype = *parsed;

  const json *shape =
      field("shape", &json::is_array, "a list of positive integers");
  if (!shape)
    return false;
  int64_t count = 1;
  for (const json &dim : *shape) {
    int64_t size = dim.is_number_integer() ? dim.get<int64_t>() : 0;
    if (size <= 0 || __builtin_mul_overflow(count, size, &count))
      return fail(state, suffix,
                  "key 'shape': expected a list of positive integers with "
                  "fewer than 2^63 elements, found " +
                      shape->dump());
    out.shape.push_back(size);
  }
  if (out.shape.empty())
    return fail(state, suffix,
                "key 'shape': expected at least one dimension, found []");

  // bitsandbytes writes the nested_* keys exactly when it double quantized.
  bool nested = root->contains("nested_blocksize") ||
                root->contains("nested_dtype") ||
                root->contains("nested_offset");
  out.nestedBlocksize = 0;
  if (!nested)
    return true;
  const json *nestedBlocksize =
      field("nested_blocksize", &json::is_number_integer, "256");
  if (!nestedBlocksize)
    return false;
  if (*nestedBlocksize != kNf4NestedBlocksize)
    return fail(state, suffix,
                "key 'nested_blocksize': expected 256 (bitsandbytes' nested "
                "block size), found " +
                    nestedBlocksize->dump());
  out.nestedBlocksize = kNf4NestedBlocksize;
  const json *nestedDtype =
      field("nested_dtype", &json::is_string, "\"float32\"");
  if (!nestedDtype)
    return false;
  if (*nestedDtype != "float32")
    return fail(state, suffix,
                "key 'nested_dtype': expected \"float32\", found " +
                    nestedDtype->dump());
  const json *offset =
      field("nested_offset", &json::is_number, "a finite number");
  if (!offset)
    return false;
  out.offset = static_cast<float>(offset->get<double>());
  if (!std::isfinite(out.offset))
    return fail(state, suffix,
                "key 'nested_offset': expected a finite fp32 number, found " +
                    offset->dump());
  return true;
}

std::optional<BnbNf4Tensor> BnbNf4Reader::read() {
  LocatedTensor state = lookup(key + std::string(kBnbNf4QuantStateSuffix));
  weight = lookup(key);
  if (!state.view) {
    LocatedTensor fp4 = lookup(key + std::string(kBnbFp4QuantStateSuffix));
    if (fp4.view)
      fail(fp4, "",
           "bitsandbytes FP4 weight (has " +
               escapeForMessage(key + std::string(kBnbFp4QuantStateSuffix)) +
               "): FP4 is not supported, only NF4");
    else if (weight.view)
      fail(weight, kBnbNf4QuantStateSuffix,
           "missing (expected the JSON quant state of a bitsandbytes 4-bit "
           "weight)");
    else
      error = "tensor '" + escapeForMessage(key) +
              "': not found (expected a bitsandbytes 4-bit weight)";
    return std::nullopt;
  }
  if (!weight.view) {
    fail(state, "",
         "missing; expected the packed 4-bit codes (U8) beside " +
             escapeForMessage(key + std::string(kBnbNf4QuantStateSuffix)));
    return std::nullopt;
  }

  BnbNf4Tensor out;
  if (!readQuantState(state, out))
    return std::nullopt;

  int64_t count = out.numElements();
  int64_t blocks = (count + out.blocksize - 1) / out.blocksize;
  std::string counts = std::to_string(count) + " elements of shape " +
                       formatShape(out.shape) + " from " +
                       std::string(kBnbNf4QuantStateSuffix.substr(1));

  std::optional<LocatedTensor> packed =
      expectTensor("", DType::U8, {(count + 1) / 2, 1},
                   "two 4-bit codes per byte for " + counts);
  if (!packed)
    return std::nullopt;
  out.packed = packed->view->bytes;

  std::string blockText =
      std::to_string(blocks) + " blocks of " + std::to_string(out.blocksize);
  std::optional<LocatedTensor> absmax =
      out.isDoubleQuantized()
          ? expectTensor(".absmax", DType::U8, {blocks},
                         "8-bit codes of the double-quantized scales of " +
                             blockText)
          : expectTensor(".absmax", DType::F32, {blocks},
                         "one scale per block: " + blockText);
  if (!absmax)
    return std::nullopt;
  out.absmax = std::as_bytes(absmax->view->bytes);

  if (!expectTable(".quant_map", kNf4Code,
                   "the NF4 code table (bitsandbytes get_4bit_type(\"nf4\"))"))
    return std::nullopt;

  if (!out.isDoubleQuantized()) {
    for (std::string_view suffix : {".nested_absmax", ".nested_quant_map"}) {
      LocatedTensor stray = lookup(key + std::string(suffix));
      if (stray.view) {
        fail(stray, suffix,
             "unexpected: the quant state has no nested_blocksize (not double "
             "quantized)");
        return std::nullopt;
      }
    }
    return out;
  }

  int64_t nestedBlocks =
      (blocks + out.nestedBlocksize - 1) / out.nestedBlocksize;
  std::optional<LocatedTensor> nestedAbsmax = expectTensor(
      ".nested_absmax", DType::F32, {nestedBlocks},
      "one scale per 256 of the " + std::to_string(blocks) + " absmax codes");
  if (!nestedAbsmax)
    return std::nullopt;
  out.nestedAbsmax = std::as_bytes(nestedAbsmax->view->bytes);

  static const std::vector<float> dynamicMap = createDynamicMap(true);
  if (!expectTable(".nested_quant_map", dynamicMap,
                   "bitsandbytes' signed 8-bit dynamic map "
                   "(create_dynamic_map(signed=True))"))
    return std::nullopt;
  return out;
}

TensorLookup lookupIn(const SafetensorsFile &file) {
  return [&file](const std::string &name) {
    return LocatedTensor{file.find(name), &file.path()};
  };
}

} // namespace

int64_t BnbNf4Tensor::numElements() const {
  int64_t count = 1;
  for (int64_t dim : shape)
    count *= dim;
  return count;
}

bool hasBnbNf4QuantState(const TensorLookup &lookup, std::string_view key) {
  std::string name(key);
  return lookup(name + std::string(kBnbNf4QuantStateSuffix)).view ||
         lookup(name + std::string(kBnbFp4QuantStateSuffix)).view;
}

bool hasBnbNf4QuantState(const SafetensorsFile &file, std::string_view key) {
  return hasBnbNf4QuantState(lookupIn(file), key);
}

std::optional<BnbNf4Tensor> readBnbNf4Tensor(const TensorLookup &lookup,
                                             std::string_view key,
                                             std::string &error) {
  return BnbNf4Reader(lookup, key, error).read();
}

std::optional<BnbNf4Tensor> readBnbNf4Tensor(const SafetensorsFile &file,
                                             std::string_view key,
                                             std::string &error) {
  return readBnbNf4Tensor(lookupIn(file), key, error);
}

} // namespace qlora::format
