//===- JsonlTokenFile.cpp - JSONL files of token id records ---------------===//
//
// The whole file is parsed at open time into padded [numSequences, seq]
// token and label arrays, so every error is found before training starts
// and a batch is two copies.
//
//===----------------------------------------------------------------------===//
#include "runtime/data/DatasetFiles.h"

#include "runtime/format/Json.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

namespace qlora::data::detail {
namespace {

using Json = nlohmann::json;

/// format::parseJson reports "<where>: malformed JSON at byte N: parse error
/// at line 1, column M: <reason>"; a record is one line of the file, so
/// "<where>: malformed JSON at column M: <reason>" says it once, in the
/// file's own terms. Other messages are kept as they are.
std::string recordSyntaxError(const std::string &where, std::string error) {
  std::string prefix = where + ": malformed JSON at byte ";
  constexpr std::string_view kLineOne = "parse error at line 1, column ";
  size_t at = error.find(kLineOne);
  if (error.rfind(prefix, 0) != 0 || at == std::string::npos)
    return error;
  size_t column = at + kLineOne.size();
  size_t end = error.find(": ", column);
  if (end == std::string::npos)
    return error;
  return where + ": malformed JSON at column " +
         error.substr(column, end - column) + error.substr(end);
}

bool isBlank(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
  });
}

class JsonlTokenDataset final : public TokenDataset {
public:
  JsonlTokenDataset(const DatasetShape &shape, int64_t numSequences,
                    std::vector<int32_t> tokens, std::vector<int32_t> labels)
      : TokenDataset(DataFormat::Jsonl, shape.batch, shape.seq, numSequences),
        tokens_(std::move(tokens)), labels_(std::move(labels)) {}

private:
  void readSequence(int64_t index, std::span<int32_t> tokens,
                    std::span<int32_t> labels) const override {
    size_t offset = static_cast<size_t>(index) * tokens.size();
    std::copy_n(tokens_.begin() + offset, tokens.size(), tokens.begin());
    std::copy_n(labels_.begin() + offset, labels.size(), labels.begin());
  }

  std::vector<int32_t> tokens_;
  std::vector<int32_t> labels_;
};

/// Parses one non-blank line and appends its padded sequence to `tokens`
/// and `labels`. `where` is "path:line".
class RecordParser {
public:
  RecordParser(const std::string &where, const DatasetShape &shape,
               std::string &error)
      : where(where), shape(shape), error(error) {}

  bool parse(std::string_view line, std::vector<int32_t> &tokens,
             std::vector<int32_t> &labels) {
    std::optional<Json> record = format::parseJson(line, where, error);
    if (!record) {
      error = recordSyntaxError(where, std::move(error));
      return false;
    }
    if (!record->is_object())
      return fail("found " + describeJson(*record) +
                  ", expected a JSON object with an \"input_ids\" array");
    auto ids = record->find("input_ids");
    if (ids == record->end())
      return fail("no \"input_ids\" key, expected an array of token ids");
    if (!ids->is_array() || ids->empty())
      return fail("\"input_ids\" is " + describeJson(*ids) +
                  ", expected a non-empty array of token ids");
    const Json *labelArray = nullptr;
    if (auto it = record->find("labels"); it != record->end()) {
      if (!it->is_array())
        return fail("\"labels\" is " + describeJson(*it) +
                    ", expected an array of token ids or -100");
      if (it->size() != ids->size())
        return fail("\"labels\" has " + std::to_string(it->size()) +
                    " entries, expected " + std::to_string(ids->size()) +
                    " like \"input_ids\"");
      labelArray = &*it;
    }

    // Every entry is checked, including those truncation drops.
    auto seq = static_cast<size_t>(shape.seq);
    size_t kept = std::min(ids->size(), seq);
    for (size_t i = 0; i < ids->size(); ++i) {
      std::optional<int32_t> id = tokenId(*ids, i);
      if (!id)
        return false;
      std::optional<int32_t> label = labelArray ? labelOf(*labelArray, i) : id;
      if (!label)
        return false;
      if (i < kept) {
        tokens.push_back(*id);
        labels.push_back(*label);
      }
    }
    tokens.insert(tokens.end(), seq - kept, 0);
    labels.insert(labels.end(), seq - kept, kIgnoreLabel);
    return true;
  }

private:
  bool fail(const std::string &message) {
    error = where + ": " + message;
    return false;
  }

  /// The value of input_ids[i], checked to be a valid id.
  std::optional<int32_t> tokenId(const Json &ids, size_t i) {
    const Json &entry = ids[i];
    const auto *value = entry.get_ptr<const Json::number_unsigned_t *>();
    if (!value) {
      fail("input_ids[" + std::to_string(i) + "] is " + describeJson(entry) +
           ", expected a non-negative integer");
      return std::nullopt;
    }
    if (*value >= static_cast<uint64_t>(shape.vocab)) {
      fail("token id " + std::to_string(*value) + " at position " +
           std::to_string(i) + " is out of range for vocab_size " +
           std::to_string(shape.vocab));
      return std::nullopt;
    }
    return static_cast<int32_t>(*value);
  }

  /// The value of labels[i]: -100 or a valid id.
  std::optional<int32_t> labelOf(const Json &labels, size_t i) {
    const Json &entry = labels[i];
    if (entry.is_number_integer()) {
      auto value = entry.get<int64_t>();
      if (entry.is_number_unsigned() &&
          entry.get<uint64_t>() < static_cast<uint64_t>(shape.vocab))
        return static_cast<int32_t>(value);
      if (!entry.is_number_unsigned() && value == kIgnoreLabel)
        return kIgnoreLabel;
    }
    fail("labels[" + std::to_string(i) + "] is " + describeJson(entry) +
         ", expected -100 or a token id in [0, " + std::to_string(shape.vocab) +
         ")");
    return std::nullopt;
  }

  const std::string &where;
  const DatasetShape &shape;
  std::string &error;
};

} // namespace

std::unique_ptr<TokenDataset> openJsonl(const std::string &path,
                                        const DatasetShape &shape,
                                        std::string &error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = path + ": cannot open: " + std::strerror(errno);
    return nullptr;
  }
  std::vector<int32_t> tokens, labels;
  int64_t numSequences = 0;
  std::string line;
  for (int64_t lineNumber = 1; std::getline(in, line); ++lineNumber) {
    if (isBlank(line))
      continue;
    std::string where = path + ":" + std::to_string(lineNumber);
    RecordParser parser(where, shape, error);
    if (!parser.parse(line, tokens, labels))
      return nullptr;
    ++numSequences;
  }
  if (in.bad()) {
    error = path + ": read error: " + std::strerror(errno);
    return nullptr;
  }
  if (!checkEnoughForOneBatch(path, numSequences,
                              std::to_string(numSequences) +
                                  " records (non-blank lines)",
                              shape, error))
    return nullptr;
  return std::make_unique<JsonlTokenDataset>(
      shape, numSequences, std::move(tokens), std::move(labels));
}

} // namespace qlora::data::detail
