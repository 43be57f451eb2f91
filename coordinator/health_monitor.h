// HealthMonitor: the heartbeat and retry policy of the coordinator's running
// attempts, on an injected Clock. It decides; the Coordinator acts (signals
// the launch, writes the state) under its own lock. A JobHealth is one
// attempt's liveness record, kept beside the job by the Coordinator and
// changed only through the monitor's methods.
//
// Policy: a RUNNING attempt whose oldest non-final rank (or the launch, when
// no rank has reported yet) has been silent for longer than the heartbeat
// timeout is killed (HEARTBEAT_TIMEOUT); once a rank reports its last step
// the attempt is no longer timed. A STARTING attempt that no rank has
// reported from within the start timeout of its launch (counted from when it
// left the launcher's own queue: a pending Slurm job) is killed
// (START_TIMEOUT).
//
// Note [Liveness by progress]: a heartbeat says a rank's process lives, not
// that it trains (the reports come from a thread of their own, which goes on
// while the training thread hangs in a collective or a read). So every rank
// that reports a step (the students) is also timed by its step: a rank whose
// step has not changed for longer than the progress timeout is killed
// (PROGRESS_TIMEOUT), naming the rank and its step. The timeout is the
// larger of --progress-timeout and kSlowStepFactor times the slowest step
// seen in the attempt (between two step changes that this attempt observed,
// so setup before the first step, which may be long, does not count), so a
// job of slow steps is not killed for being slow. A terminating attempt gets SIGKILL after
// the grace period of a graceful cancel (at once when forced), repeated every
// kKillRetry until it exits. Retry n waits retry_backoff * 2^(n-1), at most
// kMaxBackoff.
//
// Threads: the methods are const and keep no state of their own; callers
// serialize access to each JobHealth (the Coordinator holds its mu_).
#ifndef DISTILL_COORDINATOR_HEALTH_MONITOR_H_
#define DISTILL_COORDINATOR_HEALTH_MONITOR_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "coordinator/clock.h"

namespace distill::coordinator {

struct HealthOptions {
  // A RUNNING attempt silent for longer than this is killed and retried. Too
  // short kills jobs with slow steps.
  absl::Duration heartbeat_timeout = absl::Seconds(60);
  // Between SIGTERM (checkpoint and exit) and SIGKILL on a graceful cancel.
  absl::Duration grace_period = absl::Seconds(30);
  // Wait before the first retry; doubles per retry, at most kMaxBackoff.
  absl::Duration retry_backoff = absl::Seconds(2);
  // Note [Lost hosts]: a host that an attempt lost (its daemon lost or not
  // startable) gets no job for this long, then is tried again. Longer keeps
  // a dead host from costing more retries; shorter returns a rebooted one
  // sooner.
  absl::Duration host_down_for = absl::Minutes(5);
  // A STARTING attempt with no report for this long is killed and retried.
  absl::Duration start_timeout = absl::Minutes(10);
  // Note [Liveness by progress]: the least time a rank's step may stay the
  // same. Longer tolerates a longer setup before the first step (loading
  // the model, tokenizing the data) and long evals.
  absl::Duration progress_timeout = absl::Minutes(30);
};

// One attempt's liveness (see HealthMonitor).
struct JobHealth {
  absl::Time launched;                    // launch, adoption, or leaving the launcher's queue
  absl::Time last_heartbeat;              // launch, adoption or latest report
  std::map<int, absl::Time> rank_report;  // rank -> latest report (non-final)
  // Note [Liveness by progress]: each non-final rank's step and since when.
  struct RankStep {
    int64_t step = 0;
    absl::Time since;
    bool changed = false;  // seen to change in this attempt
  };
  std::map<int, RankStep> steps;
  absl::Duration slowest_step;  // the longest time between two observed step changes
  bool saw_final = false;       // a rank reported its last step
  bool terminating = false;     // signals sent, waiting for exit
  // Next SIGKILL of a terminating attempt.
  absl::Time kill_deadline = absl::InfiniteFuture();
};

class HealthMonitor {
 public:
  // SIGKILL is repeated this often until a terminated launch has exited
  // (a launch signalled between fork and exec may miss the first one).
  static constexpr absl::Duration kKillRetry = absl::Seconds(5);
  static constexpr absl::Duration kMaxBackoff = absl::Minutes(5);

  // `clock` must outlive the monitor.
  HealthMonitor(HealthOptions options, const Clock* clock) : options_(options), clock_(clock) {}

  absl::Time Now() const { return clock_->Now(); }
  const HealthOptions& options() const { return options_; }

  // A launch began or was adopted: a fresh record, its heartbeat now.
  void Launched(JobHealth& h) const;
  // The launch waits in its launcher's queue: the start timeout waits too.
  void Queued(JobHealth& h) const { h.launched = Now(); }
  // A rank reported (a heartbeat); `final`: its last step; `step`: the step it
  // is at, when it trains (a teacher rank's heartbeat has none).
  void Reported(JobHealth& h, int rank, bool final, std::optional<int64_t> step) const;
  // Signals were sent: SIGKILL follows after the grace period (forced: at
  // once on the next check, after kKillRetry).
  void Terminating(JobHealth& h, bool force) const;
  // The attempt ended: the record is reset for a next attempt.
  void Ended(JobHealth& h) const;

  enum class Verdict {
    kHealthy,    // nothing to do
    kKillAgain,  // terminating and past its deadline: SIGKILL (again)
    // Kill it (the record is now terminating):
    kHeartbeatTimeout,  // silent too long
    kStartTimeout,      // STARTING too long
    kProgressTimeout,   // a rank's step stayed the same too long
  };
  enum class Phase { kOther, kStarting, kRunning };
  // What a timeout found: why, in words ("no progress report for 2m ..."),
  // and the rank it names (kProgressTimeout), else -1.
  struct Finding {
    std::string why;
    int rank = -1;
  };
  // Checks one attempt in `phase` (its job's state). On a timeout *finding
  // says what; on kKillAgain and the timeouts the next SIGKILL is scheduled.
  Verdict Check(JobHealth& h, Phase phase, Finding* finding) const;

  // Note [Liveness by progress]: the progress timeout of `h` now.
  absl::Duration ProgressTimeout(const JobHealth& h) const;
  static constexpr int kSlowStepFactor = 10;

  // The wait before retry `attempt` (1 for the first retry).
  absl::Duration RetryBackoff(int attempt) const;

 private:
  const HealthOptions options_;
  const Clock* const clock_;
};

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_HEALTH_MONITOR_H_
