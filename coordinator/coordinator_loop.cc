// The coordinator's control loop: reconciliation after a restart, process
// polling, timeouts, retries and launches (the API half is coordinator.cc).
#include <algorithm>
#include <filesystem>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/fs_util.h"
#include "common/plan.h"
#include "coordinator/coordinator.h"
#include "google/protobuf/util/json_util.h"

namespace distill::coordinator {
namespace {

namespace fs = std::filesystem;
using distill::v1::FailureReason;
using distill::v1::JobState;

// Job.hosts entries are "HOST:SLOTS".
std::vector<std::string> HostsOf(const Allocation& a) {
  std::vector<std::string> out;
  for (const HostSlots& hs : a) out.push_back(absl::StrCat(hs.host, ":", hs.slots));
  return out;
}

Allocation AllocationOf(const distill::v1::Job& job) {
  Allocation a;
  for (const std::string& h : job.hosts()) {
    size_t colon = h.rfind(':');
    int n = 0;
    if (colon == std::string::npos || !absl::SimpleAtoi(h.substr(colon + 1), &n)) continue;
    a.push_back({h.substr(0, colon), n});
  }
  if (a.empty()) a.push_back({"localhost", job.ranks()});
  return a;
}

// A rank by its role: "rank 2 (teacher stage 0)".
std::string RankName(const distill::v1::Job& job, int rank) {
  const common::RankPlan plan = common::PlanRanks(common::WithDefaults(job.spec()));
  if (rank < 0 || rank >= plan.world()) return absl::StrCat("rank ", rank);
  return plan.RankNames()[rank];
}

// What failed, naming ranks by role and the host: "rank 2 (teacher stage 0)
// on host H: exit code 17", or "host H (rank 2 (teacher stage 0), rank 3
// (teacher stage 1)) lost contact with its daemon"; then the launch's detail.
std::string DescribeFailure(const LaunchStatus& st, const distill::v1::Job& job) {
  if (st.failed_how.empty()) return st.detail;
  std::vector<std::string> ranks;
  for (int r : st.failed_ranks) ranks.push_back(RankName(job, r));
  const std::string host = st.failed_host.empty() ? "an unknown host" : st.failed_host;
  if (st.host_lost) {
    return absl::StrCat("host ", host, ranks.empty() ? "" : " (", absl::StrJoin(ranks, ", "),
                        ranks.empty() ? "" : ")", " ", st.failed_how, " (", st.detail, ")");
  }
  return absl::StrCat(ranks.empty() ? "a rank" : absl::StrJoin(ranks, ", "), " on host ", host,
                      ": ", st.failed_how, " (", st.detail, ")");
}

}  // namespace

void Coordinator::Loop() {
  mu_.Lock();
  while (!stop_) {
    mu_.Unlock();
    Tick();
    ExpireIfDue();
    mu_.Lock();
    if (stop_) break;
    wake_.WaitWithTimeout(&mu_, options_.tick);
  }
  mu_.Unlock();
}

// A job found STARTING/RUNNING in the store after a restart: adopt its
// launch if the processes still run, else end the attempt (exit code from
// the launch's exit_code file, or WORKER_LOST).
void Coordinator::ReconcileLocked(JobRecord rec) {
  const std::string id = rec.job.id();
  Active& a = active_[id];
  a.rec = std::move(rec);
  // Never launched: Start() rebuilds it from its children (LoadSweepLocked).
  if (a.rec.job.kind() == distill::v1::SWEEP) return;
  health_.Launched(a.health);
  if (a.rec.job.state() == distill::v1::QUEUED) {
    QueueInsertLocked(a.rec.job.priority(), a.rec.seq);
    return;
  }
  const std::string dir = WorkDir(id, a.rec.job.attempt());
  // Crashed between writing STARTING and recording the launch id: the
  // launch wrote it into the work dir.
  if (a.rec.launch_pid == 0) a.rec.launch_pid = launcher_->RecordedLaunchId(dir);
  LaunchStatus st;
  if (a.rec.launch_pid == 0) {
    st.state = LaunchStatus::kVanished;
    st.detail = "the coordinator stopped before the launch started";
  } else {
    st = launcher_->Poll(a.rec.launch_pid, dir);
  }
  if (st.state == LaunchStatus::kRunning) {
    scheduler_->Reserve(id, AllocationOf(a.rec.job)).IgnoreError();
    LogLine(absl::StrCat("job ", id, " adopted: attempt ", a.rec.job.attempt(),
                         " still running (launch ", a.rec.launch_pid, ")"));
    metrics_->OnStart(a.rec.job, /*launched=*/false);
    if (a.rec.cancel_requested) {
      launcher_->Terminate(a.rec.launch_pid, dir, a.rec.cancel_force);
      health_.Terminating(a.health, a.rec.cancel_force);
    }
    return;
  }
  if (st.state == LaunchStatus::kVanished) {
    a.pending_reason = distill::v1::WORKER_LOST;
    st.detail = absl::StrCat(st.detail, " (found after a coordinator restart)");
  }
  AttemptEndedLocked(id, st);
}

void Coordinator::Tick() {
  absl::MutexLock lock(&mu_);
  if (stop_) return;
  // Attempts whose processes ended.
  std::vector<std::pair<std::string, LaunchStatus>> ended;
  for (auto& [id, a] : active_) {
    const JobState s = a.rec.job.state();
    if (s != distill::v1::STARTING && s != distill::v1::RUNNING) continue;
    if (a.rec.job.kind() == distill::v1::SWEEP) continue;
    LaunchStatus st = launcher_->Poll(a.rec.launch_pid, WorkDir(id, a.rec.job.attempt()));
    if (st.state != LaunchStatus::kRunning) ended.emplace_back(id, st);
    if (st.queued) health_.Queued(a.health);
  }
  for (const auto& [id, st] : ended) AttemptEndedLocked(id, st);
  CheckTimeoutsLocked();
  RestoreHostsLocked();
  SettleSweepsLocked();  // before scheduling: a finished capture frees its siblings
  ScheduleLocked(health_.Now());
  SettleSweepsLocked();
}

void Coordinator::CheckTimeoutsLocked() {
  for (auto& [id, a] : active_) {
    if (a.rec.job.kind() == distill::v1::SWEEP) continue;
    const std::string dir = WorkDir(id, a.rec.job.attempt());
    const JobState state = a.rec.job.state();
    const HealthMonitor::Phase phase =
        state == distill::v1::RUNNING    ? HealthMonitor::Phase::kRunning
        : state == distill::v1::STARTING ? HealthMonitor::Phase::kStarting
                                         : HealthMonitor::Phase::kOther;
    HealthMonitor::Finding finding;
    const HealthMonitor::Verdict verdict = health_.Check(a.health, phase, &finding);
    switch (verdict) {
      case HealthMonitor::Verdict::kHealthy:
        continue;
      case HealthMonitor::Verdict::kKillAgain:
        LogLine(absl::StrCat("job ", id, ": still running after SIGTERM, SIGKILL"));
        launcher_->Terminate(a.rec.launch_pid, dir, /*force=*/true);
        continue;
      case HealthMonitor::Verdict::kHeartbeatTimeout:
        a.pending_reason = distill::v1::HEARTBEAT_TIMEOUT;
        break;
      case HealthMonitor::Verdict::kStartTimeout:
        a.pending_reason = distill::v1::START_TIMEOUT;
        break;
      case HealthMonitor::Verdict::kProgressTimeout:
        a.pending_reason = distill::v1::PROGRESS_TIMEOUT;
        break;
    }
    a.pending_message = finding.rank < 0
                            ? finding.why
                            : absl::StrCat(RankName(a.rec.job, finding.rank), " ", finding.why);
    LogLine(absl::StrCat("job ", id, ": ", a.pending_message, ", killing attempt ",
                         a.rec.job.attempt()));
    launcher_->Terminate(a.rec.launch_pid, dir, /*force=*/true);
  }
}

void Coordinator::AttemptEndedLocked(const std::string& id, const LaunchStatus& status) {
  auto it = active_.find(id);
  if (it == active_.end()) return;
  Active& a = it->second;
  JobRecord before = a.rec;  // restored when the write fails (Note [Write before act])
  a.rec.job.set_exit_code(status.exit_code);
  a.rec.launch_pid = 0;
  const int attempt = a.rec.job.attempt();
  JobState to;
  FailureReason reason = distill::v1::FAILURE_REASON_UNSPECIFIED;
  std::string message;
  bool retry = false;
  if (a.rec.cancel_requested) {
    to = distill::v1::CANCELLED;
    reason = distill::v1::CANCEL_REQUESTED;
    message = absl::StrCat("cancelled (attempt ", attempt, ": ", status.detail, ")");
  } else if (status.state == LaunchStatus::kExited && status.exit_code == 0 &&
             a.pending_reason == distill::v1::FAILURE_REASON_UNSPECIFIED) {
    to = distill::v1::SUCCEEDED;
    message = absl::StrCat("attempt ", attempt, " finished");
  } else {
    reason = FailedAttemptLocked(a, status, &message, &retry);
    to = retry ? distill::v1::QUEUED : distill::v1::FAILED;
  }
  absl::Duration backoff;
  if (retry) {
    backoff = health_.RetryBackoff(attempt);
    a.rec.not_before_ms = absl::ToUnixMillis(health_.Now() + backoff);
    absl::StrAppend(&message, "; retry ", attempt, "/", a.rec.job.max_retries(), " in ",
                    absl::FormatDuration(backoff), " from the last checkpoint");
  }
  if (!Transition(a, to, retry ? distill::v1::FAILURE_REASON_UNSPECIFIED : reason, message).ok()) {
    // Nothing changed: the next tick polls the same launch and tries again.
    a.rec = std::move(before);
    return;
  }
  // Acted on only after the write (Note [Write before act]).
  if (reason == distill::v1::HOST_LOST && !status.failed_host.empty()) {
    HostDownLocked(status.failed_host, absl::StrCat("job ", id, " attempt ", attempt));
  }
  scheduler_->Release(id);
  metrics_->ForgetJob(id);
  if (retry) metrics_->OnRetry(reason);
  health_.Ended(a.health);
  a.pending_reason = distill::v1::FAILURE_REASON_UNSPECIFIED;
  a.pending_message.clear();
  if (IsTerminal(to)) active_.erase(it);
}

distill::v1::FailureReason Coordinator::FailedAttemptLocked(Active& a, const LaunchStatus& status,
                                                            std::string* message, bool* retry) {
  const std::string& id = a.rec.job.id();
  const int attempt = a.rec.job.attempt();
  FailureReason reason = a.pending_reason != distill::v1::FAILURE_REASON_UNSPECIFIED
                             ? a.pending_reason
                         : status.state == LaunchStatus::kVanished ? distill::v1::WORKER_LOST
                         : status.host_lost                        ? distill::v1::HOST_LOST
                                                                   : distill::v1::RANK_FAILED;
  std::string why =
      a.pending_message.empty() ? DescribeFailure(status, a.rec.job) : a.pending_message;
  std::string cause;  // Note [Failure classes]
  if (reason == distill::v1::RANK_FAILED) {
    const std::string dir = WorkDir(id, attempt);
    int rank = -1;
    const std::string line = AttemptErrorLine(
        status, a.rec.job.ranks(), [&](int r) { return launcher_->RankLogPath(dir, r); }, &rank);
    if (!line.empty()) {
      absl::StrAppend(&why, "; ",
                      status.failed_ranks.empty() ? RankName(a.rec.job, rank) + ": " : "", line);
    }
    FailureMark mark;
    for (const auto& [r, s] : a.health.steps) mark.step = std::max(mark.step, s.step);
    mark.how = status.failed_how.empty()
                   ? status.detail
                   : absl::StrCat(absl::StrJoin(status.failed_ranks, ","), ": ", status.failed_how);
    cause = DeterministicCause(status, line, mark, a.last_failure);
    a.last_failure = mark;
    if (!cause.empty()) reason = distill::v1::DETERMINISTIC;
  }
  *message = absl::StrCat("attempt ", attempt, " failed: ", distill::v1::FailureReason_Name(reason),
                          ": ", why, cause.empty() ? "" : "; not retried: ", cause, "; logs in ",
                          WorkDir(id, attempt));
  *retry = cause.empty() && attempt <= a.rec.job.max_retries();
  return reason;
}

// Note [Lost hosts]: an attempt that lost a host (mpirun lost its daemon
// there, or ssh could not start one) marks it down: the scheduler places no
// job on it for host_down_for (nor does the launcher: the Slurm launcher
// --exclude's it), so the retry runs on the hosts that remain (or waits for
// enough of them). Then it is tried again: a host still dead
// fails one more attempt and is marked down again. Not persisted: a
// restarted coordinator tries every host.
void Coordinator::HostDownLocked(const std::string& host, const std::string& by) {
  const absl::Time until = health_.Now() + health_.options().host_down_for;
  down_hosts_[host] = until;
  scheduler_->SetHostDown(host, true);
  launcher_->SetHostDown(host, true);
  LogLine(absl::StrCat("host ", host, " is down (lost by ", by, "): no jobs there for ",
                       absl::FormatDuration(health_.options().host_down_for)));
}

void Coordinator::RestoreHostsLocked() {
  const absl::Time now = health_.Now();
  for (auto it = down_hosts_.begin(); it != down_hosts_.end();) {
    if (it->second > now) {
      ++it;
      continue;
    }
    scheduler_->SetHostDown(it->first, false);
    launcher_->SetHostDown(it->first, false);
    LogLine(absl::StrCat("host ", it->first, " is tried again"));
    it = down_hosts_.erase(it);
  }
}

// Note [One writer per output]: two jobs that write one output directory
// at once would mix their checkpoints and models, so the scheduler starts a
// job only while no STARTING or RUNNING job has its output_dir; it waits
// (QUEUED, reserving nothing) until that one ends. Then the worker decides
// whether it may write there (Note [Output ownership] in
// common/output_owner.h): the same spec again resumes, another run fails
// DETERMINISTIC naming the owner.
void Coordinator::ScheduleLocked(absl::Time now) {
  // Every job needs a slot: with none free, skip building and sorting the
  // queue (O(n log n) under mu_, which would stall the RPCs every tick).
  if (QueueSize() == 0 || scheduler_->free_slots() == 0) return;
  std::vector<QueuedJob> queue;
  const int64_t now_ms = absl::ToUnixMillis(now);
  // Note [One writer per output]: a job waits while another job writes its
  // output directory.
  std::set<std::string> busy;
  for (const auto& [id, a] : active_) {
    const JobState s = a.rec.job.state();
    if ((s == distill::v1::STARTING || s == distill::v1::RUNNING) &&
        a.rec.job.kind() != distill::v1::SWEEP && !a.rec.job.output_dir().empty()) {
      busy.insert(a.rec.job.output_dir());
    }
  }
  for (const auto& [id, a] : active_) {
    if (a.rec.job.state() != distill::v1::QUEUED) continue;
    // Note [Sweep follows children]: a sweep and a child waiting for its
    // capture are not runnable, so they never reserve the cluster.
    if (a.rec.job.kind() == distill::v1::SWEEP || a.blocked) continue;
    if (busy.count(a.rec.job.output_dir()) > 0) continue;
    queue.push_back(
        {id, a.rec.job.ranks(), a.rec.job.priority(), a.rec.seq, a.rec.not_before_ms <= now_ms});
  }
  if (queue.empty()) return;
  for (const auto& [id, allocation] : scheduler_->Schedule(queue)) {
    Active& a = active_.at(id);
    // Two queued jobs of one output placed at once: the first one starts.
    if (!a.rec.job.output_dir().empty() && !busy.insert(a.rec.job.output_dir()).second) {
      scheduler_->Release(id);
      continue;
    }
    StartAttemptLocked(a, allocation);
  }
}

void Coordinator::StartAttemptLocked(Active& a, const Allocation& allocation) {
  const std::string id = a.rec.job.id();
  JobRecord before = a.rec;  // restored when the write fails (Note [Write before act])
  a.rec.job.set_attempt(a.rec.job.attempt() + 1);
  a.rec.job.clear_hosts();
  for (const std::string& h : HostsOf(allocation)) a.rec.job.add_hosts(h);
  a.rec.launch_pid = 0;
  a.rec.not_before_ms = 0;
  const int attempt = a.rec.job.attempt();
  const std::string dir = WorkDir(id, attempt);
  if (!Transition(a, distill::v1::STARTING, distill::v1::FAILURE_REASON_UNSPECIFIED,
                  absl::StrCat("launching attempt ", attempt, " on ",
                               absl::StrJoin(HostsOf(allocation), ",")))
           .ok()) {
    a.rec = std::move(before);
    scheduler_->Release(id);
    return;
  }
  // The worker's spec: the submitted spec as JSON (which is YAML), field
  // names as in job.proto, enums by name.
  std::string json;
  google::protobuf::util::JsonPrintOptions print;
  print.preserve_proto_field_names = true;
  print.add_whitespace = true;
  absl::Status st;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) st = absl::UnavailableError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  const std::string spec_path = dir + "/spec.json";
  if (st.ok()) {
    auto js = google::protobuf::util::MessageToJsonString(a.rec.job.spec(), &json, print);
    if (!js.ok()) st = absl::InternalError(absl::StrCat("spec to JSON: ", js.ToString()));
  }
  if (st.ok()) st = common::WriteFileAtomically(spec_path, json);
  absl::StatusOr<int64_t> pid = absl::UnknownError("not launched");
  if (!st.ok()) {
    pid = st;
  } else {
    LaunchSpec spec;
    spec.job_id = id;
    spec.attempt = attempt;
    spec.ranks = a.rec.job.ranks();
    spec.allocation = allocation;
    spec.work_dir = dir;
    spec.spec_path = spec_path;
    if (a.rec.job.kind() == distill::v1::CAPTURE) spec.command = "capture";
    if (!options_.report_address.empty()) spec.env["DISTILL_COORDINATOR"] = options_.report_address;
    spec.env["DISTILL_JOB_ID"] = id;
    spec.env["DISTILL_ATTEMPT"] = absl::StrCat(attempt);
    if (!options_.auth_token.empty()) spec.env["DISTILL_AUTH_TOKEN"] = options_.auth_token;
    const bool roots = !options_.data_root.empty() && !options_.output_root.empty();
    if (roots) {
      spec.env["DISTILL_DATA_ROOT"] = options_.data_root;
      spec.env["DISTILL_OUTPUT_ROOT"] = options_.output_root;
    }
    spec.env["DISTILL_CACHE_DIR"] =
        roots ? (fs::path(options_.output_root) / ".distill-cache").string()
              : (fs::absolute(options_.state_dir) / "cache").string();
    if (!options_.report_ca_file.empty())
      spec.env["DISTILL_COORDINATOR_CA"] = options_.report_ca_file;
    pid = launcher_->Launch(spec);
  }
  if (!pid.ok()) {
    if (Transition(a, distill::v1::FAILED, distill::v1::LAUNCH_FAILED,
                   std::string(pid.status().message()))
            .ok()) {
      scheduler_->Release(id);
      active_.erase(id);
    }
    return;
  }
  a.rec.launch_pid = *pid;
  health_.Launched(a.health);
  metrics_->OnStart(a.rec.job, /*launched=*/true);
  if (!WriteLocked(a, std::nullopt).ok()) {
    LogLine(
        absl::StrCat("job ", id, ": could not record launch pid ", *pid, " (the pid file has it)"));
  }
}

}  // namespace distill::coordinator
