// PackedExamples: instruction data (chat or prompt/completion JSONL,
// instruction_examples.h) as the rows training reads (Note [Packed rows]).
// Each file's examples come from its cache (tokenized once); an example over
// L + 1 tokens is truncated or dropped (data.overflow), one with no response
// target left is dropped, and the rest are packed best-fit decreasing
// (packing.h) or one per row. The rows are fixed for the run: the trainer's
// sampler shuffles them.
//
// Immutable after Open(): thread-safe. Errors: InvalidArgument naming
// FILE:LINE for bad input (instruction_examples.h), and for options that are
// not valid or data that leaves no example.
#ifndef DISTILL_WORKER_DATA_INSTRUCTION_DATA_H_
#define DISTILL_WORKER_DATA_INSTRUCTION_DATA_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/data/instruction_cache.h"
#include "worker/data/sequence_data.h"

namespace distill::worker {

struct InstructionOptions {
  // "chat" or "prompt_completion" (data.format; "text" is TextWindows).
  std::string format;
  // "bytes" (prompt_completion only), a tokenizer.json, or its directory.
  std::string tokenizer;
  // "assistant": only targets in a response count; "all": every target of an
  // example counts (its response mask is kept in the cache either way).
  std::string loss_on = "assistant";
  // An example of more than L + 1 tokens: "truncate" keeps its first L + 1
  // tokens; "drop" leaves it out. Both are counted in the stats.
  std::string overflow = "truncate";
  // true: best-fit decreasing into rows of L slots (least padding); false:
  // one example per row, padded (simplest to inspect).
  bool pack = true;
  int64_t seq_len = 256;  // L: slots per row
  int threads = 1;        // encoder threads when a cache is built
};

// What became of the examples; the trainer logs Summary().
struct PackingStats {
  int64_t examples = 0;             // read from the files
  int64_t truncated = 0;            // cut to L + 1 tokens (overflow "truncate")
  int64_t dropped_overflow = 0;     // over L + 1 tokens (overflow "drop")
  int64_t dropped_no_response = 0;  // no response target (after truncation)
  int64_t files_from_cache = 0;     // files whose cache was fresh
  bool packed = true;               // best-fit decreasing, else one example per row
  int64_t rows = 0;
  int64_t seq_len = 0;
  int64_t real_slots = 0;   // slots examples fill: n - 1 per example of n tokens
  int64_t total_slots = 0;  // rows * seq_len

  int64_t dropped() const { return dropped_overflow + dropped_no_response; }
  double efficiency() const;  // real_slots / total_slots
  // "1200 examples, 3 truncated, 1 dropped (no response tokens left), packed
  // into 410 rows of 256 (efficiency 97.2%)"
  std::string Summary() const;
};

class PackedExamples : public SequenceData {
 public:
  // The examples of `paths` (in order), fitted and packed as `options` say.
  static absl::StatusOr<std::unique_ptr<PackedExamples>> Open(const std::vector<std::string>& paths,
                                                              const InstructionOptions& options);

  int64_t rows() const override { return static_cast<int64_t>(row_begins_.size()) - 1; }
  int64_t seq_len() const override { return seq_len_; }
  bool packed() const override { return true; }
  void Read(int64_t row, int64_t* inputs, int64_t* targets, int64_t* positions) const override;
  // Names the file and line of the example holding the first bad id.
  absl::Status CheckVocab(int64_t vocab_size) const override;
  int64_t counted_targets() const override { return counted_targets_; }
  // stats().Summary(): "1200 examples, 3 truncated, 1 dropped (...), packed
  // into 410 rows of 256 (efficiency 97.2%)".
  std::string Describe() const override { return stats_.Summary(); }

  const PackingStats& stats() const { return stats_; }

 private:
  // An example as trained: its first `length` tokens.
  struct Placed {
    int64_t example = 0;
    int64_t length = 0;
  };
  PackedExamples() = default;
  // Truncates or drops the examples (stats_), then packs the rest into rows.
  void Fit(const InstructionOptions& options);
  bool Counted(uint64_t token) const { return count_all_ || examples_.response[token] != 0; }

  TokenizedExamples examples_;  // every file's, in order
  std::vector<std::string> files_;
  std::vector<int64_t> file_begins_;  // first example of each file, then examples_.size()
  int64_t seq_len_ = 0;
  bool count_all_ = false;              // loss_on "all"
  std::vector<Placed> placed_;          // the rows' examples, row after row
  std::vector<int64_t> row_begins_{0};  // row r is placed_[row_begins_[r], row_begins_[r + 1])
  int64_t counted_targets_ = 0;
  PackingStats stats_;
};

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DATA_INSTRUCTION_DATA_H_
