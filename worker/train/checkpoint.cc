#include "worker/train/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/confine.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "worker/model/safetensors.h"

namespace distill::worker {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr char kPrefix[] = "step_";

// Step numbers of the complete checkpoints under root, ascending.
std::vector<std::pair<int64_t, fs::path>> ListCheckpoints(const std::string& root) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name.rfind(kPrefix, 0) != 0) continue;
    const std::string digits = name.substr(sizeof(kPrefix) - 1);
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(), ::isdigit)) continue;  // staging dirs
    if (!fs::exists(e.path() / "state.json")) continue;
    out.emplace_back(std::stoll(digits), e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

namespace {

std::vector<std::pair<std::string, torch::Tensor>> OnCpu(std::vector<std::pair<std::string, torch::Tensor>> tensors) {
  for (auto& [name, t] : tensors) t = t.detach().to(torch::kCPU);
  return tensors;
}

// The checkpoint's files into `staging`: weights, the optimizer files (moved
// from `pending`) and state.json.
absl::Status FillStaging(const std::string& staging, const std::string& pending,
                         const CheckpointState& state, const std::vector<NamedParam>& params,
                         const Optimizer& optimizer, int ranks) {
  std::vector<std::pair<std::string, torch::Tensor>> weights;
  for (const auto& p : params) weights.emplace_back(p.name, p.param);
  RETURN_IF_ERROR(WriteSafetensors((fs::path(staging) / "weights.safetensors").string(), OnCpu(weights)));
  int files = 0;
  for (int r = 0; r < ranks; ++r) {
    const std::string file = optimizer.StateFile(r);
    if (file.empty()) continue;
    ++files;
    std::error_code ec;
    fs::rename(fs::path(pending) / file, fs::path(staging) / file, ec);
    if (ec) return absl::InternalError(absl::StrCat(pending, "/", file, ": cannot move into ", staging, ": ", ec.message()));
  }
  json j = {{"format_version", 1},
            {"step", state.step},
            {"sampler_position", state.sampler_position},
            {"tokens", state.tokens},
            {"seed", state.seed},
            {"method", state.method},
            {"job_type", state.job_type},
            {"optimizer_files", files}};
  if (state.identity) j["identity"] = json::parse(common::IdentityToJson(*state.identity));
  return common::WriteFileAtomically((fs::path(staging) / "state.json").string(), j.dump(2) + "\n");
}

// Rank 0's part: the staging dir, the rename and the pruning. A failed
// checkpoint leaves neither its staging dir nor its pending shards behind.
absl::StatusOr<std::string> Commit(const std::string& root, const std::string& pending,
                                   const CheckpointState& state,
                                   const std::vector<NamedParam>& params,
                                   const Optimizer& optimizer, int keep, int ranks) {
  const std::string dir =
      (fs::path(root) / absl::StrFormat("%s%08d", kPrefix, state.step)).string();
  ASSIGN_OR_RETURN(std::string staging, common::MakeStagingDir(dir));
  absl::Status st = FillStaging(staging, pending, state, params, optimizer, ranks);
  if (st.ok()) st = common::CommitStagingDir(staging, dir);
  std::error_code ec;
  if (!st.ok()) {
    fs::remove_all(staging, ec);
    fs::remove_all(pending, ec);
    return st;
  }
  fs::remove_all(pending, ec);
  auto all = ListCheckpoints(root);
  for (size_t i = 0; i + static_cast<size_t>(std::max(1, keep)) < all.size(); ++i) fs::remove_all(all[i].second, ec);
  return dir;
}

}  // namespace

absl::StatusOr<std::string> SaveCheckpoint(const std::string& root, const CheckpointState& state,
                                           const std::vector<NamedParam>& params, const Optimizer& optimizer,
                                           int keep, Communicator& ranks) {
  const std::string pending = (fs::path(root) / absl::StrFormat(".pending_%s%08d", kPrefix, state.step)).string();
  const std::string mine = optimizer.StateFile(ranks.rank());
  RETURN_IF_ERROR(common::CheckConfined(pending, common::Access::kWrite));
  if (!mine.empty()) {
    std::error_code ec;
    fs::create_directories(pending, ec);
    if (ec) return absl::PermissionDeniedError(absl::StrCat(pending, ": cannot create: ", ec.message()));
    RETURN_IF_ERROR(WriteSafetensors((fs::path(pending) / mine).string(), OnCpu(optimizer.StateTensors())));
  }
  if (ranks.size() > 1) RETURN_IF_ERROR(ranks.Barrier(absl::StrCat("checkpoint of step ", state.step)));
  absl::StatusOr<std::string> dir =
      (fs::path(root) / absl::StrFormat("%s%08d", kPrefix, state.step)).string();
  if (ranks.rank() == 0) dir = Commit(root, pending, state, params, optimizer, keep, ranks.size());
  // No rank writes the next checkpoint's shards (perhaps of the same step,
  // into the same pending dir) before rank 0 has cleared this one's.
  if (dir.ok() && ranks.size() > 1) RETURN_IF_ERROR(ranks.Barrier(absl::StrCat("checkpoint of step ", state.step, " committed")));
  return dir;
}

std::optional<std::string> LatestCheckpoint(const std::string& root) {
  auto all = ListCheckpoints(root);
  if (all.empty()) return std::nullopt;
  return all.back().second.string();
}

absl::StatusOr<CheckpointState> LoadCheckpoint(const std::string& dir, const std::vector<NamedParam>& params,
                                               Optimizer& optimizer) {
  const std::string state_path = (fs::path(dir) / "state.json").string();
  ASSIGN_OR_RETURN(std::string text, common::ReadFileToString(state_path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  CheckpointState s;
  try {
    s.step = j.at("step").get<int64_t>();
    s.sampler_position = j.at("sampler_position").get<int64_t>();
    s.tokens = j.at("tokens").get<int64_t>();
    s.seed = j.at("seed").get<uint64_t>();
    s.method = j.at("method").get<std::string>();
    s.job_type = j.value("job_type", std::string("finetune"));
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(state_path, ": malformed checkpoint state: ", e.what()));
  }
  if (j.contains("identity")) {
    absl::StatusOr<common::RunIdentity> identity = common::IdentityFromJson(j["identity"].dump());
    if (!identity.ok())
      return absl::InvalidArgumentError(
          absl::StrCat(state_path, ": ", identity.status().message()));
    s.identity = *identity;
  }
  const std::string weights_path = (fs::path(dir) / "weights.safetensors").string();
  ASSIGN_OR_RETURN(auto weights, SafetensorsFile::Open(weights_path));
  torch::NoGradGuard no_grad;
  for (const auto& p : params) {
    auto t = weights->Get(p.name);
    if (!t.ok()) return absl::InvalidArgumentError(absl::StrCat(weights_path, ": missing tensor '", p.name, "'"));
    if (t->sizes() != p.param.sizes()) {
      return absl::InvalidArgumentError(absl::StrCat(weights_path, ": tensor '", p.name, "' has shape ",
                                                     c10::str(t->sizes()), ", the model needs ",
                                                     c10::str(p.param.sizes())));
    }
    p.param.copy_(*t);
  }
  ASSIGN_OR_RETURN(std::unique_ptr<OptimizerStateReader> reader, OptimizerStateReader::Open(dir));
  RETURN_IF_ERROR(optimizer.LoadState(*reader));
  return s;
}

}  // namespace distill::worker
