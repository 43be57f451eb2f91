// WorkerMetrics: counters from a rank's growing totals (deltas, a new attempt
// or a restarted process starting over), job gauges from rank 0 only, the
// step histogram, and Forget. Read back through the registry's exposition.
#include "common/worker_metrics.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "prometheus/text_serializer.h"

namespace distill::common {
namespace {

using distill::v1::Progress;

class WorkerMetricsTest : public ::testing::Test {
 protected:
  std::string Text() const { return prometheus::TextSerializer().Serialize(registry_->Collect()); }
  // The value of the sample line that starts with `series` + " ", or -1.
  double Value(const std::string& series) const {
    const std::string text = Text();
    const size_t at = text.find("\n" + series + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + series.size() + 2));
  }
  static Progress Totals(int64_t steps, int64_t tokens, double compute_s) {
    Progress p;
    p.set_step(steps);
    p.set_total_steps(100);
    p.mutable_rank_totals()->set_steps(steps);
    p.mutable_rank_totals()->set_tokens(tokens);
    p.mutable_rank_totals()->set_compute_seconds(compute_s);
    return p;
  }

  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  WorkerMetrics metrics_{*registry_};
};

TEST_F(WorkerMetricsTest, CountersFollowTheTotalsAcrossReportsAttemptsAndRestarts) {
  metrics_.Observe("j1", 0, 1, Totals(2, 200, 1.5));
  metrics_.Observe("j1", 0, 1, Totals(5, 500, 4.0));  // a lost report in between loses nothing
  EXPECT_EQ(Value(R"(distill_tokens_total{job_id="j1",rank="0"})"), 500);
  EXPECT_EQ(Value(R"(distill_steps_total{job_id="j1",rank="0"})"), 5);
  EXPECT_EQ(Value(R"(distill_step_phase_seconds_total{job_id="j1",phase="compute",rank="0"})"), 4.0);
  // Attempt 2 restarts from a checkpoint: its totals start from zero again,
  // and the counter keeps growing.
  metrics_.Observe("j1", 0, 2, Totals(1, 100, 0.5));
  EXPECT_EQ(Value(R"(distill_tokens_total{job_id="j1",rank="0"})"), 600);
  // The same attempt's process restarted (totals went down): counted from zero.
  metrics_.Observe("j1", 0, 2, Totals(3, 300, 1.0));
  metrics_.Observe("j1", 0, 2, Totals(1, 50, 0.2));
  EXPECT_EQ(Value(R"(distill_tokens_total{job_id="j1",rank="0"})"), 850);
}

TEST_F(WorkerMetricsTest, JobGaugesComeFromRankZeroAndRanksKeepTheirOwnSeries) {
  Progress p0 = Totals(10, 1000, 2.0);
  p0.set_loss(2.5);
  p0.set_ce_loss(1.5);
  p0.set_kd_loss(1.0);
  (*p0.mutable_feature_losses())["s1_t3"] = 0.25;
  p0.set_lr(3e-4);
  p0.set_memory_bytes(1 << 20);
  p0.set_mfu(0.4);
  p0.set_eval_step(10);
  p0.set_eval_loss(2.75);
  p0.set_eval_kl(0.5);
  p0.set_eval_top1_agreement(0.6);
  Progress p1 = Totals(10, 990, 2.5);
  p1.set_loss(99);  // rank 1's job values are ignored
  p1.set_lr(1);
  metrics_.Observe("j", 0, 1, p0);
  metrics_.Observe("j", 1, 1, p1);
  EXPECT_EQ(Value(R"(distill_loss{component="total",job_id="j"})"), 2.5);
  EXPECT_EQ(Value(R"(distill_loss{component="kd",job_id="j"})"), 1.0);
  EXPECT_EQ(Value(R"(distill_loss{component="feature_s1_t3",job_id="j"})"), 0.25);
  EXPECT_EQ(Value(R"(distill_learning_rate{job_id="j"})"), 3e-4);
  EXPECT_EQ(Value(R"(distill_job_progress_ratio{job_id="j"})"), 0.1);
  EXPECT_EQ(Value(R"(distill_eval_kl{job_id="j"})"), 0.5);
  EXPECT_EQ(Value(R"(distill_eval_top1_agreement{job_id="j"})"), 0.6);
  EXPECT_EQ(Value(R"(distill_mfu_ratio{job_id="j",rank="0"})"), 0.4);
  EXPECT_EQ(Value(R"(distill_host_memory_peak_bytes{job_id="j",rank="0"})"), 1 << 20);
  EXPECT_EQ(Value(R"(distill_tokens_total{job_id="j",rank="1"})"), 990);
  // Unknown peak (mfu 0), no CUDA, no stream: those series are absent.
  EXPECT_EQ(Text().find(R"(distill_mfu_ratio{job_id="j",rank="1"})"), std::string::npos);
  EXPECT_EQ(Text().find("distill_gpu_memory_peak_bytes{"), std::string::npos);
  EXPECT_EQ(Text().find("distill_teacher_stream_bytes_total{"), std::string::npos);
}

TEST_F(WorkerMetricsTest, TheStepHistogramAddsTheRanksBucketCounts) {
  Progress p = Totals(3, 300, 1.0);
  for (double s : {0.004, 0.3, 700.0}) AddStepDuration(s, p.mutable_rank_totals());
  metrics_.Observe("j", 0, 1, p);
  AddStepDuration(0.3, p.mutable_rank_totals());
  metrics_.Observe("j", 0, 1, p);
  EXPECT_EQ(Value(R"(distill_step_duration_seconds_bucket{job_id="j",rank="0",le="0.01"})"), 1);
  EXPECT_EQ(Value(R"(distill_step_duration_seconds_bucket{job_id="j",rank="0",le="0.25"})"), 1);
  EXPECT_EQ(Value(R"(distill_step_duration_seconds_bucket{job_id="j",rank="0",le="0.5"})"), 3);
  EXPECT_EQ(Value(R"(distill_step_duration_seconds_bucket{job_id="j",rank="0",le="600"})"), 3);
  EXPECT_EQ(Value(R"(distill_step_duration_seconds_bucket{job_id="j",rank="0",le="+Inf"})"), 4);
  EXPECT_EQ(Value(R"(distill_step_duration_seconds_count{job_id="j",rank="0"})"), 4);
  EXPECT_NEAR(Value(R"(distill_step_duration_seconds_sum{job_id="j",rank="0"})"), 700.604, 1e-9);
}

TEST_F(WorkerMetricsTest, ForgetDropsEveryOneOfTheJobsSeriesAndNoOtherJobs) {
  metrics_.Observe("gone", 0, 1, Totals(1, 10, 0.1));
  metrics_.Observe("gone", 1, 1, Totals(1, 10, 0.1));
  metrics_.Observe("kept", 0, 1, Totals(1, 10, 0.1));
  metrics_.Forget("gone");
  EXPECT_EQ(Text().find("\"gone\""), std::string::npos) << Text();
  EXPECT_EQ(Value(R"(distill_tokens_total{job_id="kept",rank="0"})"), 10);
  // A job that reports again after Forget starts its counters over.
  metrics_.Observe("gone", 0, 1, Totals(2, 20, 0.2));
  EXPECT_EQ(Value(R"(distill_tokens_total{job_id="gone",rank="0"})"), 20);
}

TEST_F(WorkerMetricsTest, ARankThatHasNotSteppedHasNoSeries) {
  metrics_.Observe("j", 2, 1, Progress());  // a teacher rank's heartbeat
  EXPECT_EQ(Text().find("job_id="), std::string::npos) << Text();
}

}  // namespace
}  // namespace distill::common
