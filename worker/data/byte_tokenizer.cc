#include "worker/data/byte_tokenizer.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "worker/data/token_shard.h"

namespace distill::worker {
namespace {

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  RETURN_IF_ERROR(common::CheckInputFile(path));
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read failed"));
  return contents.str();
}

bool IsBlank(std::string_view line) {
  return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

// The documents of a JSONL file: the string `text_field` of each non-blank line.
absl::StatusOr<std::vector<std::string>> JsonlDocuments(const std::string& path,
                                                        const std::string& contents,
                                                        const std::string& text_field) {
  std::vector<std::string> docs;
  size_t start = 0;
  for (int64_t line_no = 1; start < contents.size(); ++line_no) {
    size_t end = contents.find('\n', start);
    if (end == std::string::npos) end = contents.size();
    std::string_view line(contents.data() + start, end - start);
    start = end + 1;
    if (IsBlank(line)) continue;
    const std::string where = absl::StrCat(path, ":", line_no, ": ");
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
      // parse_error, or out_of_range for a number past a double.
    } catch (const nlohmann::json::exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(where, "invalid JSON: ", e.what()));
    }
    if (!record.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where, "expected a JSON object"));
    }
    auto field = record.find(text_field);
    if (field == record.end() || !field->is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "missing string field \"", text_field, "\""));
    }
    docs.push_back(field->get<std::string>());
  }
  return docs;
}

}  // namespace

std::vector<uint32_t> ByteTokenizer::Encode(std::string_view text) const {
  std::vector<uint32_t> ids;
  ids.reserve(text.size());
  for (char c : text) ids.push_back(static_cast<unsigned char>(c));
  return ids;
}

absl::StatusOr<std::string> ByteTokenizer::Decode(const std::vector<uint32_t>& ids) const {
  std::string text;
  text.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] >= kVocabSize) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", ids[i], " at position ", i,
                                                     " is outside the byte vocabulary (0-255)"));
    }
    text.push_back(static_cast<char>(static_cast<unsigned char>(ids[i])));
  }
  return text;
}

absl::Status TokenizeFileBytes(const std::string& input, const std::string& output,
                               const std::string& text_field, const std::string& separator) {
  absl::StatusOr<std::string> contents = ReadWholeFile(input);
  if (!contents.ok()) return contents.status();

  std::vector<std::string> docs;
  if (absl::EndsWith(input, ".jsonl")) {
    absl::StatusOr<std::vector<std::string>> parsed = JsonlDocuments(input, *contents, text_field);
    if (!parsed.ok()) return parsed.status();
    docs = *std::move(parsed);
  } else {
    docs.push_back(*std::move(contents));
  }

  ByteTokenizer tokenizer;
  const std::vector<uint32_t> separator_ids = tokenizer.Encode(separator);
  std::vector<uint32_t> ids;
  for (size_t i = 0; i < docs.size(); ++i) {
    if (i > 0) ids.insert(ids.end(), separator_ids.begin(), separator_ids.end());
    const std::vector<uint32_t> doc_ids = tokenizer.Encode(docs[i]);
    ids.insert(ids.end(), doc_ids.begin(), doc_ids.end());
  }
  if (ids.empty()) return absl::InvalidArgumentError(absl::StrCat(input, ": no text to tokenize"));
  return WriteTokenShard(output, ids);
}

}  // namespace distill::worker
