// Coordinator: the job lifecycle. Ties the store, the scheduler and the
// launcher together: accepts submissions, starts queued jobs on free slots,
// watches their processes and heartbeats, retries failed attempts and
// cancels on request. Every state transition happens in Transition().
//
// Note [Write before act]: a state change is written to the JobStore (with
// its event) before the coordinator acts on it (launches, signals, frees
// slots), so after a crash the store never claims less than happened; Start()
// reconciles the store with the processes that are (or are not) still there.
//
// Note [Group commit]: submissions are written in batches, one transaction
// for all the jobs submitted while the previous batch committed, by the
// GroupCommitter's writer thread; a submitter's answer (SubmitAsync's done)
// comes after the commit that holds its job. The batch is written and its
// jobs enter active_ in one critical section of mu_, as every other write.
//
// Note [Sweep follows children]: a sweep (kind SWEEP) is a persisted job
// that is never launched. Its children are ordinary jobs (TRAIN, CAPTURE)
// written in the same transaction; every child's transition marks its
// parent, and SettleSweepsLocked() then moves the parent (QUEUED until a
// child starts, RUNNING, and at the end SUCCEEDED, FAILED or CANCELLED) and
// releases or fails the children that wait for the sweep's teacher capture
// (DEPENDENCY_FAILED). A waiting child is not schedulable, so Note [No
// starvation] never lets it reserve the cluster. After a restart the parent's
// view is rebuilt from the store (Note [Write before act]).
//
// Threads: public methods are thread-safe (one mutex, mu_, around the
// in-memory state and every store write; the lock rules are ABSL_GUARDED_BY
// annotations that clang's -Wthread-safety checks); store reads (List, Get of
// a finished job, Events) run without it, and List's queue positions take
// only queue_mu_. The control loop runs on a thread of its own started by
// Start(), the group commit on another. Specs must be validated by the caller
// (the service) before SubmitAsync().
#ifndef DISTILL_COORDINATOR_COORDINATOR_H_
#define DISTILL_COORDINATOR_COORDINATOR_H_

#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "coordinator/attempt_failure.h"
#include "coordinator/clock.h"
#include "coordinator/group_commit.h"
#include "coordinator/health_monitor.h"
#include "coordinator/job_store.h"
#include "coordinator/launcher.h"
#include "coordinator/metrics.h"
#include "coordinator/queue_index.h"
#include "coordinator/scheduler.h"

namespace distill::coordinator {

struct CoordinatorOptions {
  // Job work directories (spec, logs, exit codes) go under STATE_DIR/jobs/ID.
  std::string state_dir = "./var";
  // Address the ranks report progress to (DISTILL_COORDINATOR); empty = none.
  std::string report_address;
  // PEM file the ranks verify the coordinator's TLS certificate with
  // (DISTILL_COORDINATOR_CA, an absolute path readable on every host); empty =
  // the report address serves plaintext.
  std::string report_ca_file;
  // Token the ranks present (DISTILL_AUTH_TOKEN); empty = no auth.
  std::string auth_token;
  // The service's roots, which the ranks open every file beneath
  // (DISTILL_DATA_ROOT, DISTILL_OUTPUT_ROOT: Note [Confinement at use] in
  // common/confine.h); empty = anywhere. Their tokenized caches go to
  // OUTPUT_ROOT/.distill-cache, or STATE_DIR/cache without roots
  // (DISTILL_CACHE_DIR: Note [Cache directory] in worker/data/text_source.h).
  std::string data_root;
  std::string output_root;
  // Retries of a failed attempt when the submission does not say.
  int max_retries = 2;
  // Heartbeat timeout, cancel grace period, retry backoff (HealthMonitor).
  HealthOptions health;
  // Control loop period (process polling, timeouts, scheduling).
  absl::Duration tick = absl::Milliseconds(200);
  // Note [Retention]: a finished job is deleted (Delete()) this long after it
  // ended; zero keeps jobs forever. Long enough to look back at a month's
  // runs, short enough that the store and STATE_DIR/jobs stay bounded.
  absl::Duration retention = absl::Hours(24 * 30);
};

class Coordinator {
 public:
  // The collaborators must outlive the coordinator. `clock` times heartbeats,
  // cancels and retries (null: the real clock).
  Coordinator(CoordinatorOptions options, JobStore* store, Scheduler* scheduler, Launcher* launcher,
              Metrics* metrics, const Clock* clock = nullptr);
  ~Coordinator();

  // The address the ranks report to (DISTILL_COORDINATOR). Before Start().
  void SetReportAddress(const std::string& address) { options_.report_address = address; }

  // Reconciles the store with running processes (adopting live launches,
  // retrying or failing vanished ones) and starts the control loop.
  absl::Status Start() ABSL_LOCKS_EXCLUDED(mu_);
  // Stops the control loop. Running jobs keep running (a restart adopts them).
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // Queues a validated spec (idempotent on request_id) and calls `done` with
  // the stored job (for a spec with a sweep: the parent, with its children
  // created in the same commit; request.kind CAPTURE: a capture job), or
  // the error
  // once the job is committed (Note [Group
  // commit]): on the group commit's thread, or at once on the caller's for a
  // request refused before any write. FailedPrecondition when the job needs
  // more slots than the inventory has. `done` must not block.
  void SubmitAsync(const distill::v1::SubmitJobRequest& request,
                   std::function<void(absl::StatusOr<distill::v1::Job>)> done)
      ABSL_LOCKS_EXCLUDED(mu_);
  // SubmitAsync(), waiting for the commit (never from a `done` callback).
  absl::StatusOr<distill::v1::Job> Submit(const distill::v1::SubmitJobRequest& request);
  absl::StatusOr<distill::v1::Job> Get(const std::string& id) ABSL_LOCKS_EXCLUDED(mu_);
  // Newest first; seq < before_seq when before_seq > 0. *seqs (optional)
  // gets each returned job's creation seq.
  absl::StatusOr<std::vector<distill::v1::Job>> List(distill::v1::JobState state,
                                                     int64_t before_seq, int limit,
                                                     std::vector<int64_t>* seqs)
      ABSL_LOCKS_EXCLUDED(queue_mu_);
  // List() without parsing the jobs (ListJobs answers with their bytes):
  // each job as stored, with the queue position List() would give it.
  struct ListedJob {
    SerializedJob stored;
    int queue_position = 0;
  };
  // As JobStore::ListSerializedJobs (max_bytes, *more).
  absl::StatusOr<std::vector<ListedJob>> ListSerialized(distill::v1::JobState state,
                                                        int64_t before_seq, int limit,
                                                        size_t max_bytes, bool* more)
      ABSL_LOCKS_EXCLUDED(queue_mu_);
  // FailedPrecondition for a finished job; NotFound for an unknown one. A
  // sweep's cancel cancels every unfinished child; a child's only itself.
  absl::StatusOr<distill::v1::Job> Cancel(const std::string& id, bool force)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Deletes a finished job, its events and its work directory
  // (STATE_DIR/jobs/ID; never its output) and returns it as it was. A sweep
  // goes with its children. FailedPrecondition for an unfinished job, a sweep
  // with an unfinished child, or a sweep's child (delete the sweep);
  // NotFound for an unknown one. The store's rows go in one transaction
  // first (a crash then leaves the job whole, or a work directory that the
  // next start removes: Note [Retention]).
  absl::StatusOr<distill::v1::Job> Delete(const std::string& id) ABSL_LOCKS_EXCLUDED(mu_);
  // Note [Retention]: deletes up to `limit` jobs that ended before
  // now - retention (none when retention is zero); returns how many.
  int DeleteExpired(absl::Time now, int limit) ABSL_LOCKS_EXCLUDED(mu_);

  // One progress report of a rank (also its heartbeat). NotFound for an
  // unknown job, FailedPrecondition for a finished job or a stale attempt.
  absl::Status Report(const distill::v1::ProgressReport& report) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::vector<distill::v1::JobEvent>> Events(const std::string& id,
                                                            int64_t after_sequence, int limit);

  // Change notification for watchers: version() grows with every write;
  // WaitForChange returns when it exceeds `version` or after `timeout`.
  int64_t version() ABSL_LOCKS_EXCLUDED(mu_);
  void WaitForChange(int64_t version, absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);
  // Note [Watch fan-out] (watch_hub.h): `listener` gets the id of each job
  // that got an event, called under the coordinator's lock once the event is
  // written, so it must not block or call back. Null: none.
  void SetEventListener(std::function<void(const std::string& job_id)> listener)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The work directory of attempt `attempt` of job `id`, and a rank's log.
  std::string WorkDir(const std::string& id, int attempt) const;
  std::string RankLogPath(const std::string& id, int attempt, int rank) const;

  // One pass of the control loop (the thread calls it every tick).
  void Tick() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Active {
    JobRecord rec;
    JobHealth health;  // the attempt's liveness, through health_ only
    distill::v1::FailureReason pending_reason = distill::v1::FAILURE_REASON_UNSPECIFIED;
    std::string pending_message;
    // Note [Failure classes]: how the attempt before failed, if a rank failed.
    std::optional<FailureMark> last_failure;
    // A sweep's child that waits for the sweep's teacher capture.
    bool blocked = false;
    // A sweep: each child's latest state, and its capture child (if any).
    std::map<std::string, distill::v1::JobState> children;
    std::string capture_id;
  };

  // Note [Write before act]: writes the new state (and an event) first;
  // returns the store's error without changing anything in memory. A change
  // the lifecycle table (job_states.h) does not allow is refused the same way.
  absl::Status Transition(Active& a, distill::v1::JobState to, distill::v1::FailureReason reason,
                          const std::string& message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WriteLocked(Active& a, const std::optional<EventInfo>& event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartAttemptLocked(Active& a, const Allocation& allocation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AttemptEndedLocked(const std::string& id, const LaunchStatus& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The reason and message of a failed attempt (Note [Failure classes]);
  // *retry: whether it is retried.
  distill::v1::FailureReason FailedAttemptLocked(Active& a, const LaunchStatus& status,
                                                 std::string* message, bool* retry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Heartbeat timeouts and overdue SIGKILLs (HealthMonitor::Check).
  void CheckTimeoutsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Note [Lost hosts]: `host` gets no jobs for host_down_for (`by` names the
  // attempt that lost it, for the log); RestoreHostsLocked ends that.
  void HostDownLocked(const std::string& host, const std::string& by)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RestoreHostsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ScheduleLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReconcileLocked(JobRecord rec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The parts of a submission (coordinator_sweep.cc for sweeps).
  absl::Status CheckSubmission(const distill::v1::SubmitJobRequest& request, int ranks) const;
  JobRecord NewRecord(const distill::v1::SubmitJobRequest& request,
                      const distill::v1::JobSpec& spec, distill::v1::JobKind kind, int ranks) const;
  void SubmitSweepAsync(const distill::v1::SubmitJobRequest& request,
                        std::function<void(absl::StatusOr<distill::v1::Job>)> done)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Puts a committed job into active_ (and the queue index unless a sweep).
  Active& EnterLocked(JobRecord rec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Note [Sweep follows children]: records a child's new state in its parent.
  void ChildChangedLocked(const distill::v1::Job& child) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SettleSweepsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ResolveCaptureLocked(Active& sweep) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FollowChildrenLocked(Active& sweep) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After a restart: a live sweep's children states from active_ and the store.
  void LoadSweepLocked(Active& sweep) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<distill::v1::Job> CancelLocked(Active& a, bool force)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<distill::v1::Job> CancelSweepLocked(Active& sweep, bool force)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The group commit of a batch of submissions (ids are assigned here).
  std::vector<absl::StatusOr<distill::v1::Job>> CommitSubmissions(std::vector<NewJob>& batch)
      ABSL_LOCKS_EXCLUDED(mu_);
  // queue_ changes (under mu_ and queue_mu_).
  void QueueInsertLocked(int priority, int64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_)
      ABSL_LOCKS_EXCLUDED(queue_mu_);
  void QueueEraseLocked(int priority, int64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_)
      ABSL_LOCKS_EXCLUDED(queue_mu_);
  distill::v1::Job DecorateLocked(const JobRecord& rec) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // 1-based place of a QUEUED job in the queue order (0 for other states).
  int QueuePositionLocked(const JobRecord& rec) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_)
      ABSL_LOCKS_EXCLUDED(queue_mu_);
  // The number of QUEUED jobs.
  size_t QueueSize() const ABSL_LOCKS_EXCLUDED(queue_mu_);
  void NotifyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);
  // Note [Retention] (coordinator_retention.cc), on the loop's thread.
  void ExpireIfDue() ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::vector<std::string>> DeletableLocked(const JobRecord& rec) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveWorkDirs(const std::vector<std::string>& ids) const;
  void RemoveOrphanWorkDirs() const;

  CoordinatorOptions options_;
  JobStore* const store_;
  Scheduler* const scheduler_;
  Launcher* const launcher_;
  Metrics* const metrics_;
  const RealClock real_clock_;  // when no clock is given
  const HealthMonitor health_;

  mutable absl::Mutex mu_;
  absl::CondVar changed_;  // version_ grew
  absl::CondVar wake_;     // the loop should run now (or stop)
  // QUEUED, STARTING, RUNNING.
  std::map<std::string, Active> active_ ABSL_GUARDED_BY(mu_);
  // The QUEUED jobs of active_, kept in step by CommitSubmissions(),
  // Transition() and ReconcileLocked() so that queue positions need no sort.
  // Written under both mu_ and queue_mu_ (in that order); every access takes
  // queue_mu_, so List() needs only it, and it is never held for long.
  mutable absl::Mutex queue_mu_ ABSL_ACQUIRED_AFTER(mu_);
  QueueIndex queue_ ABSL_GUARDED_BY(queue_mu_);
  std::map<distill::v1::JobState, int> counts_ ABSL_GUARDED_BY(mu_);
  // Note [Lost hosts]: hosts left out of scheduling, and until when.
  std::map<std::string, absl::Time> down_hosts_ ABSL_GUARDED_BY(mu_);
  // Sweeps with a child that changed state since SettleSweepsLocked().
  std::set<std::string> dirty_sweeps_ ABSL_GUARDED_BY(mu_);
  int64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  std::function<void(const std::string&)> event_listener_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  std::thread loop_;
  // Note [Retention]: the next pass (the loop's thread only; InfinitePast
  // until the first, which also removes orphan work directories).
  absl::Time next_expiry_ = absl::InfinitePast();
  // Last: its writer thread calls CommitSubmissions(), so it stops first.
  std::unique_ptr<GroupCommitter> committer_;
};

// Writes one timestamped line to stderr (the coordinator's state-change log).
void LogLine(const std::string& text);

// Whether a state is terminal (SUCCEEDED, FAILED, CANCELLED).
bool IsTerminal(distill::v1::JobState state);

// The ranks a spec needs: `ranks` (finetune, default 1) or teacher.ranks +
// student.ranks (distill; defaults 0 and 1); a CAPTURE job runs on
// student.ranks.
int RanksOf(const distill::v1::JobSpec& spec, distill::v1::JobKind kind = distill::v1::TRAIN);

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_COORDINATOR_H_
