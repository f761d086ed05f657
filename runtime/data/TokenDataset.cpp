//===- TokenDataset.cpp - Tokenized training data -------------------------===//
#include "runtime/data/TokenDataset.h"

#include "runtime/format/CounterRng.h"

#include "runtime/data/DatasetFiles.h"

#include <cassert>
#include <limits>

namespace qlora::data {

using detail::DatasetShape;

namespace {

bool endsWith(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() &&
         text.substr(text.size() - suffix.size()) == suffix;
}

/// Checks one of open()'s size arguments; `limit` is the largest value that
/// keeps every product and every id representable.
bool checkPositive(const std::string &path, const char *what, int64_t value,
                   int64_t limit, std::string &error) {
  if (value >= 1 && value <= limit)
    return true;
  error = path + ": " + what + " is " + std::to_string(value) +
          ", expected an integer in [1, " + std::to_string(limit) + "]";
  return false;
}

} // namespace

std::optional<DataFormat> parseDataFormat(std::string_view name) {
  for (DataFormat format :
       {DataFormat::Auto, DataFormat::U16, DataFormat::U32, DataFormat::Jsonl})
    if (dataFormatName(format) == name)
      return format;
  return std::nullopt;
}

std::string_view dataFormatName(DataFormat format) {
  switch (format) {
  case DataFormat::Auto:
    return "auto";
  case DataFormat::U16:
    return "u16";
  case DataFormat::U32:
    return "u32";
  case DataFormat::Jsonl:
    return "jsonl";
  }
  return "auto";
}

DataFormat detectDataFormat(std::string_view path) {
  if (endsWith(path, ".jsonl"))
    return DataFormat::Jsonl;
  if (endsWith(path, ".u32") || endsWith(path, ".bin32"))
    return DataFormat::U32;
  return DataFormat::U16;
}

std::unique_ptr<TokenDataset>
TokenDataset::open(const std::string &path, DataFormat format, int64_t batch,
                   int64_t seq, int64_t vocab, std::string &error) {
  // Bounds that keep batch*seq*4 bytes and seq+1 far from overflowing, and
  // every id below vocab representable as int32_t.
  constexpr int64_t kMaxDim = int64_t{1} << 31;
  if (!checkPositive(path, "batch size", batch, kMaxDim, error) ||
      !checkPositive(path, "sequence length", seq, kMaxDim, error) ||
      !checkPositive(path, "vocab_size", vocab, kMaxDim, error))
    return nullptr;
  if (batch * seq > kMaxDim) {
    error = path + ": batch size " + std::to_string(batch) +
            " times sequence length " + std::to_string(seq) + " is " +
            std::to_string(batch * seq) + " tokens, expected at most " +
            std::to_string(kMaxDim);
    return nullptr;
  }
  DatasetShape shape{batch, seq, vocab};
  if (format == DataFormat::Auto)
    format = detectDataFormat(path);
  if (format == DataFormat::Jsonl)
    return detail::openJsonl(path, shape, error);
  return detail::openRawTokens(path, format, shape, error);
}

TokenDataset::~TokenDataset() = default;

void TokenDataset::nextBatch(std::span<int32_t> tokens,
                             std::span<int32_t> labels) {
  assert(static_cast<int64_t>(tokens.size()) == tokensPerBatch() &&
         static_cast<int64_t>(labels.size()) == tokensPerBatch() &&
         "nextBatch needs batch*seq tokens and labels");
  auto seq = static_cast<size_t>(seq_);
  for (int64_t row = 0; row < batch_; ++row) {
    auto offset = static_cast<size_t>(row) * seq;
    int64_t index = next_;
    if (shuffleSeed_ != 0) {
      if (next_ == 0 || order_.empty())
        drawOrder(passes_++);
      index = order_[size_t(next_)];
    }
    readSequence(index, tokens.subspan(offset, seq),
                 labels.subspan(offset, seq));
    next_ = next_ + 1 == numSequences_ ? 0 : next_ + 1;
  }
}

void TokenDataset::shuffle(uint64_t seed) {
  shuffleSeed_ = seed;
  passes_ = 0;
  order_.clear();
}

void TokenDataset::drawOrder(int64_t pass) {
  // Fisher-Yates with the counter-based generator: the order of pass p
  // depends only on (seed, p), so a resumed run sees the same sequences.
  format::CounterRng rng(shuffleSeed_, "data-pass-" + std::to_string(pass));
  order_.resize(size_t(numSequences_));
  for (int64_t i = 0; i < numSequences_; ++i)
    order_[size_t(i)] = i;
  for (int64_t i = numSequences_ - 1; i > 0; --i) {
    auto j = int64_t(rng.bits(uint64_t(i)) % uint64_t(i + 1));
    std::swap(order_[size_t(i)], order_[size_t(j)]);
  }
}

void TokenDataset::seek(int64_t sequenceIndex) {
  next_ = sequenceIndex % numSequences_;
  if (next_ < 0)
    next_ += numSequences_;
}

namespace detail {

bool checkEnoughForOneBatch(const std::string &path, int64_t numSequences,
                            const std::string &found, const DatasetShape &shape,
                            std::string &error) {
  if (numSequences >= shape.batch)
    return true;
  error = path + ": " + found + ", fewer than one batch of " +
          std::to_string(shape.batch) + " sequences";
  return false;
}

std::string describeJson(const nlohmann::json &value) {
  constexpr size_t kMaxChars = 40;
  std::string text = value.dump(-1, ' ', /*ensure_ascii=*/true,
                                nlohmann::json::error_handler_t::replace);
  if (text.size() > kMaxChars)
    text = text.substr(0, kMaxChars) + "...";
  return std::string(value.type_name()) + " " + text;
}

} // namespace detail
} // namespace qlora::data
