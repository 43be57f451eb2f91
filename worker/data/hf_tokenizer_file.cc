// TokenizeFile: a .txt or .jsonl file through an HfTokenizer into a .bin shard.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "worker/data/hf_tokenizer.h"
#include "worker/data/token_shard.h"

namespace distill::worker {
namespace {

// The whole file, read straight into one string (no stream buffer copy).
absl::StatusOr<std::string> ReadFile(const std::string& path) {
  RETURN_IF_ERROR(common::CheckInputFile(path));
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  const std::streamoff size = in.tellg();
  if (size < 0) return absl::DataLossError(absl::StrCat(path, ": cannot tell its size"));
  std::string contents(static_cast<size_t>(size), '\0');
  in.seekg(0);
  if (!in.read(contents.data(), size)) {
    return absl::DataLossError(absl::StrCat(path, ": read failed"));
  }
  return contents;
}

// One non-blank JSONL line: [begin, end) of the file and its 1-based number.
struct Line {
  size_t begin = 0, end = 0;
  int64_t number = 0;
};

std::vector<Line> NonBlankLines(std::string_view contents) {
  std::vector<Line> lines;
  size_t start = 0;
  for (int64_t number = 1; start < contents.size(); ++number) {
    size_t end = contents.find('\n', start);
    if (end == std::string_view::npos) end = contents.size();
    const std::string_view line = contents.substr(start, end - start);
    if (line.find_first_not_of(" \t\r") != std::string_view::npos) {
      lines.push_back({start, end, number});
    }
    start = end + 1;
  }
  return lines;
}

// The text of one JSONL record, or an error naming what is wrong (the caller
// adds the file and line).
absl::StatusOr<std::string> DocumentText(std::string_view line, const std::string& text_field) {
  nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (record.is_discarded()) return absl::InvalidArgumentError("invalid JSON");
  if (!record.is_object()) return absl::InvalidArgumentError("expected a JSON object");
  auto field = record.find(text_field);
  if (field == record.end() || !field->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("missing string field \"", text_field, "\""));
  }
  return std::move(field->get_ref<std::string&>());
}

void PrintProgress(uint64_t done, uint64_t total, double seconds) {
  done = std::min(done, total);  // normalization may change a text's length
  const int width = 40;
  const int filled = total == 0 ? width : static_cast<int>(width * done / total);
  std::fprintf(stderr, "\r[%s%s] %5.1f%% %7.1f MB/s", std::string(filled, '#').c_str(),
               std::string(width - filled, ' ').c_str(), total == 0 ? 100.0 : 100.0 * done / total,
               seconds > 0 ? done / 1e6 / seconds : 0.0);
  std::fflush(stderr);
}

// Runs `work` on a thread while this one draws the progress bar (when `show`)
// from `done` out of `total`, until the work is over.
template <typename Fn>
void RunWithProgress(bool show, const std::atomic<uint64_t>& done, uint64_t total,
                     const std::function<double()>& elapsed, Fn work) {
  if (!show) {
    work();
    return;
  }
  std::atomic<bool> over{false};
  std::thread worker([&] {
    work();
    over = true;
  });
  while (!over.load()) {
    PrintProgress(done.load(), total, elapsed());
    for (int i = 0; i < 20 && !over.load(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  worker.join();
  PrintProgress(total, total, elapsed());
  std::fprintf(stderr, "\n");
}

// The id that ends each document: --separator's, or the EOS token's.
absl::StatusOr<uint32_t> SeparatorId(const HfTokenizer& tokenizer, const std::string& separator) {
  if (separator.empty()) {
    if (!tokenizer.eos_id().has_value()) {
      return absl::FailedPreconditionError(
          "the tokenizer has no EOS token to separate documents; pass --separator TOKEN");
    }
    return *tokenizer.eos_id();
  }
  std::optional<uint32_t> id = tokenizer.TokenToId(separator);
  if (!id.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--separator ", separator, ": not a token of the tokenizer"));
  }
  return *id;
}

// What one file is encoded with, and how its progress is shown.
struct EncodeJob {
  const HfTokenizer& tokenizer;
  const std::string& input;     // the file's path, for errors
  const std::string& contents;  // the file
  const TokenizeFileOptions& options;
  uint32_t separator = 0;
  int threads = 1;
  bool show = false;                          // draw the progress bar
  std::atomic<uint64_t>* done = nullptr;      // bytes of the file (of the text for .txt) done
  std::function<double()> elapsed = nullptr;  // seconds since the work began
};

// The ids of the documents, each followed by the separator.
struct EncodedDocs {
  std::vector<uint32_t> ids;
  size_t n_docs = 0;
  uint64_t text_bytes = 0;
};

// A .txt file: one document, its chunks spread over the threads (Note
// [Chunked encoding] in hf_tokenizer_chunked.cc).
absl::StatusOr<EncodedDocs> EncodeText(const EncodeJob& job) {
  EncodeOptions encode;
  encode.threads = job.threads;
  encode.chunk_bytes = job.options.chunk_bytes;
  encode.progress = job.done;
  absl::StatusOr<std::vector<uint32_t>> encoded;
  RunWithProgress(job.show, *job.done, job.contents.size(), job.elapsed,
                  [&] { encoded = job.tokenizer.Encode(job.contents, encode); });
  if (!encoded.ok()) {
    return absl::Status(encoded.status().code(),
                        absl::StrCat(job.input, ": ", encoded.status().message()));
  }
  EncodedDocs docs;
  docs.ids = *std::move(encoded);
  docs.ids.push_back(job.separator);
  docs.n_docs = 1;
  docs.text_bytes = job.contents.size();
  return docs;
}

// A .jsonl file: one document per line, lines parsed and encoded on the threads.
absl::StatusOr<EncodedDocs> EncodeJsonl(const EncodeJob& job) {
  const std::vector<Line> lines = NonBlankLines(job.contents);
  std::vector<std::vector<uint32_t>> encoded(lines.size());
  std::vector<absl::Status> errors(lines.size());
  std::atomic<uint64_t> text_done{0};
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < lines.size();) {
      const std::string_view line =
          std::string_view(job.contents).substr(lines[i].begin, lines[i].end - lines[i].begin);
      absl::StatusOr<std::string> text = DocumentText(line, job.options.text_field);
      absl::StatusOr<std::vector<uint32_t>> doc_ids =
          text.ok() ? job.tokenizer.Encode(*text, /*add_special_tokens=*/false)
                    : absl::StatusOr<std::vector<uint32_t>>(text.status());
      if (doc_ids.ok()) {
        encoded[i] = *std::move(doc_ids);
        encoded[i].push_back(job.separator);
        text_done += text->size();
      } else {
        errors[i] = doc_ids.status();
      }
      *job.done += line.size() + 1;
    }
  };
  RunWithProgress(job.show, *job.done, job.contents.size(), job.elapsed, [&] {
    std::vector<std::thread> pool;
    for (int t = 1; t < job.threads; ++t) pool.emplace_back(work);
    work();
    for (std::thread& t : pool) t.join();
  });
  for (size_t i = 0; i < lines.size(); ++i) {  // the first error in file order
    if (!errors[i].ok()) {
      return absl::Status(errors[i].code(),
                          absl::StrCat(job.input, ":", lines[i].number, ": ", errors[i].message()));
    }
  }
  EncodedDocs docs;
  size_t total_ids = 0;
  for (const auto& e : encoded) total_ids += e.size();
  docs.ids.reserve(total_ids);
  for (auto& e : encoded) {
    docs.ids.insert(docs.ids.end(), e.begin(), e.end());
    std::vector<uint32_t>().swap(e);
  }
  docs.n_docs = lines.size();
  docs.text_bytes = text_done.load();
  return docs;
}

}  // namespace

absl::Status TokenizeFile(const HfTokenizer& tokenizer, const std::string& input,
                          const std::string& output, const TokenizeFileOptions& options) {
  ASSIGN_OR_RETURN(const uint32_t separator, SeparatorId(tokenizer, options.separator));
  ASSIGN_OR_RETURN(const std::string contents, ReadFile(input));
  const bool jsonl = absl::EndsWith(input, ".jsonl");

  // Timed from here: JSONL parsing counts as part of the work.
  const auto start = std::chrono::steady_clock::now();
  std::atomic<uint64_t> done{0};
  EncodeJob job{tokenizer, input, contents, options};
  job.separator = separator;
  job.threads = std::max(1, options.threads);
  job.show = options.progress && contents.size() >= options.progress_min_bytes;
  job.done = &done;
  job.elapsed = [&start] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  ASSIGN_OR_RETURN(const EncodedDocs docs, jsonl ? EncodeJsonl(job) : EncodeText(job));
  const double seconds = job.elapsed();
  if (docs.ids.empty()) return absl::InvalidArgumentError(absl::StrCat(input, ": no documents"));
  RETURN_IF_ERROR(WriteTokenShard(output, docs.ids));
  std::fprintf(stderr, "%s",
               absl::StrFormat("tokenized %s: %d docs, %.2f MB -> %d tokens in %.2f s "
                               "(%.2f MB/s, %d threads)\n",
                               input, docs.n_docs, docs.text_bytes / 1e6, docs.ids.size(), seconds,
                               docs.text_bytes / 1e6 / std::max(seconds, 1e-9), job.threads)
                   .c_str());
  return absl::OkStatus();
}

}  // namespace distill::worker
