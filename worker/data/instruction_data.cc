#include "worker/data/instruction_data.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/data/instruction_examples.h"
#include "worker/data/packing.h"

namespace distill::worker {
namespace {

absl::Status CheckOptions(const InstructionOptions& options) {
  if (options.format != kFormatChat && options.format != kFormatPromptCompletion) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.format \"", options.format,
                     "\" is not instruction data (chat or prompt_completion)"));
  }
  if (options.loss_on != "assistant" && options.loss_on != "all") {
    return absl::InvalidArgumentError(
        absl::StrCat("data.loss_on must be assistant or all, got \"", options.loss_on, "\""));
  }
  if (options.overflow != "truncate" && options.overflow != "drop") {
    return absl::InvalidArgumentError(
        absl::StrCat("data.overflow must be truncate or drop, got \"", options.overflow, "\""));
  }
  if (options.seq_len < 1) {
    return absl::InvalidArgumentError(absl::StrCat("seq_len must be >= 1, got ", options.seq_len));
  }
  return absl::OkStatus();
}

}  // namespace

double PackingStats::efficiency() const {
  return total_slots == 0 ? 0.0
                          : static_cast<double>(real_slots) / static_cast<double>(total_slots);
}

std::string PackingStats::Summary() const {
  std::string dropped_why;
  if (dropped_overflow > 0 && dropped_no_response > 0) {
    dropped_why = absl::StrCat(" (", dropped_overflow, " over ", seq_len + 1, " tokens, ",
                               dropped_no_response, " with no response tokens left)");
  } else if (dropped_overflow > 0) {
    dropped_why = absl::StrCat(" (over ", seq_len + 1, " tokens)");
  } else if (dropped_no_response > 0) {
    dropped_why = " (no response tokens left)";
  }
  return absl::StrFormat(
      "%d examples, %d truncated, %d dropped%s, %s %d rows of %d (efficiency %.1f%%)", examples,
      truncated, dropped(), dropped_why, packed ? "packed into" : "one per row in", rows, seq_len,
      100.0 * efficiency());
}

absl::StatusOr<std::unique_ptr<PackedExamples>> PackedExamples::Open(
    const std::vector<std::string>& paths, const InstructionOptions& options) {
  RETURN_IF_ERROR(CheckOptions(options));
  if (paths.empty()) return absl::InvalidArgumentError("no instruction data files");
  ASSIGN_OR_RETURN(ExampleTokenizer tokenizer, ExampleTokenizer::Resolve(options.tokenizer));
  std::unique_ptr<PackedExamples> data(new PackedExamples());
  for (const std::string& path : paths) {
    bool from_cache = false;
    ASSIGN_OR_RETURN(TokenizedExamples examples,
                     LoadExamples(path, options.format, tokenizer, options.threads, &from_cache));
    data->files_.push_back(path);
    data->file_begins_.push_back(data->examples_.size());
    data->examples_.Append(examples);
    data->stats_.files_from_cache += from_cache ? 1 : 0;
  }
  data->file_begins_.push_back(data->examples_.size());
  data->Fit(options);
  if (data->rows() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("no example left to train on: ", data->stats_.Summary()));
  }
  return data;
}

void PackedExamples::Fit(const InstructionOptions& options) {
  seq_len_ = options.seq_len;
  count_all_ = options.loss_on == "all";
  stats_.examples = examples_.size();
  stats_.seq_len = seq_len_;
  stats_.packed = options.pack;
  std::vector<Placed> kept;
  for (int64_t i = 0; i < examples_.size(); ++i) {
    int64_t length = examples_.length(i);
    if (length > seq_len_ + 1 && options.overflow == "drop") {
      ++stats_.dropped_overflow;
      continue;
    }
    const bool truncated = length > seq_len_ + 1;
    length = std::min(length, seq_len_ + 1);
    // Targets are tokens 1..length-1; the response decides, whatever loss_on
    // says, so that both settings train on the same examples.
    const uint64_t begin = examples_.begins[i];
    const auto response = examples_.response.begin();
    if (std::find(response + begin + 1, response + begin + length, 1) ==
        response + begin + length) {
      ++stats_.dropped_no_response;
      continue;
    }
    stats_.truncated += truncated ? 1 : 0;
    kept.push_back({i, length});
    stats_.real_slots += length - 1;
    for (int64_t k = 1; k < length; ++k) counted_targets_ += Counted(begin + k) ? 1 : 0;
  }
  std::vector<int64_t> sizes;
  for (const Placed& p : kept) sizes.push_back(p.length - 1);
  const PackedRows rows = options.pack ? PackBestFitDecreasing(sizes, seq_len_)
                                       : OnePerRow(static_cast<int64_t>(kept.size()));
  for (const std::vector<int64_t>& row : rows) {
    for (int64_t item : row) placed_.push_back(kept[item]);
    row_begins_.push_back(static_cast<int64_t>(placed_.size()));
  }
  stats_.rows = static_cast<int64_t>(rows.size());
  stats_.total_slots = stats_.rows * seq_len_;
}

// Note [Packed rows] (sequence_data.h): each example's slots in turn, then
// the padding as a segment of its own.
void PackedExamples::Read(int64_t row, int64_t* inputs, int64_t* targets,
                          int64_t* positions) const {
  int64_t slot = 0;
  for (int64_t p = row_begins_[row]; p < row_begins_[row + 1]; ++p) {
    const uint64_t begin = examples_.begins[placed_[p].example];
    for (int64_t k = 0; k + 1 < placed_[p].length; ++k, ++slot) {
      inputs[slot] = examples_.ids[begin + k];
      targets[slot] = Counted(begin + k + 1) ? examples_.ids[begin + k + 1] : kIgnoreTarget;
      positions[slot] = k;
    }
  }
  for (int64_t pad = 0; slot < seq_len_; ++slot, ++pad) {
    inputs[slot] = 0;
    targets[slot] = kIgnoreTarget;
    positions[slot] = pad;
  }
}

absl::Status PackedExamples::CheckVocab(int64_t vocab_size) const {
  for (int64_t i = 0; i < examples_.size(); ++i) {
    for (uint64_t t = examples_.begins[i]; t < examples_.begins[i + 1]; ++t) {
      if (examples_.ids[t] < vocab_size) continue;
      const size_t file = static_cast<size_t>(
          std::upper_bound(file_begins_.begin(), file_begins_.end(), i) - file_begins_.begin() - 1);
      return absl::InvalidArgumentError(
          absl::StrCat(files_[file], ":", examples_.lines[i], ": token id ", examples_.ids[t],
                       " (token ", t - examples_.begins[i],
                       " of the example) is outside the model's vocabulary of ", vocab_size));
    }
  }
  return absl::OkStatus();
}

}  // namespace distill::worker
