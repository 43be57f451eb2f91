// HealthMonitor on a FakeClock: heartbeat, start and progress timeouts
// (Note [Liveness by progress]), the kill schedule of a terminating attempt
// and the retry backoff, at the exact instants the policy names (no sleeps).
#include "coordinator/health_monitor.h"

#include <gtest/gtest.h>

#include <string>

namespace distill::coordinator {
namespace {

using Verdict = HealthMonitor::Verdict;
using Phase = HealthMonitor::Phase;

class HealthMonitorTest : public ::testing::Test {
 protected:
  HealthMonitorTest() : monitor_(Options(), &clock_) {}
  static HealthOptions Options() {
    HealthOptions o;
    o.heartbeat_timeout = absl::Seconds(60);
    o.grace_period = absl::Seconds(30);
    o.retry_backoff = absl::Seconds(2);
    o.start_timeout = absl::Minutes(10);
    o.progress_timeout = absl::Seconds(30);
    return o;
  }
  Verdict Check(Phase phase = Phase::kRunning) {
    HealthMonitor::Finding f;
    const Verdict v = monitor_.Check(health_, phase, &f);
    why_ = f.why;
    rank_ = f.rank;
    return v;
  }
  // A report of `rank` at `step` (a student's).
  void Step(int rank, int64_t step) { monitor_.Reported(health_, rank, false, step); }

  FakeClock clock_;
  HealthMonitor monitor_;
  JobHealth health_;
  std::string why_;
  int rank_ = -1;
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

TEST_F(HealthMonitorTest, StartingAttemptsHaveTheStartTimeoutOnly) {
  monitor_.Launched(health_);
  clock_.Advance(absl::Minutes(10));
  EXPECT_EQ(Check(Phase::kStarting), Verdict::kHealthy);  // mpirun may be slow
  EXPECT_EQ(Check(Phase::kOther), Verdict::kHealthy);
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_EQ(Check(Phase::kStarting), Verdict::kStartTimeout);
  EXPECT_EQ(why_, "no rank reported within 10m0.001s of the launch (start timeout 10m)");
  EXPECT_TRUE(health_.terminating);
}

// A launch waiting in its launcher's queue (a pending Slurm job) is not
// starting yet: the start timeout counts from when it leaves the queue.
TEST_F(HealthMonitorTest, TheStartTimeoutWaitsForTheLaunchersQueue) {
  monitor_.Launched(health_);
  clock_.Advance(absl::Hours(3));
  monitor_.Queued(health_);
  clock_.Advance(absl::Minutes(10));
  EXPECT_EQ(Check(Phase::kStarting), Verdict::kHealthy);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(Check(Phase::kStarting), Verdict::kStartTimeout);
}

// Note [Liveness by progress]: heartbeats keep coming (the reporting thread
// lives) but rank 1's step stays at 3: the attempt is killed naming rank 1,
// the one that stopped first (rank 0 is at a later step).
TEST_F(HealthMonitorTest, AStepThatDoesNotAdvanceTimesOutNamingTheRank) {
  monitor_.Launched(health_);
  Step(0, 3);
  Step(1, 3);
  clock_.Advance(absl::Seconds(1));
  Step(0, 4);
  for (int i = 0; i < 29; ++i) {  // to 30 s after rank 1's step 3
    clock_.Advance(absl::Seconds(1));
    Step(0, 4);
    Step(1, 3);  // heartbeats with the same step
    EXPECT_EQ(Check(), Verdict::kHealthy) << i;
  }
  clock_.Advance(absl::Seconds(1));
  Step(0, 4);
  Step(1, 3);
  EXPECT_EQ(Check(), Verdict::kProgressTimeout);
  EXPECT_EQ(rank_, 1);
  EXPECT_EQ(why_, "still at step 3 after 31s (progress timeout 30s)");
  EXPECT_TRUE(health_.terminating);
}

// Of ranks stuck at one step, the one that stopped reporting (a stopped
// process) is named, not the one waiting for it in a collective.
TEST_F(HealthMonitorTest, OfStuckRanksTheSilentOneIsNamed) {
  monitor_.Launched(health_);
  Step(0, 5);
  Step(1, 5);
  for (int i = 0; i < 31; ++i) {
    clock_.Advance(absl::Seconds(1));
    Step(0, 5);  // rank 1 is silent from now on
  }
  EXPECT_EQ(Check(), Verdict::kProgressTimeout);
  EXPECT_EQ(rank_, 1);
}

// The timeout grows to kSlowStepFactor times the slowest step seen between
// two observed changes; the setup before the first change does not count.
TEST_F(HealthMonitorTest, TheProgressTimeoutFollowsTheSlowestStep) {
  monitor_.Launched(health_);
  Step(0, 0);
  clock_.Advance(absl::Minutes(20));  // setup: not a step
  Step(0, 1);
  EXPECT_EQ(monitor_.ProgressTimeout(health_), absl::Seconds(30));
  clock_.Advance(absl::Seconds(7));
  Step(0, 2);
  clock_.Advance(absl::Seconds(4));
  Step(0, 3);
  EXPECT_EQ(monitor_.ProgressTimeout(health_), absl::Seconds(70));
  clock_.Advance(absl::Seconds(70));
  Step(0, 3);
  EXPECT_EQ(Check(), Verdict::kHealthy);
  clock_.Advance(absl::Seconds(1));
  Step(0, 3);
  EXPECT_EQ(Check(), Verdict::kProgressTimeout);
  EXPECT_EQ(why_, "still at step 3 after 1m11s (progress timeout 1m10s)");
  // A new attempt starts from the configured floor again.
  monitor_.Ended(health_);
  EXPECT_EQ(monitor_.ProgressTimeout(health_), absl::Seconds(30));
}

// A rank without a step (a teacher rank's heartbeats) is not timed by
// progress; a student that advances is healthy however long it runs.
TEST_F(HealthMonitorTest, RanksWithoutStepsAreNotTimedByProgress) {
  monitor_.Launched(health_);
  for (int i = 0; i < 100; ++i) {
    clock_.Advance(absl::Seconds(1));
    Step(0, i);
    monitor_.Reported(health_, 2, false, std::nullopt);  // a teacher rank
    EXPECT_EQ(Check(), Verdict::kHealthy) << i;
  }
  EXPECT_EQ(health_.steps.count(2), 0u);
}

TEST_F(HealthMonitorTest, TheOldestSilentRankCounts) {
  monitor_.Launched(health_);
  monitor_.Reported(health_, 0, false, std::nullopt);
  monitor_.Reported(health_, 1, false, std::nullopt);
  clock_.Advance(absl::Seconds(50));
  monitor_.Reported(health_, 0, false, std::nullopt);  // rank 1 stays silent
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(Check(), Verdict::kHealthy);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(Check(), Verdict::kHeartbeatTimeout);
  EXPECT_EQ(why_, "no progress report for 1m1s (heartbeat timeout 1m)");
}

TEST_F(HealthMonitorTest, AFinalReportEndsTheTiming) {
  monitor_.Launched(health_);
  monitor_.Reported(health_, 1, false, std::nullopt);
  monitor_.Reported(health_, 0, /*final=*/true, std::nullopt);
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
