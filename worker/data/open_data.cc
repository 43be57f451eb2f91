#include "worker/data/open_data.h"

#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/data/text_source.h"

namespace distill::worker {

std::string TokenizerJsonPath(const std::string& tokenizer) {
  std::error_code ec;
  if (tokenizer != "bytes" && std::filesystem::is_directory(tokenizer, ec)) {
    return (std::filesystem::path(tokenizer) / "tokenizer.json").string();
  }
  return tokenizer;
}

absl::StatusOr<std::unique_ptr<SequenceData>> OpenSequenceData(const std::vector<std::string>& paths,
                                                               const DataOptions& options) {
  if (options.format == "chat" || options.format == "prompt_completion") {
    ASSIGN_OR_RETURN(std::unique_ptr<PackedExamples> examples, PackedExamples::Open(paths, options));
    return std::unique_ptr<SequenceData>(std::move(examples));
  }
  if (options.format != "text") {
    return absl::InvalidArgumentError(
        absl::StrCat("data.format: unknown format '", options.format, "', expected text, chat or prompt_completion"));
  }
  std::vector<std::string> shards;
  for (const std::string& p : paths) {
    ASSIGN_OR_RETURN(std::string shard, EnsureTokenShard(p, TokenizerJsonPath(options.tokenizer), options.text_field, options.threads));
    shards.push_back(std::move(shard));
  }
  ASSIGN_OR_RETURN(TokenDataset data, TokenDataset::Open(shards));
  ASSIGN_OR_RETURN(std::unique_ptr<TextWindows> windows, TextWindows::Create(std::move(data), options.seq_len));
  return std::unique_ptr<SequenceData>(std::move(windows));
}

}  // namespace distill::worker
