// HealthMonitor on a FakeClock: heartbeat timeouts, the kill schedule of a
// terminating attempt and the retry backoff, at the exact instants the
// policy names (no sleeps).
#include "coordinator/health_monitor.h"

#include <gtest/gtest.h>

#include <string>

namespace distill::coordinator {
namespace {

using Verdict = HealthMonitor::Verdict;

class HealthMonitorTest : public ::testing::Test {
 protected:
  HealthMonitorTest() : monitor_(Options(), &clock_) {}
  static HealthOptions Options() {
    HealthOptions o;
    o.heartbeat_timeout = absl::Seconds(60);
    o.grace_period = absl::Seconds(30);
    o.retry_backoff = absl::Seconds(2);
    return o;
  }
  Verdict Check(bool running = true) {
    why_.clear();
    return monitor_.Check(health_, running, &why_);
  }

  FakeClock clock_;
  HealthMonitor monitor_;
  JobHealth health_;
  std::string why_;
};

TEST_F(HealthMonitorTest, SilentRunningAttemptTimesOutJustAfterTheTimeout) {
  monitor_.Launched(health_);
  clock_.Advance(absl::Seconds(60));
  EXPECT_EQ(Check(), Verdict::kHealthy);  // exactly the timeout: not yet
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_EQ(Check(), Verdict::kHeartbeatTimeout);
  EXPECT_EQ(why_, "no progress report for 1m0.001s (heartbeat timeout 1m)");
  EXPECT_TRUE(health_.terminating);
  EXPECT_EQ(health_.kill_deadline, clock_.Now() + HealthMonitor::kKillRetry);
  // Now terminating: no second timeout, SIGKILL again every kKillRetry.
  EXPECT_EQ(Check(), Verdict::kHealthy);
  clock_.Advance(HealthMonitor::kKillRetry);
  EXPECT_EQ(Check(), Verdict::kKillAgain);
  EXPECT_EQ(Check(), Verdict::kHealthy);
  clock_.Advance(HealthMonitor::kKillRetry);
  EXPECT_EQ(Check(), Verdict::kKillAgain);
}

TEST_F(HealthMonitorTest, OnlyRunningAttemptsAreTimed) {
  monitor_.Launched(health_);
  clock_.Advance(absl::Hours(1));
  EXPECT_EQ(Check(/*running=*/false), Verdict::kHealthy);  // STARTING: mpirun may be slow
  EXPECT_FALSE(health_.terminating);
}

TEST_F(HealthMonitorTest, TheOldestSilentRankCounts) {
  monitor_.Launched(health_);
  monitor_.Reported(health_, 0, false);
  monitor_.Reported(health_, 1, false);
  clock_.Advance(absl::Seconds(50));
  monitor_.Reported(health_, 0, false);  // rank 1 stays silent
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(Check(), Verdict::kHealthy);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(Check(), Verdict::kHeartbeatTimeout);
  EXPECT_EQ(why_, "no progress report for 1m1s (heartbeat timeout 1m)");
}

TEST_F(HealthMonitorTest, AFinalReportEndsTheTiming) {
  monitor_.Launched(health_);
  monitor_.Reported(health_, 1, false);
  monitor_.Reported(health_, 0, /*final=*/true);
  EXPECT_TRUE(health_.saw_final);
  EXPECT_EQ(health_.rank_report.count(0), 0u);
  clock_.Advance(absl::Hours(1));
  EXPECT_EQ(Check(), Verdict::kHealthy);
  // The next attempt is timed again.
  monitor_.Ended(health_);
  monitor_.Launched(health_);
  clock_.Advance(absl::Seconds(61));
  EXPECT_EQ(Check(), Verdict::kHeartbeatTimeout);
}

TEST_F(HealthMonitorTest, GracefulCancelKillsAfterTheGracePeriodForcedAfterKillRetry) {
  monitor_.Launched(health_);
  monitor_.Terminating(health_, /*force=*/false);
  clock_.Advance(absl::Seconds(30) - absl::Milliseconds(1));
  EXPECT_EQ(Check(), Verdict::kHealthy);
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_EQ(Check(), Verdict::kKillAgain);

  JobHealth forced;
  monitor_.Launched(forced);
  monitor_.Terminating(forced, /*force=*/true);
  EXPECT_EQ(forced.kill_deadline, clock_.Now() + HealthMonitor::kKillRetry);
  monitor_.Ended(forced);
  EXPECT_FALSE(forced.terminating);
  EXPECT_EQ(forced.kill_deadline, absl::InfiniteFuture());
}

TEST_F(HealthMonitorTest, RetryBackoffDoublesUpToFiveMinutes) {
  EXPECT_EQ(monitor_.RetryBackoff(1), absl::Seconds(2));
  EXPECT_EQ(monitor_.RetryBackoff(2), absl::Seconds(4));
  EXPECT_EQ(monitor_.RetryBackoff(3), absl::Seconds(8));
  EXPECT_EQ(monitor_.RetryBackoff(8), absl::Seconds(256));
  EXPECT_EQ(monitor_.RetryBackoff(9), absl::Minutes(5));
  EXPECT_EQ(monitor_.RetryBackoff(1000), absl::Minutes(5));
}

}  // namespace
}  // namespace distill::coordinator
