#include "worker/train/step_tally.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <memory>

#include "worker/comm/loopback_communicator.h"

namespace distill::worker {
namespace {

LossParts Parts(double total, double wait_s, double ce, double feature) {
  LossParts p;
  p.total = torch::tensor(total, torch::kFloat);
  p.wait_s = wait_s;
  p.values = {{"ce", ce}, {"feature:s0_t1", feature}};
  return p;
}

TEST(StepTallyTest, SumsTheMicroBatchesAndAveragesTheLoss) {
  StepTally tally(torch::kCPU);
  tally.Add(Parts(2.0, 0.25, 1.5, 0.125));
  tally.Add(Parts(3.0, 0.5, 2.5, 0.375));
  tally.Finish(2);
  std::unique_ptr<Communicator> one = MakeLoopbackCommunicator();
  ASSERT_TRUE(tally.AverageOver(*one).ok());
  EXPECT_EQ(tally.loss(), 2.5);
  EXPECT_EQ(tally.wait_s(), 0.75);
  EXPECT_EQ(tally.rank_wait_s(), 0.75);  // this rank's own (its metrics' teacher_wait)
  const StepValues v = tally.values(32);
  EXPECT_EQ(v.micro_batches, 2);
  EXPECT_EQ(v.micro_batch_targets, 32);
  EXPECT_EQ(v.sums.at("ce"), 4.0);
  EXPECT_EQ(v.sums.at("feature:s0_t1"), 0.5);
  tally.SetUpdate(1e-3, 0.5);
  EXPECT_EQ(tally.lr(), 1e-3);
  EXPECT_EQ(tally.grad_norm(), 0.5);
}

TEST(StepTallyTest, OneRankLeavesTheValuesBitForBit) {
  StepTally tally(torch::kCPU);
  tally.Add(Parts(0.1, 1.0 / 3.0, 0.7, 1e-7));
  tally.Finish(3);  // a quotient that rounds
  const double loss = tally.loss();
  std::unique_ptr<Communicator> one = MakeLoopbackCommunicator();
  ASSERT_TRUE(tally.AverageOver(*one).ok());
  EXPECT_EQ(tally.loss(), loss);
  EXPECT_EQ(tally.wait_s(), 1.0 / 3.0);
  EXPECT_EQ(tally.values(1).sums.at("ce"), 0.7);
}

TEST(CombineEvalTest, OneRankKeepsItsShardExactly) {
  EvalRecord r{4, 0.1 * 3, std::exp(0.3), 7, {}};
  r.fields.scalars = {{"kl", 1.0 / 3.0}};
  std::unique_ptr<Communicator> one = MakeLoopbackCommunicator();
  ASSERT_TRUE(CombineEval(*one, &r).ok());
  EXPECT_EQ(r.loss, 0.1 * 3);  // not (x * 7) / 7
  EXPECT_EQ(r.ppl, std::exp(0.3));
  EXPECT_EQ(r.tokens, 7);
  EXPECT_EQ(r.fields.scalars.at("kl"), 1.0 / 3.0);
}

}  // namespace
}  // namespace distill::worker
