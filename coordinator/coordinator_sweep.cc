// The coordinator's sweeps: submission of a sweep (the parent and its
// children in one commit), the parent's state following its children and
// the children waiting for the shared teacher capture (Note [Sweep follows
// children] in coordinator.h), cancel of a whole sweep.
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/sweep.h"
#include "coordinator/coordinator.h"
#include "coordinator/job_states.h"

namespace distill::coordinator {

using distill::v1::Job;
using distill::v1::JobEvent;
using distill::v1::JobState;

void Coordinator::SubmitSweepAsync(const distill::v1::SubmitJobRequest& request,
                                   std::function<void(absl::StatusOr<Job>)> done) {
  absl::StatusOr<std::vector<common::SweepChild>> children = common::ExpandSweep(request.spec());
  if (!children.ok()) {
    done(children.status());
    return;
  }
  NewJob nj;
  nj.record = NewRecord(request, request.spec(), distill::v1::SWEEP, 0);
  nj.event = EventInfo{JobEvent::STATE_CHANGED, "submitted"};
  for (size_t i = 0; i < children->size(); ++i) {
    const common::SweepChild& c = (*children)[i];
    const distill::v1::JobKind kind = c.capture ? distill::v1::CAPTURE : distill::v1::TRAIN;
    const int ranks = RanksOf(c.spec, kind);
    if (absl::Status st = CheckSubmission(request, ranks); !st.ok()) {
      done(absl::Status(st.code(),
                        absl::StrCat("sweep child ", i, " (", c.label, "): ", st.message())));
      return;
    }
    JobRecord rec = NewRecord(request, c.spec, kind, ranks);
    rec.job.set_request_id("");  // the parent's request id covers the sweep
    for (const auto& [field, value] : c.values) (*rec.job.mutable_sweep_values())[field] = value;
    nj.children.push_back(std::move(rec));
  }
  committer_->Add(std::move(nj), std::move(done));
}

Coordinator::Active& Coordinator::EnterLocked(JobRecord rec) {
  Active& a = active_[rec.job.id()];
  a.rec = std::move(rec);
  if (a.rec.job.kind() != distill::v1::SWEEP) QueueInsertLocked(a.rec.job.priority(), a.rec.seq);
  counts_[distill::v1::QUEUED]++;
  const Job& job = a.rec.job;
  LogLine(absl::StrCat("job ", job.id(), " QUEUED: ",
                       job.kind() == distill::v1::SWEEP
                           ? absl::StrCat("sweep of ", job.child_ids_size(), " jobs")
                           : absl::StrCat(job.ranks(), " ranks"),
                       ", priority ", job.priority(), job.spec().name().empty() ? "" : ", name ",
                       job.spec().name()));
  return a;
}

void Coordinator::ChildChangedLocked(const Job& child) {
  auto it = active_.find(child.parent_id());
  if (it == active_.end()) return;  // the sweep already ended (or a restart loads it)
  it->second.children[child.id()] = child.state();
  dirty_sweeps_.insert(child.parent_id());
}

void Coordinator::SettleSweepsLocked() {
  while (!dirty_sweeps_.empty()) {
    const std::string id = *dirty_sweeps_.begin();
    dirty_sweeps_.erase(dirty_sweeps_.begin());
    auto it = active_.find(id);
    if (it == active_.end()) continue;
    ResolveCaptureLocked(it->second);
    FollowChildrenLocked(it->second);  // may end (and erase) the sweep
  }
}

// The capture child ended: its waiting siblings become runnable when it
// succeeded, and fail (DEPENDENCY_FAILED) otherwise.
void Coordinator::ResolveCaptureLocked(Active& sweep) {
  if (sweep.capture_id.empty()) return;
  const JobState capture = sweep.children[sweep.capture_id];
  if (!IsTerminal(capture)) return;
  std::vector<std::string> waiting;
  for (const auto& [id, state] : sweep.children) {
    if (state == distill::v1::QUEUED) waiting.push_back(id);
  }
  for (const std::string& id : waiting) {
    auto it = active_.find(id);
    if (it == active_.end() || !it->second.blocked) continue;
    if (capture == distill::v1::SUCCEEDED) {
      it->second.blocked = false;
      continue;
    }
    const std::string why = absl::StrCat("the sweep's teacher capture ", sweep.capture_id, " ",
                                         distill::v1::JobState_Name(capture));
    if (Transition(it->second, distill::v1::FAILED, distill::v1::DEPENDENCY_FAILED, why).ok()) {
      active_.erase(it);
    }
  }
}

void Coordinator::FollowChildrenLocked(Active& sweep) {
  int ended = 0, succeeded = 0, failed = 0, started = 0;
  for (const auto& [id, state] : sweep.children) {
    ended += IsTerminal(state);
    succeeded += state == distill::v1::SUCCEEDED;
    failed += state == distill::v1::FAILED;
    started += state != distill::v1::QUEUED;
  }
  const int n = static_cast<int>(sweep.children.size());
  const std::string id = sweep.rec.job.id();
  if (sweep.rec.job.state() == distill::v1::QUEUED && started > 0 && ended < n) {
    Transition(sweep, distill::v1::RUNNING, distill::v1::FAILURE_REASON_UNSPECIFIED,
               "a child started")
        .IgnoreError();  // logged; the next change retries
    return;
  }
  if (ended < n) return;
  JobState to = distill::v1::CANCELLED;
  distill::v1::FailureReason reason = distill::v1::CANCEL_REQUESTED;
  if (succeeded == n) {
    to = distill::v1::SUCCEEDED;
    reason = distill::v1::FAILURE_REASON_UNSPECIFIED;
  } else if (failed > 0 && !sweep.rec.cancel_requested) {
    to = distill::v1::FAILED;
    reason = distill::v1::FAILURE_REASON_UNSPECIFIED;
  }
  const std::string message = absl::StrCat("children: ", succeeded, " succeeded, ", failed,
                                           " failed, ", n - succeeded - failed, " cancelled");
  // SUCCEEDED only from RUNNING (a restart may find every child ended).
  if (sweep.rec.job.state() == distill::v1::QUEUED && to == distill::v1::SUCCEEDED &&
      !Transition(sweep, distill::v1::RUNNING, distill::v1::FAILURE_REASON_UNSPECIFIED, "").ok()) {
    return;
  }
  if (Transition(sweep, to, reason, message).ok()) active_.erase(id);
}

void Coordinator::LoadSweepLocked(Active& sweep) {
  sweep.children.clear();
  sweep.capture_id.clear();
  for (const std::string& id : sweep.rec.job.child_ids()) {
    auto it = active_.find(id);
    if (it != active_.end()) {
      sweep.children[id] = it->second.rec.job.state();
      if (it->second.rec.job.kind() == distill::v1::CAPTURE) sweep.capture_id = id;
      continue;
    }
    absl::StatusOr<JobRecord> rec = store_->GetJob(id);
    if (!rec.ok()) {
      LogLine(
          absl::StrCat("sweep ", sweep.rec.job.id(), ": child ", id, ": ", rec.status().message()));
      sweep.children[id] = distill::v1::FAILED;
      continue;
    }
    sweep.children[id] = rec->job.state();
    if (rec->job.kind() == distill::v1::CAPTURE) sweep.capture_id = id;
  }
  if (!sweep.capture_id.empty() && sweep.children[sweep.capture_id] != distill::v1::SUCCEEDED) {
    for (const auto& [id, state] : sweep.children) {
      auto it = active_.find(id);
      if (id != sweep.capture_id && it != active_.end() && state == distill::v1::QUEUED) {
        it->second.blocked = true;
      }
    }
  }
  dirty_sweeps_.insert(sweep.rec.job.id());
}

absl::StatusOr<Job> Coordinator::CancelSweepLocked(Active& sweep, bool force) {
  if (!sweep.rec.cancel_requested || (force && !sweep.rec.cancel_force)) {
    sweep.rec.cancel_requested = true;
    sweep.rec.cancel_force = sweep.rec.cancel_force || force;
    RETURN_IF_ERROR(WriteLocked(sweep, std::nullopt));
    LogLine(
        absl::StrCat("sweep ", sweep.rec.job.id(), ": cancel requested", force ? " (force)" : ""));
  }
  std::vector<std::string> live;
  for (const auto& [id, state] : sweep.children) {
    if (!IsTerminal(state)) live.push_back(id);
  }
  for (const std::string& id : live) {
    auto it = active_.find(id);
    if (it == active_.end()) continue;
    absl::StatusOr<Job> child = CancelLocked(it->second, force);
    if (!child.ok())
      LogLine(absl::StrCat("job ", id, ": cannot cancel: ", child.status().message()));
  }
  dirty_sweeps_.insert(sweep.rec.job.id());
  return sweep.rec.job;
}

}  // namespace distill::coordinator
