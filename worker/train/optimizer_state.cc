#include "worker/train/optimizer_state.h"

#include <algorithm>
#include <filesystem>
#include <regex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/model/safetensors.h"

namespace distill::worker {
namespace fs = std::filesystem;

std::string ShardStateFile(int rank, int ranks) {
  return absl::StrFormat("optimizer-%05d-of-%05d.safetensors", rank, ranks);
}

std::string SegmentKey(const std::string& kind, const std::string& name, int64_t offset) {
  return absl::StrCat(kind, "/", name, "@", offset);
}

namespace {

// (kind, name, offset) of a shard key "KIND/NAME@OFFSET"; false otherwise.
bool ParseSegmentKey(const std::string& key, std::string* kind, std::string* name, int64_t* offset) {
  const size_t slash = key.find('/');
  const size_t at = key.rfind('@');
  if (slash == std::string::npos || at == std::string::npos || at < slash) return false;
  *kind = key.substr(0, slash);
  *name = key.substr(slash + 1, at - slash - 1);
  return absl::SimpleAtoi(key.substr(at + 1), offset) && *offset >= 0;
}

// (kind, name) of a plain key "NAME.exp_avg" / "NAME.exp_avg_sq".
bool ParsePlainKey(const std::string& key, std::string* kind, std::string* name) {
  for (const char* k : {"exp_avg_sq", "exp_avg"}) {
    const std::string suffix = absl::StrCat(".", k);
    if (key.size() > suffix.size() && key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0) {
      *kind = k;
      *name = key.substr(0, key.size() - suffix.size());
      return true;
    }
  }
  return false;
}

// The shard files of `dir` by rank, and their common S (0 if none).
absl::StatusOr<std::map<int, fs::path>> ShardFiles(const std::string& dir, int* ranks) {
  static const std::regex kShard(R"(optimizer-(\d{5})-of-(\d{5})\.safetensors)");
  std::map<int, fs::path> out;
  *ranks = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string file = e.path().filename().string();
    if (!std::regex_match(file, m, kShard)) continue;
    const int r = std::stoi(m[1].str()), s = std::stoi(m[2].str());
    if (*ranks != 0 && s != *ranks) {
      return absl::InvalidArgumentError(absl::StrCat(dir, ": optimizer shards of ", *ranks,
                                                     " and of ", s, " ranks side by side"));
    }
    *ranks = s;
    out[r] = e.path();
  }
  for (int r = 0; r < *ranks; ++r) {
    if (!out.count(r)) {
      return absl::InvalidArgumentError(
          absl::StrCat(dir, ": optimizer shard missing: ", ShardStateFile(r, *ranks)));
    }
  }
  return out;
}

}  // namespace

OptimizerStateReader::~OptimizerStateReader() = default;

absl::StatusOr<std::unique_ptr<OptimizerStateReader>> OptimizerStateReader::Open(const std::string& dir) {
  std::unique_ptr<OptimizerStateReader> reader(new OptimizerStateReader());
  reader->dir_ = dir;
  int ranks = 0;
  using ShardMap = std::map<int, fs::path>;
  ASSIGN_OR_RETURN(ShardMap shards, ShardFiles(dir, &ranks));
  std::vector<std::pair<fs::path, bool>> paths;  // (path, plain)
  if (shards.empty()) {
    const fs::path plain = fs::path(dir) / kPlainStateFile;
    if (!fs::exists(plain)) return absl::NotFoundError(absl::StrCat(dir, ": no optimizer state"));
    paths.emplace_back(plain, true);
  }
  for (const auto& [r, path] : shards) paths.emplace_back(path, false);
  for (const auto& [path, plain] : paths) {
    ASSIGN_OR_RETURN(std::shared_ptr<SafetensorsFile> file, SafetensorsFile::Open(path.string()));
    RETURN_IF_ERROR(reader->Index(*file, plain));
    reader->files_.push_back(std::move(file));
  }
  reader->shards_ = static_cast<int>(paths.size());
  return reader;
}

absl::Status OptimizerStateReader::Index(const SafetensorsFile& file, bool plain) {
  auto bad = [&](const std::string& what) { return absl::InvalidArgumentError(absl::StrCat(file.path(), ": ", what)); };
  if (!file.Contains("step")) return bad("missing 'step'");
  ASSIGN_OR_RETURN(torch::Tensor step_t, file.Get("step"));
  if (step_t.numel() != 1) return bad("'step' is not a scalar");
  const int64_t step = step_t.to(torch::kLong).item<int64_t>();
  if (step_ >= 0 && step != step_) {
    return bad(absl::StrCat("step ", step, " differs from the other shards' ", step_));
  }
  step_ = step;
  for (const std::string& key : file.names()) {
    if (key == "step") continue;
    std::string kind, name;
    int64_t offset = 0;
    const bool ok = plain ? ParsePlainKey(key, &kind, &name) : ParseSegmentKey(key, &kind, &name, &offset);
    if (!ok) return bad(absl::StrCat("unexpected tensor '", key, "'"));
    ASSIGN_OR_RETURN(torch::Tensor t, file.Get(key));
    pieces_[{kind, name}].push_back({offset, t.reshape({-1})});
  }
  return absl::OkStatus();
}

bool OptimizerStateReader::Has(const std::string& kind, const std::string& name) const {
  return pieces_.count({kind, name}) > 0;
}

absl::StatusOr<torch::Tensor> OptimizerStateReader::Read(const std::string& kind, const std::string& name,
                                                         int64_t offset, int64_t length) const {
  auto it = pieces_.find({kind, name});
  if (it == pieces_.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir_, ": optimizer state has no ", kind, " of '", name, "'"));
  }
  torch::Tensor out = torch::empty({length}, torch::kFloat);
  std::vector<std::pair<int64_t, int64_t>> covered;  // [begin, end) copied
  for (const Piece& p : it->second) {
    const int64_t begin = std::max(offset, p.offset);
    const int64_t end = std::min(offset + length, p.offset + p.values.numel());
    if (begin >= end) continue;
    out.narrow(0, begin - offset, end - begin).copy_(p.values.narrow(0, begin - p.offset, end - begin));
    covered.emplace_back(begin, end);
  }
  std::sort(covered.begin(), covered.end());
  int64_t next = offset;
  for (const auto& [b, e] : covered) {
    if (b > next) break;
    next = std::max(next, e);
  }
  if (next < offset + length) {
    return absl::InvalidArgumentError(absl::StrCat(dir_, ": optimizer state of '", name, "' (", kind,
                                                   ") has no element ", next, " (the parameter has ",
                                                   "changed shape, or a shard is incomplete)"));
  }
  return out;
}

}  // namespace distill::worker
