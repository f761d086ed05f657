//===- TokenDataset.h - Tokenized training data -----------------*- C++ -*-===//
//
// Training data for `qlora-run`: fixed-length sequences of token ids with
// their labels, served batch after batch in file order, wrapping around at
// the end. Two kinds of file are read:
//
// * Raw token files: little-endian uint16 or uint32 token ids, one after the
//   other (what `np.array(ids, np.uint16).tofile(...)` writes), memory-mapped.
//   The stream is cut into consecutive windows of seq+1 tokens; window k is
//   tokens [k*(seq+1), (k+1)*(seq+1)). A sequence's input_ids are the first
//   `seq` tokens of its window and its labels are the same `seq` tokens: as in
//   transformers, labels equal input_ids and the model shifts them itself
//   (logits[:, :-1] against labels[:, 1:]), so the window's last token is
//   never an input. Windows of seq+1 keep the layout of the usual
//   "block_size + 1" token files, whose last token is only a target; tokens
//   after the last whole window are not used.
// * JSONL: one JSON object per line with an `input_ids` array of
//   non-negative integers and optionally a `labels` array of the same length
//   (-100 marks a token the loss ignores; without `labels` they equal
//   input_ids). Blank lines are skipped. Longer sequences are truncated to
//   `seq`; shorter ones are padded with token 0 and label -100.
//
// Every token id (and label other than -100) is checked against the
// vocabulary when the file is opened, over the whole file, so a bad id is
// reported with its position before training starts rather than as a wrong
// embedding row or an out-of-bounds read mid-run.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_DATA_TOKENDATASET_H
#define QLORACC_RUNTIME_DATA_TOKENDATASET_H

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qlora::data {

/// The label value that the loss ignores (transformers' ignore_index).
inline constexpr int32_t kIgnoreLabel = -100;

enum class DataFormat {
  /// Chosen from the file name: `.jsonl` is Jsonl, `.u32` and `.bin32` are
  /// U32, anything else (`.bin`, `.u16`, no extension) is U16.
  Auto,
  U16,
  U32,
  Jsonl,
};

/// Parses "auto", "u16", "u32" or "jsonl"; std::nullopt otherwise.
std::optional<DataFormat> parseDataFormat(std::string_view name);
/// The spelling parseDataFormat accepts.
std::string_view dataFormatName(DataFormat format);
/// What DataFormat::Auto resolves to for `path`; never returns Auto.
DataFormat detectDataFormat(std::string_view path);

class TokenDataset {
public:
  /// Opens `path` for batches of `batch` sequences of `seq` tokens with ids
  /// below `vocab`. On failure returns nullptr and sets `error` to one line
  /// naming the file, the position (line, or token index and byte offset),
  /// what was expected and what was found.
  static std::unique_ptr<TokenDataset> open(const std::string &path,
                                            DataFormat format, int64_t batch,
                                            int64_t seq, int64_t vocab,
                                            std::string &error);
  virtual ~TokenDataset();
  TokenDataset(const TokenDataset &) = delete;
  TokenDataset &operator=(const TokenDataset &) = delete;

  /// Fills `tokens` and `labels`, each batch*seq values in row-major
  /// [batch, seq] order, with the next `batch` sequences, wrapping around to
  /// the first sequence after the last (a batch may straddle the wrap).
  void nextBatch(std::span<int32_t> tokens, std::span<int32_t> labels);
  /// Makes sequence `sequenceIndex` (taken modulo numSequences()) the first
  /// of the next batch; seek(step * batch) resumes after `step` batches.
  void seek(int64_t sequenceIndex);

  /// Visits the sequences of each pass over the file in an order drawn
  /// from `seed` (a fresh permutation per pass, a pure function of the seed
  /// and the pass number); seed 0 restores file order.
  void shuffle(uint64_t seed);

  /// Number of sequences (windows or JSONL records) in the file.
  int64_t numSequences() const { return numSequences_; }
  /// batch * seq: the length of each span nextBatch() fills.
  int64_t tokensPerBatch() const { return batch_ * seq_; }
  int64_t batchSize() const { return batch_; }
  int64_t seqLength() const { return seq_; }
  /// The sequence the next batch starts with.
  int64_t position() const { return next_; }
  /// The format that was read (Auto resolved).
  DataFormat format() const { return format_; }

protected:
  TokenDataset(DataFormat format, int64_t batch, int64_t seq,
               int64_t numSequences)
      : format_(format), batch_(batch), seq_(seq), numSequences_(numSequences) {
  }

  /// Writes sequence `index` into `tokens` and `labels` (seq values each).
  virtual void readSequence(int64_t index, std::span<int32_t> tokens,
                            std::span<int32_t> labels) const = 0;

private:
  DataFormat format_;
  int64_t batch_;
  int64_t seq_;
  int64_t numSequences_;
  int64_t next_ = 0;
  void drawOrder(int64_t pass);

  uint64_t shuffleSeed_ = 0;
  int64_t passes_ = 0;
  std::vector<int64_t> order_;
};

} // namespace qlora::data

#endif // QLORACC_RUNTIME_DATA_TOKENDATASET_H
