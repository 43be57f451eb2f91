#include "coordinator/health_monitor.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace distill::coordinator {

void HealthMonitor::Launched(JobHealth& h) const {
  h = JobHealth();
  h.last_heartbeat = Now();
}

void HealthMonitor::Reported(JobHealth& h, int rank, bool final) const {
  const absl::Time now = Now();
  h.last_heartbeat = now;
  if (final) {
    h.saw_final = true;
    h.rank_report.erase(rank);
  } else {
    h.rank_report[rank] = now;
  }
}

void HealthMonitor::Terminating(JobHealth& h, bool force) const {
  h.terminating = true;
  h.kill_deadline = Now() + (force ? kKillRetry : options_.grace_period);
}

void HealthMonitor::Ended(JobHealth& h) const {
  h.terminating = false;
  h.kill_deadline = absl::InfiniteFuture();
  h.rank_report.clear();
  h.saw_final = false;
}

HealthMonitor::Verdict HealthMonitor::Check(JobHealth& h, bool running, std::string* why) const {
  const absl::Time now = Now();
  if (h.terminating) {
    if (now < h.kill_deadline) return Verdict::kHealthy;
    h.kill_deadline = now + kKillRetry;
    return Verdict::kKillAgain;
  }
  if (!running || h.saw_final) return Verdict::kHealthy;
  absl::Time oldest = h.last_heartbeat;
  for (const auto& [rank, t] : h.rank_report) oldest = std::min(oldest, t);
  if (now - oldest <= options_.heartbeat_timeout) return Verdict::kHealthy;
  *why = absl::StrCat("no progress report for ", absl::FormatDuration(now - oldest),
                      " (heartbeat timeout ", absl::FormatDuration(options_.heartbeat_timeout), ")");
  h.terminating = true;
  h.kill_deadline = now + kKillRetry;
  return Verdict::kHeartbeatTimeout;
}

absl::Duration HealthMonitor::RetryBackoff(int attempt) const {
  return std::min(options_.retry_backoff * (1 << std::min(attempt - 1, 16)), kMaxBackoff);
}

}  // namespace distill::coordinator
