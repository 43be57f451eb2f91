// The coordinator's submissions: checks, the records of a new job, and the
// group commit of a batch (Note [Group commit] in coordinator.h); sweeps'
// expansion is coordinator_sweep.cc.
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "coordinator/coordinator.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/util/time_util.h"

namespace distill::coordinator {

using distill::v1::Job;
using distill::v1::JobEvent;
using google::protobuf::util::TimeUtil;

absl::Status Coordinator::CheckSubmission(const distill::v1::SubmitJobRequest& request,
                                          int ranks) const {
  if (ranks < 1)
    return absl::InvalidArgumentError(absl::StrCat("ranks: must be >= 1, got ", ranks));
  if (ranks > scheduler_->total_slots()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "ranks: the job needs ", ranks, " slots, the inventory has ", scheduler_->total_slots()));
  }
  if (request.has_max_retries() && request.max_retries() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_retries: must be >= 0, got ", request.max_retries()));
  }
  return absl::OkStatus();
}

JobRecord Coordinator::NewRecord(const distill::v1::SubmitJobRequest& request,
                                 const distill::v1::JobSpec& spec, distill::v1::JobKind kind,
                                 int ranks) const {
  JobRecord rec;
  Job& job = rec.job;  // the id (and what derives from it) comes at commit
  *job.mutable_spec() = spec;
  job.set_kind(kind);
  job.set_state(distill::v1::QUEUED);
  job.set_max_retries(request.has_max_retries() ? request.max_retries() : options_.max_retries);
  job.set_priority(request.priority());
  job.set_ranks(ranks);
  job.set_request_id(request.request_id());
  job.set_output_dir(spec.output());
  if (kind != distill::v1::SWEEP) job.set_checkpoint_dir(spec.output() + "/checkpoints");
  *job.mutable_create_time() = TimeUtil::GetCurrentTime();
  *job.mutable_update_time() = job.create_time();
  return rec;
}

void Coordinator::SubmitAsync(const distill::v1::SubmitJobRequest& request,
                              std::function<void(absl::StatusOr<Job>)> done) {
  if (request.spec().sweep_size() > 0) {
    SubmitSweepAsync(request, std::move(done));
    return;
  }
  if (request.kind() == distill::v1::SWEEP) {
    done(absl::InvalidArgumentError("kind: a sweep is a spec with a sweep block"));
    return;
  }
  const distill::v1::JobKind kind =
      request.kind() == distill::v1::CAPTURE ? distill::v1::CAPTURE : distill::v1::TRAIN;
  const int ranks = RanksOf(request.spec(), kind);
  if (absl::Status st = CheckSubmission(request, ranks); !st.ok()) {
    done(st);
    return;
  }
  NewJob nj;
  nj.record = NewRecord(request, request.spec(), kind, ranks);
  nj.event = EventInfo{JobEvent::STATE_CHANGED, "submitted"};
  committer_->Add(std::move(nj), std::move(done));
}

absl::StatusOr<Job> Coordinator::Submit(const distill::v1::SubmitJobRequest& request) {
  absl::Notification committed;
  std::optional<absl::StatusOr<Job>> result;  // written before Notify(), read after
  SubmitAsync(request, [&](absl::StatusOr<Job> job) {
    result = std::move(job);
    committed.Notify();
  });
  committed.WaitForNotification();
  return std::move(*result);
}

// Note [Request ids]: a submission with a request_id that a stored job has
// is answered with that job, not a second one (a client's retry after a lost
// answer), as long as it carries the same spec; with another spec it is
// refused (ALREADY_EXISTS, naming the job), since answering with a job of
// another spec would let the caller believe its spec runs.
std::vector<absl::StatusOr<Job>> Coordinator::CommitSubmissions(std::vector<NewJob>& batch) {
  absl::MutexLock lock(&mu_);
  auto assign_id = [this](Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    job.set_id(absl::StrFormat("j%012x", rng_() & 0xffffffffffffULL));
    job.set_log_dir(absl::StrCat(options_.state_dir, "/jobs/", job.id()));
  };
  for (NewJob& nj : batch) {
    assign_id(nj.record.job);
    for (JobRecord& child : nj.children) {
      assign_id(child.job);
      child.job.set_parent_id(nj.record.job.id());
      nj.record.job.add_child_ids(child.job.id());
    }
  }
  std::vector<absl::StatusOr<Job>> results;
  results.reserve(batch.size());
  const absl::Time start = absl::Now();
  absl::StatusOr<std::vector<CreatedJob>> created = store_->CreateJobs(batch);
  metrics_->ObserveCommit(absl::ToDoubleSeconds(absl::Now() - start));
  if (!created.ok()) {
    LogLine(absl::StrCat("cannot record ", batch.size(),
                         " submission(s): ", created.status().message()));
    for (size_t i = 0; i < batch.size(); ++i) results.push_back(created.status());
    return results;
  }
  // Into active_ first, so that every queue position below counts the whole batch.
  std::vector<Active*> added(batch.size(), nullptr);
  bool any_added = false;
  for (size_t i = 0; i < batch.size(); ++i) {
    CreatedJob& c = (*created)[i];
    if (!c.record.ok() || !c.created) continue;
    Active& a = EnterLocked(std::move(*c.record));
    metrics_->OnSubmit();
    added[i] = &a;
    any_added = true;
    for (JobRecord& child : c.children) {
      const std::string child_id = child.job.id();
      const bool capture = child.job.kind() == distill::v1::CAPTURE;
      a.children[child_id] = distill::v1::QUEUED;
      if (capture) a.capture_id = child_id;
      EnterLocked(std::move(child));
    }
    if (!a.capture_id.empty()) {
      for (const auto& [child_id, state] : a.children) {
        if (child_id != a.capture_id) active_.at(child_id).blocked = true;
      }
    }
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    CreatedJob& c = (*created)[i];
    if (added[i] != nullptr) {
      results.push_back(DecorateLocked(added[i]->rec));
    } else if (!c.record.ok()) {
      results.push_back(c.record.status());
    } else if (!google::protobuf::util::MessageDifferencer::Equals(c.record->job.spec(),
                                                                   batch[i].record.job.spec())) {
      // Note [Request ids]: the same id for another spec is the caller's mistake.
      results.push_back(absl::AlreadyExistsError(absl::StrCat(
          "request_id '", batch[i].record.job.request_id(), "' was used for job ",
          c.record->job.id(),
          " with another spec: a retried submission must send the same spec; use a new request_id "
          "for a new job")));
    } else {
      // An earlier submission of the same request id.
      auto it = active_.find(c.record->job.id());
      results.push_back(DecorateLocked(it == active_.end() ? *c.record : it->second.rec));
    }
  }
  if (any_added) {
    metrics_->SetJobCounts(counts_);
    NotifyLocked();
    // A full inventory cannot start them; the next tick or freed slot will.
    if (scheduler_->free_slots() > 0) wake_.SignalAll();
  }
  return results;
}

}  // namespace distill::coordinator
