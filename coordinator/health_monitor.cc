#include "coordinator/health_monitor.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace distill::coordinator {
namespace {

// The rank a progress timeout names among the stuck ones: the lowest step,
// then the one silent longest (a stopped process), then the one stuck longest.
int StuckRank(const JobHealth& h, absl::Time now, absl::Duration timeout) {
  int best = -1;
  std::tuple<int64_t, absl::Time, absl::Time> best_key;
  for (const auto& [rank, s] : h.steps) {
    if (now - s.since <= timeout) continue;
    auto it = h.rank_report.find(rank);
    const absl::Time heard = it == h.rank_report.end() ? s.since : it->second;
    const auto key = std::make_tuple(s.step, heard, s.since);
    if (best < 0 || key < best_key) {
      best = rank;
      best_key = key;
    }
  }
  return best;
}

}  // namespace

void HealthMonitor::Launched(JobHealth& h) const {
  h = JobHealth();
  h.launched = Now();
  h.last_heartbeat = h.launched;
}

void HealthMonitor::Reported(JobHealth& h, int rank, bool final,
                             std::optional<int64_t> step) const {
  const absl::Time now = Now();
  h.last_heartbeat = now;
  if (final) {
    h.saw_final = true;
    h.rank_report.erase(rank);
    h.steps.erase(rank);
    return;
  }
  h.rank_report[rank] = now;
  if (!step) return;
  auto it = h.steps.find(rank);
  if (it == h.steps.end()) {
    h.steps[rank] = JobHealth::RankStep{*step, now, false};
  } else if (it->second.step != *step) {
    if (it->second.changed) h.slowest_step = std::max(h.slowest_step, now - it->second.since);
    it->second = JobHealth::RankStep{*step, now, true};
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
  h.steps.clear();
  h.slowest_step = absl::ZeroDuration();
  h.saw_final = false;
}

absl::Duration HealthMonitor::ProgressTimeout(const JobHealth& h) const {
  return std::max(options_.progress_timeout, kSlowStepFactor * h.slowest_step);
}

HealthMonitor::Verdict HealthMonitor::Check(JobHealth& h, Phase phase, Finding* finding) const {
  const absl::Time now = Now();
  if (h.terminating) {
    if (now < h.kill_deadline) return Verdict::kHealthy;
    h.kill_deadline = now + kKillRetry;
    return Verdict::kKillAgain;
  }
  Verdict verdict = Verdict::kHealthy;
  if (phase == Phase::kStarting && now - h.launched > options_.start_timeout) {
    finding->why = absl::StrCat("no rank reported within ", absl::FormatDuration(now - h.launched),
                                " of the launch (start timeout ",
                                absl::FormatDuration(options_.start_timeout), ")");
    verdict = Verdict::kStartTimeout;
  }
  if (phase == Phase::kRunning && !h.saw_final) {
    absl::Time oldest = h.last_heartbeat;
    for (const auto& [rank, t] : h.rank_report) oldest = std::min(oldest, t);
    const absl::Duration progress = ProgressTimeout(h);
    const int stuck = StuckRank(h, now, progress);
    if (now - oldest > options_.heartbeat_timeout) {
      finding->why = absl::StrCat("no progress report for ", absl::FormatDuration(now - oldest),
                                  " (heartbeat timeout ",
                                  absl::FormatDuration(options_.heartbeat_timeout), ")");
      verdict = Verdict::kHeartbeatTimeout;
    } else if (stuck >= 0) {
      const JobHealth::RankStep& s = h.steps.at(stuck);
      finding->rank = stuck;
      finding->why =
          absl::StrCat("still at step ", s.step, " after ", absl::FormatDuration(now - s.since),
                       " (progress timeout ", absl::FormatDuration(progress), ")");
      verdict = Verdict::kProgressTimeout;
    }
  }
  if (verdict != Verdict::kHealthy) {
    h.terminating = true;
    h.kill_deadline = now + kKillRetry;
  }
  return verdict;
}

absl::Duration HealthMonitor::RetryBackoff(int attempt) const {
  return std::min(options_.retry_backoff * (1 << std::min(attempt - 1, 16)), kMaxBackoff);
}

}  // namespace distill::coordinator
