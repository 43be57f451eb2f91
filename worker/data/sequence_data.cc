#include "worker/data/sequence_data.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace distill::worker {

absl::StatusOr<std::unique_ptr<TextWindows>> TextWindows::Create(TokenDataset data, int64_t seq_len) {
  if (seq_len < 1) return absl::InvalidArgumentError(absl::StrCat("seq_len must be >= 1, got ", seq_len));
  const int64_t rows = (data.size() - 1) / seq_len;
  if (rows < 1) {
    return absl::InvalidArgumentError(absl::StrCat("the token stream has ", data.size(),
                                                   " tokens, fewer than seq_len + 1 = ", seq_len + 1));
  }
  return std::unique_ptr<TextWindows>(new TextWindows(std::move(data), seq_len, rows));
}

std::string TextWindows::Describe() const {
  return absl::StrCat(data_.size(), " tokens in ", rows_, " windows of ", seq_len_);
}

void TextWindows::Read(int64_t row, int64_t* inputs, int64_t* targets, int64_t* positions) const {
  data_.Read(row * seq_len_, seq_len_, inputs);
  data_.Read(row * seq_len_ + 1, seq_len_, targets);
  for (int64_t j = 0; j < seq_len_; ++j) positions[j] = j;
}

}  // namespace distill::worker
