// The coordinator's deletions: DeleteJob and the retention of finished jobs.
//
// Note [Retention]: a finished job (SUCCEEDED, FAILED, CANCELLED) is kept for
// CoordinatorOptions::retention after it ended, then deleted as DeleteJob
// would: its store rows and events in one transaction, then its work
// directory STATE_DIR/jobs/ID (never the user's output). A sweep's children
// go with their sweep, never alone, so a sweep's child_ids always resolve.
// The loop runs a pass once a minute (sooner while a pass finds a full batch),
// off mu_ except for each deletion's short critical section. Its first pass
// after a start also removes work directories whose job is not stored: a
// crash between a deletion's commit and its directory's removal leaves one.
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/coordinator.h"

namespace distill::coordinator {
namespace {

namespace fs = std::filesystem;
using distill::v1::Job;
using distill::v1::JobState;

// Expired jobs deleted per pass at most; a full pass makes the next come at
// the next tick, so a backlog drains without holding up the loop.
constexpr int kExpiryBatch = 100;
constexpr absl::Duration kExpiryPeriod = absl::Minutes(1);

// A job id that names one directory under STATE_DIR/jobs (ids are
// "j" + hex; anything else is never removed).
bool PlainName(const std::string& id) {
  return !id.empty() && id != "." && id != ".." && id.find('/') == std::string::npos;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> Coordinator::DeletableLocked(const JobRecord& rec) const {
  const Job& job = rec.job;
  auto unfinished = [](const std::string& what, JobState state) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, " is ", distill::v1::JobState_Name(state),
        ": only a finished job can be deleted (cancel it and wait for it to end)"));
  };
  if (auto it = active_.find(job.id()); it != active_.end() || !IsTerminal(job.state())) {
    return unfinished(absl::StrCat("job ", job.id()),
                      it != active_.end() ? it->second.rec.job.state() : job.state());
  }
  if (!job.parent_id().empty() &&
      (active_.count(job.parent_id()) > 0 || store_->GetJob(job.parent_id()).ok())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job.id(), " belongs to sweep ", job.parent_id(), ": delete the sweep"));
  }
  std::vector<std::string> ids = {job.id()};
  for (const std::string& child : job.child_ids()) {
    if (auto it = active_.find(child); it != active_.end())
      return unfinished(absl::StrCat("child ", child, " of sweep ", job.id()),
                        it->second.rec.job.state());
    ids.push_back(child);
  }
  return ids;
}

absl::StatusOr<Job> Coordinator::Delete(const std::string& id) {
  std::vector<std::string> ids;
  Job job;
  {
    absl::MutexLock lock(&mu_);
    // Not active: finished (never written again) or unknown (Note [Reads off the lock]).
    ASSIGN_OR_RETURN(JobRecord rec, store_->GetJob(id));
    ASSIGN_OR_RETURN(ids, DeletableLocked(rec));
    ASSIGN_OR_RETURN(const auto deleted, store_->DeleteJobs(ids));
    for (const auto& [state, n] : deleted) counts_[state] -= n;
    metrics_->SetJobCounts(counts_);
    NotifyLocked();
    job = std::move(rec.job);
  }
  LogLine(absl::StrCat("job ", id, " deleted",
                       ids.size() > 1 ? absl::StrCat(" with its ", ids.size() - 1, " children")
                                      : ""));
  RemoveWorkDirs(ids);
  job.set_queue_position(0);
  return job;
}

void Coordinator::RemoveWorkDirs(const std::vector<std::string>& ids) const {
  for (const std::string& id : ids) {
    if (!PlainName(id)) continue;
    std::error_code ec;
    const fs::path dir = fs::path(options_.state_dir) / "jobs" / id;
    fs::remove_all(dir, ec);
    if (ec) LogLine(absl::StrCat("job ", id, ": cannot remove ", dir.string(), ": ", ec.message()));
  }
}

void Coordinator::RemoveOrphanWorkDirs() const {
  std::error_code ec;
  std::vector<std::string> orphans;
  for (fs::directory_iterator it(fs::path(options_.state_dir) / "jobs", ec), end;
       !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    // A directory is made only after its job is stored (Note [Write before act]).
    if (it->is_directory() && PlainName(name) && absl::IsNotFound(store_->GetJob(name).status()))
      orphans.push_back(name);
  }
  if (orphans.empty()) return;
  LogLine(absl::StrCat("removing ", orphans.size(), " work directories of deleted jobs"));
  RemoveWorkDirs(orphans);
}

int Coordinator::DeleteExpired(absl::Time now, int limit) {
  if (options_.retention <= absl::ZeroDuration()) return 0;
  absl::StatusOr<std::vector<std::string>> expired =
      store_->ExpiredJobs(absl::ToUnixMillis(now - options_.retention), limit);
  if (!expired.ok()) {
    LogLine(absl::StrCat("retention: ", expired.status().message()));
    return 0;
  }
  int deleted = 0;
  for (const std::string& id : *expired) {
    absl::StatusOr<Job> job = Delete(id);
    if (job.ok()) {
      ++deleted;
    } else {
      LogLine(absl::StrCat("retention: job ", id, ": ", job.status().message()));
    }
  }
  return deleted;
}

void Coordinator::ExpireIfDue() {
  const absl::Time now = absl::Now();  // end times are wall-clock times
  if (now < next_expiry_) return;
  if (next_expiry_ == absl::InfinitePast()) RemoveOrphanWorkDirs();
  const int deleted = DeleteExpired(now, kExpiryBatch);
  next_expiry_ = now + (deleted == kExpiryBatch ? absl::ZeroDuration() : kExpiryPeriod);
}

}  // namespace distill::coordinator
