// The byte-level tokenizer: token ids are the UTF-8 bytes of the text (0-255),
// with no special tokens. Used before a Hugging Face tokenizer.json is given.
// Stateless; thread-safe.
#ifndef DISTILL_WORKER_DATA_BYTE_TOKENIZER_H_
#define DISTILL_WORKER_DATA_BYTE_TOKENIZER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace distill::worker {

class ByteTokenizer {
 public:
  static constexpr int64_t kVocabSize = 256;
  std::vector<uint32_t> Encode(std::string_view text) const;
  // InvalidArgument naming the position of the first id > 255.
  absl::StatusOr<std::string> Decode(const std::vector<uint32_t>& ids) const;
};

// Tokenizes a text file with the byte tokenizer into a .bin shard. A `.txt`
// input is one document; a `.jsonl` input holds one document per line in
// `text_field`. Documents are separated by `separator` bytes (default "\n\n")
// in the output. Errors name the file (and line for JSONL).
absl::Status TokenizeFileBytes(const std::string& input, const std::string& output,
                               const std::string& text_field = "text",
                               const std::string& separator = "\n\n");

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DATA_BYTE_TOKENIZER_H_
