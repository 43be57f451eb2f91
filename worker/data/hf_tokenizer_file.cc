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
#include "common/status_macros.h"
#include "worker/data/hf_tokenizer.h"
#include "worker/data/token_shard.h"

namespace distill::worker {
namespace {

// The whole file, read straight into one string (no stream buffer copy).
absl::StatusOr<std::string> ReadFile(const std::string& path) {
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

}  // namespace

absl::Status TokenizeFile(const HfTokenizer& tokenizer, const std::string& input,
                          const std::string& output, const TokenizeFileOptions& options) {
  uint32_t separator = 0;
  if (options.separator.empty()) {
    if (!tokenizer.eos_id().has_value()) {
      return absl::FailedPreconditionError(
          "the tokenizer has no EOS token to separate documents; pass --separator TOKEN");
    }
    separator = *tokenizer.eos_id();
  } else {
    std::optional<uint32_t> id = tokenizer.TokenToId(options.separator);
    if (!id.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--separator ", options.separator, ": not a token of the tokenizer"));
    }
    separator = *id;
  }
  ASSIGN_OR_RETURN(const std::string contents, ReadFile(input));
  const bool jsonl = absl::EndsWith(input, ".jsonl");

  // Timed from here: JSONL parsing counts as part of the work.
  const auto start = std::chrono::steady_clock::now();
  const std::function<double()> elapsed = [&start] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  const int threads = std::max(1, options.threads);
  const bool show = options.progress && contents.size() >= options.progress_min_bytes;
  std::atomic<uint64_t> done{0};  // bytes of the file (of the text for .txt) done
  std::vector<uint32_t> ids;
  size_t n_docs = 0;
  uint64_t text_bytes = 0;
  if (!jsonl) {
    // One document: its chunks are spread over the threads (Note [Chunked
    // encoding] in hf_tokenizer_chunked.cc).
    EncodeOptions encode;
    encode.threads = threads;
    encode.chunk_bytes = options.chunk_bytes;
    encode.progress = &done;
    absl::StatusOr<std::vector<uint32_t>> encoded;
    RunWithProgress(show, done, contents.size(), elapsed,
                    [&] { encoded = tokenizer.Encode(contents, encode); });
    if (!encoded.ok()) {
      return absl::Status(encoded.status().code(),
                          absl::StrCat(input, ": ", encoded.status().message()));
    }
    ids = *std::move(encoded);
    ids.push_back(separator);
    n_docs = 1;
    text_bytes = contents.size();
  } else {
    // One document per line: lines are parsed and encoded on the threads.
    const std::vector<Line> lines = NonBlankLines(contents);
    std::vector<std::vector<uint32_t>> encoded(lines.size());
    std::vector<absl::Status> errors(lines.size());
    std::atomic<uint64_t> text_done{0};
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t i; (i = next.fetch_add(1)) < lines.size();) {
        const std::string_view line =
            std::string_view(contents).substr(lines[i].begin, lines[i].end - lines[i].begin);
        absl::StatusOr<std::string> text = DocumentText(line, options.text_field);
        absl::StatusOr<std::vector<uint32_t>> doc_ids =
            text.ok() ? tokenizer.Encode(*text, /*add_special_tokens=*/false)
                      : absl::StatusOr<std::vector<uint32_t>>(text.status());
        if (doc_ids.ok()) {
          encoded[i] = *std::move(doc_ids);
          encoded[i].push_back(separator);
          text_done += text->size();
        } else {
          errors[i] = doc_ids.status();
        }
        done += line.size() + 1;
      }
    };
    RunWithProgress(show, done, contents.size(), elapsed, [&] {
      std::vector<std::thread> pool;
      for (int t = 1; t < threads; ++t) pool.emplace_back(work);
      work();
      for (std::thread& t : pool) t.join();
    });
    for (size_t i = 0; i < lines.size(); ++i) {  // the first error in file order
      if (!errors[i].ok()) {
        return absl::Status(errors[i].code(),
                            absl::StrCat(input, ":", lines[i].number, ": ", errors[i].message()));
      }
    }
    size_t total_ids = 0;
    for (const auto& e : encoded) total_ids += e.size();
    ids.reserve(total_ids);
    for (auto& e : encoded) {
      ids.insert(ids.end(), e.begin(), e.end());
      std::vector<uint32_t>().swap(e);
    }
    n_docs = lines.size();
    text_bytes = text_done.load();
  }
  const double seconds = elapsed();
  if (ids.empty()) return absl::InvalidArgumentError(absl::StrCat(input, ": no documents"));
  RETURN_IF_ERROR(WriteTokenShard(output, ids));
  std::fprintf(stderr, "%s",
               absl::StrFormat("tokenized %s: %d docs, %.2f MB -> %d tokens in %.2f s "
                               "(%.2f MB/s, %d threads)\n",
                               input, n_docs, text_bytes / 1e6, ids.size(), seconds,
                               text_bytes / 1e6 / std::max(seconds, 1e-9), threads)
                   .c_str());
  return absl::OkStatus();
}

}  // namespace distill::worker
