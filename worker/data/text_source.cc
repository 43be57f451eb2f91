#include "worker/data/text_source.h"

#include <cstdlib>
#include <filesystem>
#include <functional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "worker/data/byte_tokenizer.h"
#include "worker/data/hf_tokenizer.h"

namespace distill::worker {
namespace fs = std::filesystem;

namespace {

bool NotOlderThan(const fs::path& a, const fs::path& b) {
  std::error_code ec1, ec2;
  auto ta = fs::last_write_time(a, ec1), tb = fs::last_write_time(b, ec2);
  return !ec1 && !ec2 && ta >= tb;
}

}  // namespace

// FNV-1a 64 of the files' bytes: names the cache by tokenizer content.
absl::StatusOr<std::string> TokenizerTag(const std::string& tokenizer,
                                         const std::vector<std::string>& also) {
  if (tokenizer == "bytes") return std::string("bytes");
  uint64_t h = 1469598103934665603ull;
  std::vector<std::string> files = {tokenizer};
  files.insert(files.end(), also.begin(), also.end());
  for (const std::string& file : files) {
    ASSIGN_OR_RETURN(std::string text, common::ReadFileToString(file));
    for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  }
  return absl::StrFormat("tok-%08x", static_cast<uint32_t>(h >> 32));
}

std::string CachePathFor(const std::string& input, const std::string& suffix) {
  const char* dir = std::getenv("DISTILL_CACHE_DIR");
  if (dir == nullptr || *dir == '\0') return absl::StrCat(input, ".", suffix);
  const std::string abs = fs::absolute(input).lexically_normal().string();
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a 64
  for (unsigned char c : abs) h = (h ^ c) * 0x100000001b3ULL;
  return (fs::path(dir) / absl::StrFormat("%016x-%s.%s", h, fs::path(abs).filename().string(), suffix))
      .string();
}

bool CacheIsFresh(const std::string& cache, const std::vector<std::string>& sources) {
  if (!fs::exists(cache)) return false;
  for (const std::string& source : sources) {
    if (!NotOlderThan(cache, source)) return false;
  }
  return true;
}

absl::StatusOr<std::string> EnsureTokenShard(const std::string& path, const std::string& tokenizer,
                                             const std::string& text_field, int threads) {
  if (absl::EndsWith(path, ".bin")) return path;
  if (!fs::exists(path)) return absl::NotFoundError(absl::StrCat(path, ": no such data file"));
  ASSIGN_OR_RETURN(std::string tag, TokenizerTag(tokenizer));
  const std::string shard = CachePathFor(path, absl::StrCat(tag, ".bin"));
  std::vector<std::string> sources = {path};
  if (tokenizer != "bytes") sources.push_back(tokenizer);
  if (CacheIsFresh(shard, sources)) return shard;
  if (tokenizer == "bytes") {
    RETURN_IF_ERROR(TokenizeFileBytes(path, shard, text_field));
  } else {
    ASSIGN_OR_RETURN(auto tok, HfTokenizer::Load(tokenizer));
    TokenizeFileOptions options;
    options.text_field = text_field;
    options.threads = std::max(1, threads);
    RETURN_IF_ERROR(TokenizeFile(*tok, path, shard, options));
  }
  return shard;
}

}  // namespace distill::worker
