#include "worker/data/instruction_examples.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string_view>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "worker/data/byte_tokenizer.h"
#include "worker/data/chat_template.h"
#include "worker/data/hf_tokenizer.h"
#include "worker/data/hf_tokenizer_internal.h"
#include "worker/data/text_source.h"

namespace distill::worker {
namespace fs = std::filesystem;

namespace {

// One example before it joins the others.
struct Example {
  std::vector<uint32_t> ids;
  std::vector<uint8_t> response;
};

// One non-blank line of a JSONL file and its 1-based number.
struct Line {
  std::string_view text;
  uint32_t number = 0;
};

std::vector<Line> NonBlankLines(std::string_view contents) {
  std::vector<Line> lines;
  size_t start = 0;
  for (uint32_t number = 1; start < contents.size(); ++number) {
    size_t end = contents.find('\n', start);
    if (end == std::string_view::npos) end = contents.size();
    const std::string_view line = contents.substr(start, end - start);
    if (line.find_first_not_of(" \t\r") != std::string_view::npos) lines.push_back({line, number});
    start = end + 1;
  }
  return lines;
}

// The JSON object on a line; the error says what is wrong (the caller names
// the file and line). UTF-8 is checked first, so that a message never quotes
// invalid bytes.
absl::StatusOr<nlohmann::json> ParseRecord(std::string_view line) {
  const size_t bad = hf::FindInvalidUtf8(line);
  if (bad != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid UTF-8 at byte ", bad + 1, " of the line"));
  }
  nlohmann::json record;
  try {
    record = nlohmann::json::parse(line);
  } catch (const nlohmann::json::parse_error& e) {
    // e.what() is "[json.exception...] parse error at line 1, column C: WHAT".
    std::string_view what = e.what();
    const size_t colon = what.find(": ", what.find("column"));
    if (colon != std::string_view::npos) what.remove_prefix(colon + 2);
    return absl::InvalidArgumentError(
        absl::StrCat("invalid JSON at byte ", e.byte, " of the line: ", std::string(what)));
  } catch (const nlohmann::json::exception& e) {  // out_of_range: a number overflowing a double
    return absl::InvalidArgumentError(absl::StrCat("invalid JSON: ", e.what()));
  }
  if (!record.is_object()) return absl::InvalidArgumentError("expected a JSON object");
  return record;
}

absl::StatusOr<std::string_view> StringField(const nlohmann::json& object, const std::string& name,
                                             const std::string& where = "") {
  auto field = object.find(name);
  if (field == object.end()) {
    return absl::InvalidArgumentError(absl::StrCat(where, "missing field \"", name, "\""));
  }
  if (!field->is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "field \"", name, "\" is not a string (", field->type_name(), ")"));
  }
  return std::string_view(field->get_ref<const std::string&>());
}

// The tokenizer calls one example needs. One per thread: a ChatTemplate
// must not render on two threads at once.
class Encoder {
 public:
  Encoder(const HfTokenizer* hf, const ChatTemplate* chat_template)
      : hf_(hf), chat_template_(chat_template) {}
  absl::StatusOr<std::vector<uint32_t>> Encode(std::string_view text) const {
    if (hf_ == nullptr) return ByteTokenizer().Encode(text);
    return hf_->Encode(text, /*add_special_tokens=*/false);
  }
  std::optional<uint32_t> eos_id() const { return hf_ == nullptr ? std::nullopt : hf_->eos_id(); }
  const HfTokenizer* hf() const { return hf_; }
  const ChatTemplate* chat_template() const { return chat_template_; }

 private:
  const HfTokenizer* hf_;              // null: bytes
  const ChatTemplate* chat_template_;  // null unless the format is chat
};

absl::StatusOr<Example> PromptCompletion(const Encoder& encoder, const nlohmann::json& record) {
  ASSIGN_OR_RETURN(std::string_view prompt, StringField(record, "prompt"));
  ASSIGN_OR_RETURN(std::string_view completion, StringField(record, "completion"));
  ASSIGN_OR_RETURN(std::vector<uint32_t> prompt_ids, encoder.Encode(prompt));
  ASSIGN_OR_RETURN(std::vector<uint32_t> completion_ids, encoder.Encode(completion));
  Example example;
  example.ids = std::move(prompt_ids);
  example.response.assign(example.ids.size(), 0);
  example.ids.insert(example.ids.end(), completion_ids.begin(), completion_ids.end());
  if (encoder.eos_id().has_value()) example.ids.push_back(*encoder.eos_id());
  example.response.resize(example.ids.size(), 1);
  return example;
}

// 1 for each token whose bytes [begin, end) lie inside one of `spans`; both
// lists run forward through the text (spans disjoint, token ends ascending).
std::vector<uint8_t> InSpans(const std::vector<std::pair<size_t, size_t>>& offsets,
                             const std::vector<std::pair<size_t, size_t>>& spans) {
  std::vector<uint8_t> mask(offsets.size(), 0);
  size_t s = 0;
  for (size_t k = 0; k < offsets.size(); ++k) {
    while (s < spans.size() && spans[s].second < offsets[k].second) ++s;
    if (s == spans.size()) break;
    mask[k] = spans[s].first <= offsets[k].first ? 1 : 0;
  }
  return mask;
}

// The conversation rendered once and encoded without special tokens (the
// template writes BOS itself, as apply_chat_template(tokenize=True) does).
absl::StatusOr<Example> Chat(const Encoder& encoder, const nlohmann::json& record) {
  auto messages = record.find("messages");
  if (messages == record.end()) return absl::InvalidArgumentError("missing field \"messages\"");
  ASSIGN_OR_RETURN(ChatRendering rendering, RenderWithSpans(*encoder.chat_template(), *messages));
  ASSIGN_OR_RETURN(Encoding encoding,
                   encoder.hf()->EncodeWithOffsets(rendering.text, /*add_special_tokens=*/false));
  Example example;
  example.ids = std::move(encoding.ids);
  example.response = InSpans(encoding.offsets, rendering.spans);
  return example;
}

// What Tokenize() encodes every line with.
struct FileJob {
  const std::string& path;
  const std::string& format;
  const HfTokenizer* hf;              // null: bytes
  const ChatTemplate* chat_template;  // chat only
};

absl::StatusOr<Example> EncodeLine(const FileJob& job, const Encoder& encoder, const Line& line) {
  absl::StatusOr<Example> example = [&]() -> absl::StatusOr<Example> {
    ASSIGN_OR_RETURN(nlohmann::json record, ParseRecord(line.text));
    if (job.format == kFormatChat) return Chat(encoder, record);
    return PromptCompletion(encoder, record);
  }();
  if (!example.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(job.path, ":", line.number, ": ", example.status().message()));
  }
  return example;
}

// Encodes lines[begin, end) into encoded[begin, end), stopping at the first
// error. Threads other than the first render with their own template copy.
void EncodeBlock(const FileJob& job, const std::vector<Line>& lines, size_t begin, size_t end,
                 bool first_thread, std::vector<absl::StatusOr<Example>>& encoded) {
  if (begin == end) return;
  const ChatTemplate* chat_template = job.chat_template;
  absl::StatusOr<std::unique_ptr<ChatTemplate>> own = std::unique_ptr<ChatTemplate>();
  if (chat_template != nullptr && !first_thread) {
    own = ChatTemplate::FromSource(chat_template->source(), chat_template->special_tokens(),
                                   chat_template->name());
    if (!own.ok()) {
      encoded[begin] = own.status();
      return;
    }
    chat_template = own->get();
  }
  const Encoder encoder(job.hf, chat_template);
  for (size_t i = begin; i < end; ++i) {
    encoded[i] = EncodeLine(job, encoder, lines[i]);
    if (!encoded[i].ok()) return;  // later lines of this block are not needed
  }
}

// Encodes `lines` on `threads` threads (contiguous blocks) into examples in
// line order, or the error of the first line that fails.
absl::StatusOr<TokenizedExamples> EncodeLines(const FileJob& job, const std::vector<Line>& lines,
                                              int threads) {
  std::vector<absl::StatusOr<Example>> encoded(lines.size());
  const size_t n = lines.size();
  const size_t n_threads = std::clamp<size_t>(threads, 1, std::max<size_t>(1, n));
  std::vector<std::thread> pool;
  for (size_t t = 1; t < n_threads; ++t) {
    pool.emplace_back([&, t] {
      EncodeBlock(job, lines, n * t / n_threads, n * (t + 1) / n_threads, false, encoded);
    });
  }
  EncodeBlock(job, lines, 0, n / n_threads, true, encoded);
  for (std::thread& thread : pool) thread.join();

  TokenizedExamples examples;
  for (size_t i = 0; i < n; ++i) {
    if (!encoded[i].ok()) return encoded[i].status();
    examples.Add(encoded[i]->ids, encoded[i]->response, lines[i].number);
  }
  return examples;
}

}  // namespace

absl::StatusOr<ExampleTokenizer> ExampleTokenizer::Resolve(const std::string& tokenizer) {
  ExampleTokenizer result;
  result.name_ = tokenizer;
  if (tokenizer == "bytes") {
    result.tag_ = "bytes";
    return result;
  }
  const fs::path json =
      fs::is_directory(tokenizer) ? fs::path(tokenizer) / "tokenizer.json" : fs::path(tokenizer);
  result.name_ = json.string();
  result.files_.push_back(json.string());
  std::vector<std::string> beside;
  for (const char* name : {"tokenizer_config.json", "chat_template.jinja"}) {
    const fs::path file = json.parent_path() / name;
    if (fs::exists(file)) beside.push_back(file.string());
  }
  result.files_.insert(result.files_.end(), beside.begin(), beside.end());
  ASSIGN_OR_RETURN(result.tag_, TokenizerTag(json.string(), beside));
  return result;
}

ExampleTokenizer::ExampleTokenizer(ExampleTokenizer&&) noexcept = default;
ExampleTokenizer& ExampleTokenizer::operator=(ExampleTokenizer&&) noexcept = default;
ExampleTokenizer::~ExampleTokenizer() = default;

absl::Status ExampleTokenizer::LoadHf() {
  if (hf_ != nullptr || name_ == "bytes") return absl::OkStatus();
  ASSIGN_OR_RETURN(hf_, HfTokenizer::Load(name_));
  return absl::OkStatus();
}

absl::Status ExampleTokenizer::LoadChatTemplate(const std::string& where) {
  if (chat_template_ != nullptr) return absl::OkStatus();
  if (name_ == "bytes") {
    return absl::InvalidArgumentError(absl::StrCat(
        where,
        "chat data needs a Hugging Face tokenizer with a chat template; \"bytes\" has none"));
  }
  absl::StatusOr<std::unique_ptr<ChatTemplate>> loaded = ChatTemplate::Load(name_);
  if (!loaded.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "chat data needs a chat template: ", loaded.status().message()));
  }
  chat_template_ = *std::move(loaded);
  return absl::OkStatus();
}

absl::StatusOr<TokenizedExamples> ExampleTokenizer::Tokenize(const std::string& path,
                                                             const std::string& format,
                                                             int threads) {
  if (format != kFormatPromptCompletion && format != kFormatChat) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data format \"", format, "\" is not instruction data (chat or prompt_completion)"));
  }
  ASSIGN_OR_RETURN(const std::string contents, common::ReadFileToString(path));
  const std::vector<Line> lines = NonBlankLines(contents);
  if (lines.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no examples"));
  if (format == kFormatChat) {
    RETURN_IF_ERROR(LoadChatTemplate(absl::StrCat(path, ":", lines[0].number, ": ")));
  }
  RETURN_IF_ERROR(LoadHf());
  const FileJob job{path, format, hf_.get(),
                    format == kFormatChat ? chat_template_.get() : nullptr};
  return EncodeLines(job, lines, threads);
}

std::string ExampleCachePath(const std::string& path, const std::string& format,
                             const std::string& tag) {
  return CachePathFor(path, absl::StrCat(tag, ".", format, ".examples"));
}

absl::StatusOr<TokenizedExamples> LoadExamples(const std::string& path, const std::string& format,
                                               ExampleTokenizer& tokenizer, int threads,
                                               bool* from_cache) {
  if (!fs::exists(path)) return absl::NotFoundError(absl::StrCat(path, ": no such data file"));
  const std::string cache = ExampleCachePath(path, format, tokenizer.tag());
  std::vector<std::string> sources = tokenizer.files();
  sources.push_back(path);
  if (CacheIsFresh(cache, sources)) {
    absl::StatusOr<TokenizedExamples> cached = ReadExampleCache(cache);
    if (cached.ok()) {
      if (from_cache != nullptr) *from_cache = true;
      return cached;
    }
    // A cache of another version or a damaged one: built again below.
  }
  if (from_cache != nullptr) *from_cache = false;
  ASSIGN_OR_RETURN(TokenizedExamples examples, tokenizer.Tokenize(path, format, threads));
  RETURN_IF_ERROR(WriteExampleCache(cache, examples));
  return examples;
}

}  // namespace distill::worker
