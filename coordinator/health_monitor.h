// HealthMonitor: the heartbeat and retry policy of the coordinator's running
// attempts, on an injected Clock. It decides; the Coordinator acts (signals
// the launch, writes the state) under its own lock. A JobHealth is one
// attempt's liveness record, kept beside the job by the Coordinator and
// changed only through the monitor's methods.
//
// Policy: a RUNNING attempt whose oldest non-final rank (or the launch, when
// no rank has reported yet) has been silent for longer than the heartbeat
// timeout is killed (HEARTBEAT_TIMEOUT); once a rank reports its last step
// the attempt is no longer timed. A terminating attempt gets SIGKILL after
// the grace period of a graceful cancel (at once when forced), repeated every
// kKillRetry until it exits. Retry n waits retry_backoff * 2^(n-1), at most
// kMaxBackoff.
//
// Threads: the methods are const and keep no state of their own; callers
// serialize access to each JobHealth (the Coordinator holds its mu_).
#ifndef DISTILL_COORDINATOR_HEALTH_MONITOR_H_
#define DISTILL_COORDINATOR_HEALTH_MONITOR_H_

#include <map>
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
};

// One attempt's liveness (see HealthMonitor).
struct JobHealth {
  absl::Time last_heartbeat;              // launch, adoption or latest report
  std::map<int, absl::Time> rank_report;  // rank -> latest report (non-final)
  bool saw_final = false;                 // a rank reported its last step
  bool terminating = false;               // signals sent, waiting for exit
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
  // A rank reported (a heartbeat); `final`: its last step.
  void Reported(JobHealth& h, int rank, bool final) const;
  // Signals were sent: SIGKILL follows after the grace period (forced: at
  // once on the next check, after kKillRetry).
  void Terminating(JobHealth& h, bool force) const;
  // The attempt ended: the record is reset for a next attempt.
  void Ended(JobHealth& h) const;

  enum class Verdict {
    kHealthy,           // nothing to do
    kKillAgain,         // terminating and past its deadline: SIGKILL (again)
    kHeartbeatTimeout,  // silent too long: kill it (the record is now terminating)
  };
  // Checks one attempt (`running`: its job is RUNNING). On kHeartbeatTimeout
  // *why says for how long it was silent; on kKillAgain and kHeartbeatTimeout
  // the next SIGKILL is scheduled.
  Verdict Check(JobHealth& h, bool running, std::string* why) const;

  // The wait before retry `attempt` (1 for the first retry).
  absl::Duration RetryBackoff(int attempt) const;

 private:
  const HealthOptions options_;
  const Clock* const clock_;
};

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_HEALTH_MONITOR_H_
