// A Hugging Face `tokenizer.json` loaded for encoding and decoding: BPE models
// (byte-level as in GPT-2 / Llama-3 / Qwen2-3, and SentencePiece-style with
// `▁` and byte fallback as in Llama-2 / Mistral), normalizers, pre-tokenizers,
// added and special tokens, post-processors and decoders. Ids and decoded text
// are Hugging Face tokenizers' own (tests/reference/hf_tokenizers.py checks
// every component against the library); a component it does not implement
// (Unigram / WordPiece / WordLevel models, BPE dropout, BertNormalizer, ...)
// is InvalidArgument naming its JSON path and type.
//
// Immutable after Load(): every method is const and thread-safe (the BPE word
// caches are per thread, backed by a mutex-sharded shared cache). Errors: a
// malformed tokenizer.json
// is InvalidArgument naming the file and the JSON path of the bad entry.
//
// Note [Invalid UTF-8 policy]: Encode() rejects text that is not valid UTF-8
// with InvalidArgument naming the byte offset of the first bad byte; it never
// replaces or drops bytes. Decode() of ids whose bytes do not form valid UTF-8
// (e.g. half of a multi-byte character) replaces each bad sequence with U+FFFD,
// as Hugging Face's decode does.
#ifndef DISTILL_WORKER_DATA_HF_TOKENIZER_H_
#define DISTILL_WORKER_DATA_HF_TOKENIZER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace distill::worker {

namespace hf {
class Pipeline;  // normalizer, pre-tokenizer, model, post-processor, decoder
}  // namespace hf

// Options of HfTokenizer::Encode.
struct EncodeOptions {
  bool add_special_tokens = false;
  // Threads for one text: its chunks (or words) are encoded in parallel; the
  // ids do not depend on it (Note [Chunked encoding] in hf_tokenizer_chunked.cc).
  int threads = 1;
  size_t chunk_bytes = 64 << 10;  // chunk size of a long text (a balance of threads)
  // When set, advanced by the bytes of text encoded so far, as the work goes.
  std::atomic<uint64_t>* progress = nullptr;
};

// Ids with the bytes of the input text each covers (HfTokenizer::EncodeWithOffsets).
struct Encoding {
  std::vector<uint32_t> ids;
  // offsets[i] = [begin, end) in BYTES of the input text covered by token i
  // (Note [Offsets] in hf_tokenizer_internal.h): an added token covers its
  // match and the spaces its lstrip / rstrip took; a token made only by the
  // post-processor (BOS added by add_special_tokens) is [0, 0). Untrimmed: a
  // byte-level token " hello" covers its leading space; a token cut inside a
  // multi-byte character covers the whole character, as in Hugging Face.
  std::vector<std::pair<size_t, size_t>> offsets;
};

class HfTokenizer {
 public:
  // Reads `path` (a tokenizer.json) and, when present beside it,
  // tokenizer_config.json (for eos_token / bos_token). NotFound if `path`
  // cannot be read; InvalidArgument for malformed or unsupported content.
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> Load(const std::string& path);
  // Same, from the JSON text itself; `name` is used in error messages.
  // `config_json` is the tokenizer_config.json text, or empty.
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> FromJson(const std::string& json,
                                                               const std::string& name,
                                                               const std::string& config_json = "");
  ~HfTokenizer();
  HfTokenizer(const HfTokenizer&) = delete;
  HfTokenizer& operator=(const HfTokenizer&) = delete;

  // The ids Hugging Face's `tokenizer.encode(text, add_special_tokens=...)`
  // gives. Added tokens in `text` (e.g. "<|im_end|>") are matched as tokens.
  // InvalidArgument on invalid UTF-8 (Note [Invalid UTF-8 policy]).
  absl::StatusOr<std::vector<uint32_t>> Encode(std::string_view text,
                                               const EncodeOptions& options) const;
  absl::StatusOr<std::vector<uint32_t>> Encode(std::string_view text, bool add_special_tokens,
                                               int threads = 1) const;
  // As Encode, plus offsets: the ids equal Encode's for the same text and
  // options, the offsets are Hugging Face's `encode(text).offsets` in bytes
  // (with trim_offsets off). Runs on the calling thread whatever `threads`
  // (kept for symmetry with Encode), apart from Encode's fast paths, for
  // short texts such as one conversation. InvalidArgument on invalid UTF-8,
  // or naming a component that cannot give offsets for `text`.
  absl::StatusOr<Encoding> EncodeWithOffsets(std::string_view text, bool add_special_tokens,
                                             int threads = 1) const;
  // Ids back to text. InvalidArgument naming the position of an id that is
  // not in the vocabulary.
  absl::StatusOr<std::string> Decode(const std::vector<uint32_t>& ids,
                                     bool skip_special_tokens = false) const;

  // Max id + 1 over the model vocabulary and the added tokens.
  int64_t vocab_size() const { return vocab_size_; }
  std::optional<uint32_t> TokenToId(const std::string& token) const;
  std::optional<std::string> IdToToken(uint32_t id) const;
  // From tokenizer_config.json beside tokenizer.json when it names one; for
  // EOS otherwise the first of <|endoftext|>, </s>, <|end_of_text|> present.
  std::optional<uint32_t> eos_id() const { return eos_id_; }
  std::optional<uint32_t> bos_id() const { return bos_id_; }

 private:
  HfTokenizer();
  std::unique_ptr<hf::Pipeline> pipeline_;
  int64_t vocab_size_ = 0;
  std::optional<uint32_t> eos_id_;
  std::optional<uint32_t> bos_id_;
};

// Options of TokenizeFile.
struct TokenizeFileOptions {
  std::string text_field = "text";  // JSONL field holding each document's text
  // Token appended after every document; empty = the tokenizer's EOS
  // (eos_id()). FailedPrecondition if empty and the tokenizer has no EOS.
  std::string separator;
  int threads = 1;  // encoder threads (documents, or chunks of one .txt)
  // A .txt is encoded in chunks of about this many bytes (EncodeOptions); the
  // ids do not depend on it.
  size_t chunk_bytes = 64 << 10;
  bool progress = true;                  // progress bar on stderr for large inputs:
  size_t progress_min_bytes = 16 << 20;  // files of at least this many bytes
};

// Tokenizes `input` into the .bin shard `output` (WriteTokenShard). A `.txt`
// input is one document; a `.jsonl` input one document per non-blank line (the
// string field options.text_field). Each document is encoded as
// Encode(text, add_special_tokens=false) followed by the separator id. Prints
// tokens, MB and MB/s to stderr. Errors name the file (and line for JSONL).
absl::Status TokenizeFile(const HfTokenizer& tokenizer, const std::string& input,
                          const std::string& output, const TokenizeFileOptions& options);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DATA_HF_TOKENIZER_H_
