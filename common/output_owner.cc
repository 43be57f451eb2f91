#include "common/output_owner.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs_util.h"

namespace distill::common {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string Normal(const std::string& path) { return fs::path(path).lexically_normal().string(); }

// The record of an output's owner.
struct Owner {
  std::string job_id;
  RunIdentity identity;
};

absl::StatusOr<Owner> ParseOwner(const std::string& path, const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("identity") || !j["identity"].is_object() ||
      (j.contains("job_id") && !j["job_id"].is_string())) {
    return absl::FailedPreconditionError(
        absl::StrCat(path,
                     ": not an owner record (an object with job_id and identity): "
                     "delete it if the directory is yours"));
  }
  Owner o;
  o.job_id = j.value("job_id", std::string());
  absl::StatusOr<RunIdentity> id = IdentityFromJson(j["identity"].dump());
  if (!id.ok())
    return absl::FailedPreconditionError(absl::StrCat(path, ": ", id.status().message()));
  o.identity = *id;
  return o;
}

std::string OwnerName(const std::string& job_id) {
  return job_id.empty() ? "a run started without a coordinator" : absl::StrCat("job ", job_id);
}

}  // namespace

RunIdentity IdentityOf(const distill::v1::JobSpec& spec) {
  RunIdentity id;
  id.type = spec.type() == distill::v1::DISTILL ? "distill" : "finetune";
  id.method = spec.method() == distill::v1::LORA ? "lora" : "full";
  id.model = spec.model().empty() ? absl::StrCat("init ", Normal(spec.init()))
                                  : absl::StrCat("model ", Normal(spec.model()));
  if (spec.type() == distill::v1::DISTILL) {
    id.teacher = spec.teacher().model().empty()
                     ? absl::StrCat("cache ", Normal(spec.teacher().cache()))
                     : absl::StrCat("model ", Normal(spec.teacher().model()));
  }
  std::vector<std::string> files;
  for (const std::string& f : spec.data().train()) files.push_back(Normal(f));
  id.data = absl::StrJoin(files, ",");
  id.seed = spec.train().seed();
  return id;
}

std::vector<std::string> IdentityDifferences(const RunIdentity& recorded, const RunIdentity& mine) {
  std::vector<std::string> out;
  auto check = [&](const char* name, const std::string& was, const std::string& now) {
    if (!was.empty() && was != now)
      out.push_back(absl::StrCat(name, " (", was, ", now ", now, ")"));
  };
  check("type", recorded.type, mine.type);
  check("method", recorded.method, mine.method);
  check("model", recorded.model, mine.model);
  // Empty is a value here (a finetune has no teacher); every record has a type.
  if (!recorded.type.empty() && recorded.teacher != mine.teacher) {
    out.push_back(absl::StrCat("teacher (", recorded.teacher.empty() ? "none" : recorded.teacher,
                               ", now ", mine.teacher.empty() ? "none" : mine.teacher, ")"));
  }
  check("data", recorded.data, mine.data);
  if (recorded.seed && mine.seed && *recorded.seed != *mine.seed) {
    out.push_back(absl::StrCat("seed (", *recorded.seed, ", now ", *mine.seed, ")"));
  }
  return out;
}

std::string IdentityToJson(const RunIdentity& id) {
  json j = {{"type", id.type},
            {"method", id.method},
            {"model", id.model},
            {"teacher", id.teacher},
            {"data", id.data}};
  if (id.seed) j["seed"] = *id.seed;
  return j.dump();
}

absl::StatusOr<RunIdentity> IdentityFromJson(absl::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return absl::InvalidArgumentError("identity: not a JSON object");
  RunIdentity id;
  for (auto [name, field] : {std::pair<const char*, std::string*>{"type", &id.type},
                             {"method", &id.method},
                             {"model", &id.model},
                             {"teacher", &id.teacher},
                             {"data", &id.data}}) {
    if (!j.contains(name)) continue;
    if (!j[name].is_string())
      return absl::InvalidArgumentError(absl::StrCat("identity: ", name, ": not a string"));
    *field = j[name].get<std::string>();
  }
  if (j.contains("seed")) {
    if (!j["seed"].is_number_unsigned())
      return absl::InvalidArgumentError("identity: seed: not an unsigned integer");
    id.seed = j["seed"].get<uint64_t>();
  }
  return id;
}

absl::Status ClaimOutput(const std::string& output_dir, const std::string& job_id,
                         const RunIdentity& identity) {
  const std::string path = (fs::path(output_dir) / kOwnerFile).string();
  std::error_code ec;
  if (fs::exists(path, ec)) {
    absl::StatusOr<std::string> text = ReadFileToString(path);
    if (!text.ok()) return text.status();
    absl::StatusOr<Owner> owner = ParseOwner(path, *text);
    if (!owner.ok()) return owner.status();
    const bool same_job = !job_id.empty() && owner->job_id == job_id;
    const std::vector<std::string> diffs = IdentityDifferences(owner->identity, identity);
    if (!same_job && !diffs.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          output_dir, ": belongs to ", OwnerName(owner->job_id), ", which differs from this ",
          job_id.empty() ? "run" : absl::StrCat("job ", job_id), " in ", absl::StrJoin(diffs, ", "),
          ": write to another output directory, or delete ", output_dir, " to start over"));
    }
    if (same_job) return absl::OkStatus();
  }
  const std::string record =
      json{{"job_id", job_id}, {"identity", json::parse(IdentityToJson(identity))}}.dump(2) + "\n";
  return WriteFileAtomically(path, record);
}

int RemoveStaleStaging(const std::string& dir) {
  static const std::regex stale(R"(.*\.(tmp|old)\.[0-9]+|\.pending_.*)");
  int removed = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!std::regex_match(e.path().filename().string(), stale)) continue;
    std::error_code rm;
    if (fs::remove_all(e.path(), rm) > 0 && !rm) ++removed;
  }
  return removed;
}

}  // namespace distill::common
