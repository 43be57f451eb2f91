#include "coordinator/ctl/format.h"

#include <gtest/gtest.h>

#include <sstream>

#include "absl/strings/str_split.h"

namespace distill::coordinator::ctl {
namespace {
using distill::v1::Job;
using distill::v1::JobEvent;

Job RunningFinetune() {
  Job job;
  job.set_id("j-1");
  job.mutable_spec()->set_type(distill::v1::FINETUNE);
  job.mutable_spec()->set_name("brown");
  job.set_state(distill::v1::RUNNING);
  auto* p = job.mutable_progress();
  p->set_step(40);
  p->set_total_steps(200);
  p->set_loss(2.34567);
  p->set_ce_loss(2.34567);
  p->set_tokens_per_second(12345);
  p->set_eta_seconds(65);
  return job;
}

TEST(FormatTest, StateNamesParseCaseInsensitively) {
  EXPECT_EQ(JobStateName(distill::v1::QUEUED), "QUEUED");
  EXPECT_EQ(*ParseJobState("running"), distill::v1::RUNNING);
  EXPECT_EQ(*ParseJobState("Cancelled"), distill::v1::CANCELLED);
  EXPECT_EQ(ParseJobState("done").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseJobState("job_state_unspecified").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(IsTerminal(distill::v1::FAILED));
  EXPECT_FALSE(IsTerminal(distill::v1::STARTING));
}

TEST(FormatTest, DurationsAndRates) {
  EXPECT_EQ(FormatDuration(12.4), "12s");
  EXPECT_EQ(FormatDuration(65), "1m05s");
  EXPECT_EQ(FormatDuration(3720), "1h02m");
  EXPECT_EQ(FormatDuration(-1), "?");
  EXPECT_EQ(FormatRate(950), "950");
  EXPECT_EQ(FormatRate(12345), "12.3k");
  EXPECT_EQ(FormatRate(1.25e6), "1.25M");
}

TEST(FormatTest, ProgressLineOfAFinetuneHasNoLossSplit) {
  EXPECT_EQ(FormatProgressLine(RunningFinetune()),
            "step 40/200 | loss 2.3457 | 12.3k tok/s | eta 1m05s");
}

TEST(FormatTest, ProgressLineOfADistillJobSplitsTheLoss) {
  Job job = RunningFinetune();
  job.mutable_spec()->set_type(distill::v1::DISTILL);
  auto* p = job.mutable_progress();
  p->set_loss(3.0);
  p->set_ce_loss(2.5);
  p->set_kd_loss(0.4);
  (*p->mutable_feature_losses())["s1_t2"] = 0.1;
  p->set_eval_loss(2.75);
  EXPECT_EQ(FormatProgressLine(job),
            "step 40/200 | loss 3.0000 (ce 2.5000 kd 0.4000 s1_t2 0.1000) | eval 2.7500 | 12.3k "
            "tok/s | eta 1m05s");
}

TEST(FormatTest, ProgressLineBeforeTheFirstStepIsTheState) {
  Job job;
  job.set_state(distill::v1::STARTING);
  EXPECT_EQ(FormatProgressLine(job), "STARTING");
  EXPECT_EQ(FormatProgressBar(job, 80), "STARTING");
}

TEST(FormatTest, ProgressBarFillsInProportionAndFitsTheWidth) {
  Job job = RunningFinetune();
  const std::string right = " 40/200  20% | loss 2.3457 | 12.3k tok/s | eta 1m05s";
  // 80 columns: 79 usable, the bar gets min(30, 79 - 2 - 52) = 25 cells, 20% of them filled.
  ASSERT_EQ(right.size(), 52u);
  EXPECT_EQ(FormatProgressBar(job, 80),
            "[" + std::string(5, '#') + std::string(20, '.') + "]" + right);
  EXPECT_EQ(FormatProgressBar(job, 80).size(), 79u);
  EXPECT_EQ(FormatProgressBar(job, 200),
            "[" + std::string(6, '#') + std::string(24, '.') + "]" + right);
  job.mutable_progress()->set_step(200);
  EXPECT_EQ(FormatProgressBar(job, 200).substr(0, 32), "[" + std::string(30, '#') + "]");
  // Too narrow for a bar: the text alone, clipped.
  const std::string narrow = FormatProgressBar(job, 30);
  EXPECT_EQ(narrow.size(), 29u);
  EXPECT_EQ(narrow.substr(0, 7), "200/200");
}

TEST(FormatTest, FailureNamesTheReasonAndExitCode) {
  Job job;
  job.set_state(distill::v1::FAILED);
  job.set_failure_reason(distill::v1::RANK_FAILED);
  job.set_failure_message("rank 0 exited");
  job.set_exit_code(3);
  EXPECT_EQ(FormatFailure(job), "RANK_FAILED: rank 0 exited (exit code 3)");
  // The coordinator's attempt messages name the reason and the exit code
  // themselves: neither is said twice.
  job.set_failure_message(
      "attempt 3 failed: RANK_FAILED: rank 1 (student 1): exit code 3 (mpirun exit code 3); logs in w");
  EXPECT_EQ(FormatFailure(job), job.failure_message());
  EXPECT_EQ(FormatFailure(RunningFinetune()), "");
  EXPECT_EQ(ExitCodeForJob(job), 1);
  job.set_state(distill::v1::SUCCEEDED);
  job.set_failure_reason(distill::v1::FAILURE_REASON_UNSPECIFIED);
  EXPECT_EQ(ExitCodeForJob(job), 0);
}

TEST(FormatTest, SummaryShowsStateTimesAndFailure) {
  Job job = RunningFinetune();
  job.set_state(distill::v1::FAILED);
  job.set_failure_reason(distill::v1::HEARTBEAT_TIMEOUT);
  job.set_attempt(3);
  job.set_max_retries(2);
  job.set_ranks(2);
  job.add_hosts("localhost");
  job.mutable_create_time()->set_seconds(1000);
  job.mutable_start_time()->set_seconds(1010);
  job.mutable_end_time()->set_seconds(1100);
  job.set_output_dir("/out");
  const std::string s = FormatJobSummary(job, absl::FromUnixSeconds(1200));
  EXPECT_NE(s.find("id:         j-1\n"), std::string::npos) << s;
  EXPECT_NE(s.find("state:      FAILED\n"), std::string::npos) << s;
  EXPECT_NE(s.find("failure:    HEARTBEAT_TIMEOUT\n"), std::string::npos) << s;
  EXPECT_NE(s.find("attempt:    3 (max retries 2)\n"), std::string::npos) << s;
  EXPECT_NE(s.find("ranks:      2 on localhost\n"), std::string::npos) << s;
  EXPECT_NE(s.find("created:    1970-01-01 00:16:40 UTC (3m20s ago)\n"), std::string::npos) << s;
  EXPECT_NE(s.find("ran 1m30s"), std::string::npos) << s;
  EXPECT_NE(s.find("output:     /out\n"), std::string::npos) << s;
}

TEST(FormatTest, TableAlignsColumns) {
  Job a = RunningFinetune();
  a.mutable_create_time()->set_seconds(100);
  Job b;
  b.set_id("j-22");
  b.set_state(distill::v1::QUEUED);
  b.set_queue_position(1);
  b.set_priority(5);
  b.mutable_spec()->set_type(distill::v1::DISTILL);
  const std::string t = FormatJobTable({a, b}, absl::FromUnixSeconds(130));
  std::vector<std::string> lines = absl::StrSplit(t, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << t;
  EXPECT_EQ(lines[0], "ID    STATE      NAME   TYPE      PRI  STEP    LOSS    AGE");
  EXPECT_EQ(lines[1], "j-1   RUNNING    brown  finetune  0    40/200  2.3457  30s");
  EXPECT_EQ(lines[2], "j-22  QUEUED #1  -      distill   5    -       -       -");
}

// A sweep "s" with children c1 (capture) and c2 (swept), listed newest first
// with an unrelated job between them.
std::vector<Job> SweepListing() {
  Job s, c1, c2, other;
  s.set_id("s");
  s.set_kind(distill::v1::SWEEP);
  s.set_state(distill::v1::RUNNING);
  s.add_child_ids("c1");
  s.add_child_ids("c2");
  c1.set_id("c1");
  c1.set_kind(distill::v1::CAPTURE);
  c1.set_parent_id("s");
  c1.set_state(distill::v1::SUCCEEDED);
  c2.set_id("c2");
  c2.set_parent_id("s");
  c2.set_state(distill::v1::FAILED);
  c2.set_failure_reason(distill::v1::DEPENDENCY_FAILED);
  c2.set_failure_message("the capture failed");
  (*c2.mutable_sweep_values())["train.seed"] = "2";
  (*c2.mutable_sweep_values())["distill.temperature"] = "4";
  other.set_id("o");
  other.set_state(distill::v1::QUEUED);
  return {c2, other, c1, s};
}

TEST(FormatTest, TableShowsASweepsChildrenIndentedUnderIt) {
  const std::string t = FormatJobTable(SweepListing(), absl::FromUnixSeconds(0));
  std::vector<std::string> lines = absl::StrSplit(t, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 5u) << t;
  EXPECT_EQ(lines[1].substr(0, 2), "o ") << t;
  EXPECT_EQ(lines[2].substr(0, 2), "s ") << t;
  EXPECT_EQ(lines[3].substr(0, 5), "  c1 ") << t;
  EXPECT_EQ(lines[4].substr(0, 5), "  c2 ") << t;
}

TEST(FormatTest, SweepChildrenShowTheirValuesAndSummariesTheirSweep) {
  std::vector<Job> jobs = SweepListing();
  EXPECT_EQ(FormatSweepChildren({jobs[2], jobs[0]}),
            "  c1  SUCCEEDED  capture\n"
            "  c2  FAILED     distill.temperature=4, train.seed=2  "
            "DEPENDENCY_FAILED: the capture failed\n");
  const std::string child = FormatJobSummary(jobs[0], absl::FromUnixSeconds(0));
  EXPECT_NE(child.find("sweep:      s\n"), std::string::npos) << child;
  EXPECT_NE(child.find("swept:      distill.temperature=4, train.seed=2\n"), std::string::npos)
      << child;
  const std::string parent = FormatJobSummary(jobs[3], absl::FromUnixSeconds(0));
  EXPECT_NE(parent.find("kind:       sweep of 2 jobs\n"), std::string::npos) << parent;
}

TEST(FormatTest, JsonUsesProtoFieldNames) {
  const std::string json = ToJson(RunningFinetune());
  EXPECT_NE(json.find("\"total_steps\": \"200\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"state\": \"RUNNING\""), std::string::npos) << json;
}

JobEvent Event(int64_t seq, JobEvent::Kind kind, const Job& job, const std::string& message = "") {
  JobEvent e;
  e.set_sequence(seq);
  e.set_kind(kind);
  *e.mutable_job() = job;
  e.set_message(message);
  return e;
}

TEST(WatchPrinterTest, PlainOutputPrintsStateChangesAndEachNewStepOnce) {
  std::ostringstream out;
  WatchPrinter printer(out, /*tty=*/false, 80);
  Job job = RunningFinetune();
  printer.OnEvent(Event(1, JobEvent::STATE_CHANGED, job, "launched attempt 1 on localhost"));
  printer.OnEvent(Event(2, JobEvent::PROGRESS, job));
  printer.OnEvent(Event(3, JobEvent::PROGRESS, job));  // a heartbeat: same step
  job.set_state(distill::v1::SUCCEEDED);
  job.mutable_progress()->set_step(200);
  job.mutable_start_time()->set_seconds(10);
  job.mutable_end_time()->set_seconds(75);
  printer.OnEvent(Event(4, JobEvent::STATE_CHANGED, job));
  printer.Finish(job);
  std::vector<std::string> lines = absl::StrSplit(out.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u) << out.str();
  EXPECT_EQ(lines[0].substr(8), " RUNNING: launched attempt 1 on localhost");  // after HH:MM:SS
  EXPECT_EQ(lines[1], "step 40/200 | loss 2.3457 | 12.3k tok/s | eta 1m05s");
  EXPECT_EQ(lines[2].substr(8), " SUCCEEDED");
  EXPECT_EQ(lines[3], "job j-1 SUCCEEDED in 1m05s: step 200/200, loss 2.3457");
  EXPECT_EQ(out.str().find('\r'), std::string::npos);
}

TEST(WatchPrinterTest, TtyOutputRedrawsOneBarInPlace) {
  std::ostringstream out;
  WatchPrinter printer(out, /*tty=*/true, 100);
  Job job = RunningFinetune();
  printer.OnEvent(Event(1, JobEvent::PROGRESS, job));
  job.mutable_progress()->set_step(41);
  printer.OnEvent(Event(2, JobEvent::PROGRESS, job));
  job.set_state(distill::v1::FAILED);
  job.set_failure_reason(distill::v1::RANK_FAILED);
  job.set_failure_message("rank 0 exited with code 1");
  printer.OnEvent(Event(3, JobEvent::STATE_CHANGED, job, "attempt 1 failed"));
  printer.Finish(job);
  const std::string s = out.str();
  // Bar, "\r\033[K" + bar, "\r\033[K" + state line; no bar after the end.
  EXPECT_EQ(s.rfind("[", 0), 0u) << s;
  EXPECT_NE(s.find("\r\033[K["), std::string::npos) << s;
  EXPECT_NE(s.find(" 41/200 "), std::string::npos) << s;
  EXPECT_NE(s.find(" FAILED: attempt 1 failed\n"), std::string::npos) << s;
  EXPECT_NE(
      s.find("job j-1 FAILED: step 41/200, loss 2.3457 (RANK_FAILED: rank 0 exited with code 1)\n"),
      std::string::npos)
      << s;
}

}  // namespace
}  // namespace distill::coordinator::ctl
