#include "worker/train/report.h"

#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "tests/test_util/test_util.h"

namespace distill::worker {
namespace {
using distill::testing::MakeTempDir;
using distill::testing::ReadFile;

// What `sink` prints to stdout while `f` runs.
template <typename F>
std::string Captured(F f) {
  std::ostringstream out;
  std::streambuf* old = std::cout.rdbuf(out.rdbuf());
  f();
  std::cout.rdbuf(old);
  return out.str();
}

StepRecord DistillLikeStep() {
  StepRecord r;
  r.step = 3;
  r.total_steps = 10;
  r.loss = 2.5;
  r.lr = 3e-4;
  r.tokens_per_s = 1234.5;
  r.eta_s = 70;
  r.step_s = 0.5;
  r.compute_s = 0.25;
  r.fields.scalars = {{"kd_loss", 0.75}, {"teacher_s", 0.125}, {"bad", std::nan("")}};
  r.fields.groups["feature_losses"] = {{"s1_t2", 0.25}};
  r.fields.console_after_loss = " (ce 1.500 kd 0.750 feat 0.250)";
  r.fields.console_time_share = " teacher 25%";
  r.fields.console_time_tail = " | 96 B/tok";
  return r;
}

TEST(JsonLinesSinkTest, WritesTheObjectiveFieldsAsKeysBesideTheGenericOnes) {
  const std::string path = MakeTempDir("report_test") + "/metrics.jsonl";
  auto sink = JsonLinesSink::Open(path, 0);
  ASSERT_TRUE(sink.ok()) << sink.status();
  (*sink)->OnStep(DistillLikeStep());
  EvalRecord e{3, 2.0, std::exp(2.0), 100, {}};
  e.fields.scalars["kl"] = 0.5;
  (*sink)->OnEval(e);
  std::istringstream in(ReadFile(path));
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  const auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["event"], "train");
  EXPECT_EQ(j["step"], 3);
  EXPECT_EQ(j["kd_loss"], 0.75);
  EXPECT_EQ(j["teacher_s"], 0.125);
  EXPECT_TRUE(j["bad"].is_null());  // JSON has no NaN
  EXPECT_EQ(j["feature_losses"], nlohmann::json({{"s1_t2", 0.25}}));
  EXPECT_FALSE(j.contains("wait_s"));  // the objective names it (teacher_s)
  for (const char* key :
       {"total_steps", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "elapsed_s", "step_s",
        "peak_rss_bytes", "compute_s", "allreduce_s", "ranks"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  ASSERT_TRUE(std::getline(in, line));
  const auto k = nlohmann::json::parse(line);
  EXPECT_EQ(k, nlohmann::json({{"event", "eval"},
                               {"step", 3},
                               {"loss", 2.0},
                               {"ppl", std::exp(2.0)},
                               {"tokens", 100},
                               {"kl", 0.5}}));
}

TEST(ConsoleSinkTest, PlacesTheObjectivePiecesInTheProgressLine) {
  ConsoleSink console;
  EXPECT_EQ(Captured([&] { console.OnStep(DistillLikeStep()); }),
            "step 3/10 | loss 2.5000 (ce 1.500 kd 0.750 feat 0.250) | lr 3.00e-04 | 1.2k tok/s | "
            "compute 50% "
            "teacher 25% | 96 B/tok | eta 1m10s\n");
  StepRecord r = DistillLikeStep();
  r.ranks = 2;
  r.allreduce_s = 0.125;
  EXPECT_EQ(Captured([&] { console.OnStep(r); }),
            "step 3/10 | loss 2.5000 (ce 1.500 kd 0.750 feat 0.250) | lr 3.00e-04 | 1.2k tok/s | "
            "compute 50% "
            "teacher 25% allreduce 25% | 96 B/tok | eta 1m10s\n");
  EvalRecord e{3, 2.0, 7.389, 100, {}};
  e.fields.console_after_loss = " | kl 0.5000";
  EXPECT_EQ(Captured([&] { console.OnEval(e); }),
            "eval step 3 | loss 2.0000 | ppl 7.389 | kl 0.5000 | 100 tokens\n");
}

TEST(ConsoleSinkTest, OneRankWithoutObjectivePiecesShowsNoTimeShares) {
  ConsoleSink console;
  StepRecord r;
  r.step = 1;
  r.total_steps = 2;
  r.loss = 1.25;
  r.lr = 1e-3;
  r.tokens_per_s = 500;
  r.step_s = 0.5;
  r.eta_s = 5;
  EXPECT_EQ(Captured([&] { console.OnStep(r); }),
            "step 1/2 | loss 1.2500 | lr 1.00e-03 | 500 tok/s | eta 5s\n");
  r.ranks = 2;
  r.compute_s = 0.25;
  r.allreduce_s = 0.25;
  EXPECT_EQ(
      Captured([&] { console.OnStep(r); }),
      "step 1/2 | loss 1.2500 | lr 1.00e-03 | 500 tok/s | compute 50% allreduce 50% | eta 5s\n");
}

}  // namespace
}  // namespace distill::worker
