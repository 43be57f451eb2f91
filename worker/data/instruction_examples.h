// Instruction-data files (JSONL, one example per non-blank line) tokenized
// into ids and a response mask, and cached beside the file as
// PATH.<tag>.<format>.examples (instruction_cache.h) so that each is tokenized
// once. Formats:
//   prompt_completion  {"prompt": P, "completion": C} (TRL's): ids =
//       encode(P) ++ encode(C) ++ [EOS], each encoded alone without special
//       tokens, EOS only when the tokenizer has one; the response is C's ids
//       and the EOS.
//   chat  {"messages": [{"role": "system|user|assistant", "content": ...}]}
//       rendered with the tokenizer's chat template and encoded without
//       special tokens (the template writes BOS itself); a token is in the
//       response when its bytes lie inside an assistant span of the render.
//
// Errors are InvalidArgument naming FILE:LINE (invalid UTF-8 or JSON, a
// missing or non-string field, an unknown role, a conversation without an
// assistant message, a tokenizer without a chat template); a file that fails
// leaves no cache. Thread-compatible: one caller per ExampleTokenizer.
#ifndef DISTILL_WORKER_DATA_INSTRUCTION_EXAMPLES_H_
#define DISTILL_WORKER_DATA_INSTRUCTION_EXAMPLES_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/data/instruction_cache.h"

namespace distill::worker {

class ChatTemplate;
class HfTokenizer;

// The data formats of instruction data (data.format).
inline constexpr char kFormatChat[] = "chat";
inline constexpr char kFormatPromptCompletion[] = "prompt_completion";

// What examples are encoded with: "bytes" (ByteTokenizer; prompt_completion
// only) or a Hugging Face tokenizer given as its tokenizer.json or the
// directory holding it (tokenizer_config.json beside it gives EOS and the
// chat template). The Hugging Face files (and the template) are loaded on
// first use.
class ExampleTokenizer {
 public:
  // NotFound when the tokenizer.json (or a file beside it) cannot be read.
  static absl::StatusOr<ExampleTokenizer> Resolve(const std::string& tokenizer);
  ExampleTokenizer(ExampleTokenizer&&) noexcept;
  ExampleTokenizer& operator=(ExampleTokenizer&&) noexcept;
  ~ExampleTokenizer();

  // Names caches by content: "bytes", or "tok-" + a hash of tokenizer.json,
  // tokenizer_config.json and chat_template.jinja (those present).
  const std::string& tag() const { return tag_; }
  // The files a cache must not be older than (empty for "bytes").
  const std::vector<std::string>& files() const { return files_; }

  // Every example of `path` in `format` (kFormatChat, kFormatPromptCompletion),
  // encoding on `threads` threads. Errors: see the file comment; NotFound if
  // `path` cannot be read.
  absl::StatusOr<TokenizedExamples> Tokenize(const std::string& path, const std::string& format,
                                             int threads);

 private:
  ExampleTokenizer() = default;
  absl::Status LoadHf();
  // `where` ("FILE:LINE: ") starts the error when there is no template.
  absl::Status LoadChatTemplate(const std::string& where);
  std::string name_;  // "bytes" or the tokenizer.json path
  std::string tag_;
  std::vector<std::string> files_;
  std::unique_ptr<HfTokenizer> hf_;
  std::unique_ptr<ChatTemplate> chat_template_;
};

// PATH.<tag>.<format>.examples
std::string ExampleCachePath(const std::string& path, const std::string& format,
                             const std::string& tag);

// The examples of `path`: from its cache when that is fresh (not older than
// `path` and tokenizer.files()) and valid, else tokenized and cached.
// `from_cache`, when given, says which.
absl::StatusOr<TokenizedExamples> LoadExamples(const std::string& path, const std::string& format,
                                               ExampleTokenizer& tokenizer, int threads,
                                               bool* from_cache = nullptr);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DATA_INSTRUCTION_EXAMPLES_H_
