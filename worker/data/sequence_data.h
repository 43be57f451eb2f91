// What training and evaluation read: rows of L (input, target, position)
// slots. Two backends: TextWindows (plain text, a token stream cut into
// windows of L + 1 tokens) and PackedExamples (instruction_data.h: chat or
// prompt/completion examples packed into rows, targets outside the response
// ignored, positions restarting per example).
//
// Note [Packed rows]: in a row, an example of n tokens e[0..n) fills n - 1
// consecutive slots j = 0..n-2 with input e[j], target e[j + 1] (or
// kIgnoreTarget when e[j + 1] is not trained on) and position j. A slot
// attends to the earlier slots of its own example only (a block-diagonal
// causal mask): an example starts where a position is 0. Slots no example
// fills are padding: input 0, target kIgnoreTarget, positions 0, 1, ... (a
// segment of their own). Plain text windows are one segment with positions
// 0..L-1 and every target counted.
//
// Immutable after construction: thread-safe.
#ifndef DISTILL_WORKER_DATA_SEQUENCE_DATA_H_
#define DISTILL_WORKER_DATA_SEQUENCE_DATA_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "worker/data/token_shard.h"

namespace distill::worker {

// A target no loss counts (Hugging Face's label -100).
inline constexpr int64_t kIgnoreTarget = -100;

class SequenceData {
 public:
  virtual ~SequenceData() = default;
  virtual int64_t rows() const = 0;
  virtual int64_t seq_len() const = 0;  // L: slots per row
  // True when some row is not one plain segment 0..L-1 with every target
  // counted, i.e. when positions (and the mask they imply) must be used.
  virtual bool packed() const = 0;
  // Row `row` (0 <= row < rows()) into inputs, targets and positions, each L
  // values (Note [Packed rows]).
  virtual void Read(int64_t row, int64_t* inputs, int64_t* targets, int64_t* positions) const = 0;
  // InvalidArgument naming where the first id >= vocab_size is.
  virtual absl::Status CheckVocab(int64_t vocab_size) const = 0;
  // Counted targets over all rows (the tokens an eval of everything scores).
  virtual int64_t counted_targets() const = 0;
  // For the job's start line: "120000 tokens in 468 windows of 256".
  virtual std::string Describe() const = 0;
};

// Plain text: row i holds tokens [i*L, i*L + L + 1) of the stream (inputs
// the first L, targets the last L); rows = floor((N - 1) / L).
class TextWindows : public SequenceData {
 public:
  // InvalidArgument if the stream holds no full window (N < L + 1) or L < 1.
  static absl::StatusOr<std::unique_ptr<TextWindows>> Create(TokenDataset data, int64_t seq_len);

  int64_t rows() const override { return rows_; }
  int64_t seq_len() const override { return seq_len_; }
  bool packed() const override { return false; }
  void Read(int64_t row, int64_t* inputs, int64_t* targets, int64_t* positions) const override;
  absl::Status CheckVocab(int64_t vocab_size) const override { return data_.CheckVocab(vocab_size); }
  int64_t counted_targets() const override { return rows_ * seq_len_; }
  std::string Describe() const override;
  const TokenDataset& tokens() const { return data_; }

 private:
  TextWindows(TokenDataset data, int64_t seq_len, int64_t rows)
      : data_(std::move(data)), seq_len_(seq_len), rows_(rows) {}
  TokenDataset data_;
  int64_t seq_len_;
  int64_t rows_;
};

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DATA_SEQUENCE_DATA_H_
