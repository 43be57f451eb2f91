#include "coordinator/coordinator.h"

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/fs_util.h"
#include "common/plan.h"
#include "common/spec.h"
#include "common/status_macros.h"
#include "coordinator/job_states.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"

namespace distill::coordinator {
namespace {

namespace fs = std::filesystem;
using distill::v1::FailureReason;
using distill::v1::Job;
using distill::v1::JobEvent;
using distill::v1::JobState;
using google::protobuf::util::TimeUtil;

std::string StateName(JobState s) { return distill::v1::JobState_Name(s); }

// What a listing needs of a serialized Job (0 when absent or unreadable),
// read without parsing the rest of it.
struct ListedFields {
  int priority = 0;
  int kind = 0;
};

ListedFields ListedFieldsOf(const std::string& job) {
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(job.data()),
                                            static_cast<int>(job.size()));
  ListedFields out;
  while (const uint32_t tag = in.ReadTag()) {
    const uint32_t field = tag >> 3, wire_type = tag & 7;
    uint64_t v = 0;
    uint32_t len = 0;
    bool ok = true;
    switch (wire_type) {
      case 0:  // varint
        ok = in.ReadVarint64(&v);
        if (ok && field == Job::kPriorityFieldNumber) out.priority = static_cast<int32_t>(v);
        if (ok && field == Job::kKindFieldNumber) out.kind = static_cast<int32_t>(v);
        break;
      case 1:  // 64-bit
        ok = in.Skip(8);
        break;
      case 2:  // length-delimited
        ok = in.ReadVarint32(&len) && in.Skip(static_cast<int>(len));
        break;
      case 5:  // 32-bit
        ok = in.Skip(4);
        break;
      default:  // groups: not in proto3
        ok = false;
    }
    if (!ok) break;
  }
  return out;
}

}  // namespace

void LogLine(const std::string& text) {
  std::cerr << absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ ", absl::Now(), absl::UTCTimeZone()) << text
            << std::endl;
}

bool IsTerminal(JobState s) {
  return s == distill::v1::SUCCEEDED || s == distill::v1::FAILED || s == distill::v1::CANCELLED;
}

int RanksOf(const distill::v1::JobSpec& spec, distill::v1::JobKind kind) {
  if (kind == distill::v1::CAPTURE) return common::WithDefaults(spec).student().ranks();
  return common::PlanRanks(common::WithDefaults(spec)).world();
}

Coordinator::Coordinator(CoordinatorOptions options, JobStore* store, Scheduler* scheduler,
                         Launcher* launcher, Metrics* metrics, const Clock* clock)
    : options_(std::move(options)),
      store_(store),
      scheduler_(scheduler),
      launcher_(launcher),
      metrics_(metrics),
      health_(options_.health, clock != nullptr ? clock : &real_clock_),
      rng_(std::random_device{}()),
      committer_(std::make_unique<GroupCommitter>(
          [this](std::vector<NewJob>& batch) { return CommitSubmissions(batch); })) {}

Coordinator::~Coordinator() {
  Stop();
  committer_.reset();  // commits what is queued before the members go
}

std::string Coordinator::WorkDir(const std::string& id, int attempt) const {
  return absl::StrCat(options_.state_dir, "/jobs/", id, "/attempt-", attempt);
}

std::string Coordinator::RankLogPath(const std::string& id, int attempt, int rank) const {
  return launcher_->RankLogPath(WorkDir(id, attempt), rank);
}

absl::Status Coordinator::Start() {
  std::error_code ec;
  fs::create_directories(fs::path(options_.state_dir) / "jobs", ec);
  if (ec)
    return absl::UnavailableError(
        absl::StrCat("cannot create ", options_.state_dir, "/jobs: ", ec.message()));
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(counts_, store_->CountJobs());
    const std::vector<JobState> live_states = {distill::v1::QUEUED, distill::v1::STARTING,
                                               distill::v1::RUNNING};
    ASSIGN_OR_RETURN(std::vector<JobRecord> live, store_->JobsInStates(live_states));
    for (JobRecord& rec : live) ReconcileLocked(std::move(rec));
    for (auto& [id, a] : active_) {
      if (a.rec.job.kind() == distill::v1::SWEEP) LoadSweepLocked(a);
    }
    SettleSweepsLocked();
    metrics_->SetJobCounts(counts_);
    stop_ = false;
  }
  loop_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void Coordinator::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  wake_.SignalAll();
  if (loop_.joinable()) loop_.join();
}

absl::Status Coordinator::WriteLocked(Active& a, const std::optional<EventInfo>& event) {
  *a.rec.job.mutable_update_time() = TimeUtil::GetCurrentTime();
  a.rec.job.set_queue_position(QueuePositionLocked(a.rec));
  const absl::Time start = absl::Now();
  absl::Status st = store_->UpdateJob(a.rec, event).status();
  metrics_->ObserveCommit(absl::ToDoubleSeconds(absl::Now() - start));
  RETURN_IF_ERROR(st);
  if (event) {
    NotifyLocked();
    if (event_listener_) event_listener_(a.rec.job.id());
  }
  return absl::OkStatus();
}

absl::Status Coordinator::Transition(Active& a, JobState to, FailureReason reason,
                                     const std::string& message) {
  const JobState from = a.rec.job.state();
  const bool sweep = a.rec.job.kind() == distill::v1::SWEEP;  // never in the queue index
  if (absl::Status legal = CheckTransition(from, to, a.rec.job.kind()); !legal.ok()) {
    LogLine(absl::StrCat("job ", a.rec.job.id(), ": ", legal.message()));
    return legal;
  }
  Active before = a;
  a.rec.job.set_state(to);
  if (IsTerminal(to)) {
    a.rec.job.set_failure_reason(reason);
    if (!message.empty() && to != distill::v1::SUCCEEDED) a.rec.job.set_failure_message(message);
    *a.rec.job.mutable_end_time() = TimeUtil::GetCurrentTime();
  }
  if (to == distill::v1::STARTING && !a.rec.job.has_start_time()) {
    *a.rec.job.mutable_start_time() = TimeUtil::GetCurrentTime();
  }
  // Leaving the queue: out of the queue index before the store says so, so
  // that a listing read off the lock (Note [Reads off the lock]) never
  // counts a started job ahead of the queued ones.
  if (from == distill::v1::QUEUED && !sweep) QueueEraseLocked(a.rec.job.priority(), a.rec.seq);
  absl::Status st = WriteLocked(a, EventInfo{JobEvent::STATE_CHANGED, message});
  if (!st.ok()) {
    if (from == distill::v1::QUEUED && !sweep)
      QueueInsertLocked(before.rec.job.priority(), before.rec.seq);
    a = std::move(before);
    LogLine(absl::StrCat("job ", a.rec.job.id(), ": cannot record ", StateName(from), " -> ",
                         StateName(to), ": ", st.message()));
    return st;
  }
  LogLine(absl::StrCat("job ", a.rec.job.id(), " ", StateName(from), " -> ", StateName(to),
                       message.empty() ? "" : ": ", message));
  if (to == distill::v1::QUEUED) QueueInsertLocked(a.rec.job.priority(), a.rec.seq);
  counts_[from]--;
  counts_[to]++;
  metrics_->SetJobCounts(counts_);
  if (to == distill::v1::FAILED && !sweep) metrics_->OnFailure(reason);
  if (IsTerminal(to) && !sweep) metrics_->OnFinish(to);
  if (!a.rec.job.parent_id().empty()) ChildChangedLocked(a.rec.job);
  return absl::OkStatus();
}

void Coordinator::QueueInsertLocked(int priority, int64_t seq) {
  absl::MutexLock lock(&queue_mu_);
  queue_.Insert(priority, seq);
}

void Coordinator::QueueEraseLocked(int priority, int64_t seq) {
  absl::MutexLock lock(&queue_mu_);
  queue_.Erase(priority, seq);
}

size_t Coordinator::QueueSize() const {
  absl::MutexLock lock(&queue_mu_);
  return queue_.size();
}

void Coordinator::NotifyLocked() {
  ++version_;
  changed_.SignalAll();
}

void Coordinator::SetEventListener(std::function<void(const std::string&)> listener) {
  absl::MutexLock lock(&mu_);
  event_listener_ = std::move(listener);
}

int64_t Coordinator::version() {
  absl::MutexLock lock(&mu_);
  return version_;
}

void Coordinator::WaitForChange(int64_t version, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const absl::Time deadline = absl::Now() + timeout;
  while (version_ <= version && !stop_) {
    if (changed_.WaitWithDeadline(&mu_, deadline)) break;  // timed out
  }
}

int Coordinator::QueuePositionLocked(const JobRecord& rec) const {
  if (rec.job.state() != distill::v1::QUEUED || rec.job.kind() == distill::v1::SWEEP) return 0;
  // Also right before Transition() enters the job (WriteLocked runs first).
  absl::MutexLock lock(&queue_mu_);
  return queue_.Position(rec.job.priority(), rec.seq);
}

Job Coordinator::DecorateLocked(const JobRecord& rec) const {
  Job job = rec.job;
  job.set_queue_position(QueuePositionLocked(rec));
  return job;
}

absl::StatusOr<Job> Coordinator::Get(const std::string& id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it != active_.end()) return DecorateLocked(it->second.rec);
  }
  // Not active: finished (its record never changes again) or unknown, so
  // the store read needs no lock (jobs enter active_ in the same critical
  // section as their first write).
  ASSIGN_OR_RETURN(JobRecord rec, store_->GetJob(id));
  rec.job.set_queue_position(0);
  return std::move(rec.job);
}

// Note [Reads off the lock]: the store read runs without mu_. Every write
// commits before the call that made it returns (and under mu_, with the
// in-memory change), so a read started afterwards sees it: a listing is a
// committed snapshot at least as new as the caller's last write. Only the
// queue positions, which depend on the whole queue, are computed, under
// queue_mu_ alone (never held across a store write, unlike mu_).
absl::StatusOr<std::vector<Job>> Coordinator::List(JobState state, int64_t before_seq, int limit,
                                                   std::vector<int64_t>* seqs) {
  ASSIGN_OR_RETURN(std::vector<JobRecord> recs, store_->ListJobs(state, before_seq, limit));
  // A job started since the snapshot keeps the place it had.
  bool any_queued = false;
  for (JobRecord& r : recs) {
    r.job.set_queue_position(0);
    any_queued = any_queued || r.job.state() == distill::v1::QUEUED;
  }
  if (any_queued) {
    absl::MutexLock lock(&queue_mu_);
    for (JobRecord& r : recs) {
      if (r.job.state() == distill::v1::QUEUED && r.job.kind() != distill::v1::SWEEP)
        r.job.set_queue_position(queue_.Position(r.job.priority(), r.seq));
    }
  }
  std::vector<Job> jobs;
  jobs.reserve(recs.size());
  for (JobRecord& r : recs) {
    if (seqs) seqs->push_back(r.seq);
    jobs.push_back(std::move(r.job));
  }
  return jobs;
}

absl::StatusOr<std::vector<Coordinator::ListedJob>> Coordinator::ListSerialized(
    JobState state, int64_t before_seq, int limit, size_t max_bytes, bool* more) {
  ASSIGN_OR_RETURN(std::vector<SerializedJob> stored,
                   store_->ListSerializedJobs(state, before_seq, limit, max_bytes, more));
  std::vector<ListedJob> out(stored.size());
  for (size_t i = 0; i < stored.size(); ++i) out[i].stored = std::move(stored[i]);
  // Note [Reads off the lock], as in List().
  std::vector<ListedFields> fields(out.size());
  bool any_queued = false;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i].stored.state != distill::v1::QUEUED) continue;
    fields[i] = ListedFieldsOf(out[i].stored.job);
    any_queued = any_queued || fields[i].kind != distill::v1::SWEEP;
  }
  if (any_queued) {
    absl::MutexLock lock(&queue_mu_);
    for (size_t i = 0; i < out.size(); ++i) {
      if (out[i].stored.state == distill::v1::QUEUED && fields[i].kind != distill::v1::SWEEP)
        out[i].queue_position = queue_.Position(fields[i].priority, out[i].stored.seq);
    }
  }
  return out;
}

absl::StatusOr<std::vector<JobEvent>> Coordinator::Events(const std::string& id,
                                                          int64_t after_sequence, int limit) {
  return store_->ListEvents(id, after_sequence, limit);
}

absl::StatusOr<Job> Coordinator::Cancel(const std::string& id, bool force) {
  absl::MutexLock lock(&mu_);
  auto it = active_.find(id);
  if (it == active_.end()) {
    ASSIGN_OR_RETURN(JobRecord rec, store_->GetJob(id));
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id, " already ended (", StateName(rec.job.state()), ")"));
  }
  absl::StatusOr<Job> job = it->second.rec.job.kind() == distill::v1::SWEEP
                                ? CancelSweepLocked(it->second, force)
                                : CancelLocked(it->second, force);
  SettleSweepsLocked();  // a sweep may end with its children
  if (!job.ok()) return job;
  it = active_.find(id);
  if (it != active_.end()) return DecorateLocked(it->second.rec);
  ASSIGN_OR_RETURN(JobRecord rec, store_->GetJob(id));
  return std::move(rec.job);
}

absl::StatusOr<Job> Coordinator::CancelLocked(Active& a, bool force) {
  const std::string id = a.rec.job.id();
  if (a.rec.job.state() == distill::v1::QUEUED) {
    a.rec.cancel_requested = true;
    RETURN_IF_ERROR(Transition(a, distill::v1::CANCELLED, distill::v1::CANCEL_REQUESTED,
                               "cancelled while queued"));
    Job job = a.rec.job;
    active_.erase(id);
    return job;
  }
  // STARTING or RUNNING: record the request, then signal; the job becomes
  // CANCELLED when its processes have exited (AttemptEndedLocked).
  if (a.rec.cancel_requested && (a.rec.cancel_force || !force)) return DecorateLocked(a.rec);
  a.rec.cancel_requested = true;
  a.rec.cancel_force = a.rec.cancel_force || force;
  RETURN_IF_ERROR(WriteLocked(a, std::nullopt));
  LogLine(absl::StrCat("job ", id, ": cancel requested", force ? " (force)" : ""));
  launcher_->Terminate(a.rec.launch_pid, WorkDir(id, a.rec.job.attempt()), force);
  health_.Terminating(a.health, force);
  return DecorateLocked(a.rec);
}

absl::Status Coordinator::Report(const distill::v1::ProgressReport& report) {
  absl::MutexLock lock(&mu_);
  auto it = active_.find(report.job_id());
  if (it == active_.end()) {
    ASSIGN_OR_RETURN(JobRecord rec, store_->GetJob(report.job_id()));
    return absl::FailedPreconditionError(absl::StrCat("job ", report.job_id(), " is not running (",
                                                      StateName(rec.job.state()), ")"));
  }
  Active& a = it->second;
  const JobState state = a.rec.job.state();
  if (a.rec.job.kind() == distill::v1::SWEEP) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", report.job_id(), " is a sweep: its children report"));
  }
  if (state == distill::v1::QUEUED || report.attempt() != a.rec.job.attempt()) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", report.job_id(), ": attempt ", report.attempt(),
                     " is not the running attempt (", a.rec.job.attempt(), ")"));
  }
  if (report.rank() < 0 || report.rank() >= a.rec.job.ranks()) {
    return absl::InvalidArgumentError(absl::StrCat("job ", report.job_id(), " has ", a.rec.job.ranks(),
                                                   " ranks: no rank ", report.rank()));
  }
  health_.Reported(a.health, report.rank(), report.final(),
                   report.has_step() ? std::optional<int64_t>(report.step()) : std::nullopt);
  metrics_->OnReport(report, absl::ToDoubleSeconds(health_.Now() - absl::UnixEpoch()));
  // The job's progress is student 0's (its losses are the students' means);
  // every rank's goes to the metrics.
  const bool has_progress = report.has_progress() && report.rank() == 0;
  if (has_progress) *a.rec.job.mutable_progress() = report.progress();
  if (state == distill::v1::STARTING) {
    absl::Status st = Transition(a, distill::v1::RUNNING, distill::v1::FAILURE_REASON_UNSPECIFIED,
                                 absl::StrCat("rank ", report.rank(), " reported"));
    SettleSweepsLocked();
    return st;
  }
  if (!has_progress) return absl::OkStatus();
  const distill::v1::Progress& p = report.progress();
  return WriteLocked(
      a, EventInfo{JobEvent::PROGRESS,
                   absl::StrFormat("step %d/%d loss %.4f", p.step(), p.total_steps(), p.loss())});
}

}  // namespace distill::coordinator
