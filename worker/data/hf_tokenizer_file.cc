// TokenizeFile: a .txt or .jsonl file through an HfTokenizer into a .bin shard.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/data/hf_tokenizer.h"
#include "worker/data/token_shard.h"

namespace distill::worker {
namespace {

constexpr size_t kProgressMinBytes = 16 << 20;

struct Document {
  std::string text;
  int64_t line = 0;  // JSONL line number, 0 for .txt
};

absl::StatusOr<std::vector<Document>> ReadDocuments(const std::string& path,
                                                    const std::string& text_field) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read failed"));
  std::string contents = buffer.str();
  std::vector<Document> docs;
  if (!absl::EndsWith(path, ".jsonl")) {
    docs.push_back({std::move(contents), 0});
    return docs;
  }
  size_t start = 0;
  for (int64_t line_no = 1; start < contents.size(); ++line_no) {
    size_t end = contents.find('\n', start);
    if (end == std::string::npos) end = contents.size();
    const std::string line = contents.substr(start, end - start);
    start = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = absl::StrCat(path, ":", line_no, ": ");
    nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (record.is_discarded()) return absl::InvalidArgumentError(where + "invalid JSON");
    if (!record.is_object()) return absl::InvalidArgumentError(where + "expected a JSON object");
    auto field = record.find(text_field);
    if (field == record.end() || !field->is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "missing string field \"", text_field, "\""));
    }
    docs.push_back({field->get<std::string>(), line_no});
  }
  return docs;
}

void PrintProgress(size_t done, size_t total, double seconds) {
  const int width = 40;
  const int filled = total == 0 ? width : static_cast<int>(width * done / total);
  std::fprintf(stderr, "\r[%s%s] %5.1f%% %7.1f MB/s", std::string(filled, '#').c_str(),
               std::string(width - filled, ' ').c_str(), total == 0 ? 100.0 : 100.0 * done / total,
               seconds > 0 ? done / 1e6 / seconds : 0.0);
  std::fflush(stderr);
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
  ASSIGN_OR_RETURN(std::vector<Document> docs, ReadDocuments(input, options.text_field));
  size_t total_bytes = 0;
  for (const Document& d : docs) total_bytes += d.text.size();

  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&start] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  const int threads = std::max(1, options.threads);
  std::vector<std::vector<uint32_t>> encoded(docs.size());
  std::vector<absl::Status> errors(docs.size());
  std::atomic<size_t> next{0}, bytes_done{0};
  auto work = [&](int doc_threads) {
    for (size_t i; (i = next.fetch_add(1)) < docs.size();) {
      absl::StatusOr<std::vector<uint32_t>> ids =
          tokenizer.Encode(docs[i].text, /*add_special_tokens=*/false, doc_threads);
      if (ids.ok()) {
        encoded[i] = *std::move(ids);
        encoded[i].push_back(separator);
      } else {
        errors[i] = ids.status();
      }
      bytes_done += docs[i].text.size();
    }
  };
  const bool show = options.progress && total_bytes >= kProgressMinBytes;
  if (docs.size() == 1) {
    work(threads);  // one document: its words are spread over the threads
  } else {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(work, 1);
    while (show && bytes_done.load() < total_bytes) {
      PrintProgress(bytes_done.load(), total_bytes, elapsed());
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    for (std::thread& t : pool) t.join();
  }
  if (show) {
    PrintProgress(total_bytes, total_bytes, elapsed());
    std::fprintf(stderr, "\n");
  }
  for (size_t i = 0; i < docs.size(); ++i) {
    if (!errors[i].ok()) {
      const std::string where = docs[i].line > 0 ? absl::StrCat(input, ":", docs[i].line) : input;
      return absl::Status(errors[i].code(), absl::StrCat(where, ": ", errors[i].message()));
    }
  }
  std::vector<uint32_t> ids;
  size_t total_ids = 0;
  for (const auto& e : encoded) total_ids += e.size();
  ids.reserve(total_ids);
  for (auto& e : encoded) {
    ids.insert(ids.end(), e.begin(), e.end());
    std::vector<uint32_t>().swap(e);
  }
  const double seconds = elapsed();
  if (ids.empty()) return absl::InvalidArgumentError(absl::StrCat(input, ": no documents"));
  RETURN_IF_ERROR(WriteTokenShard(output, ids));
  std::fprintf(stderr, "%s",
               absl::StrFormat("tokenized %s: %d docs, %.2f MB -> %d tokens in %.2f s "
                               "(%.2f MB/s, %d threads)\n",
                               input, docs.size(), total_bytes / 1e6, ids.size(), seconds,
                               total_bytes / 1e6 / std::max(seconds, 1e-9), threads)
                   .c_str());
  return absl::OkStatus();
}

}  // namespace distill::worker
