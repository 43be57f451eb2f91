// The loopback Communicator (one rank). It runs in mpi_tests with the other
// comm tests, as one rank (loopback_tests.cmake), though it needs no MPI.
#include "worker/comm/loopback_communicator.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <string>

namespace distill::worker {
namespace {

::testing::AssertionResult MessageHas(const absl::Status& status, const std::string& part) {
  if (std::string(status.message()).find(part) != std::string::npos)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << status << " does not contain \"" << part << "\"";
}

TEST(LoopbackCommunicatorTest, IsRankZeroOfOne) {
  std::unique_ptr<Communicator> c = MakeLoopbackCommunicator();
  EXPECT_EQ(c->rank(), 0);
  EXPECT_EQ(c->size(), 1);
  EXPECT_EQ(c->backend(), "loopback");
}

TEST(LoopbackCommunicatorTest, AllReduceOfOneRankLeavesTheValuesBitForBit) {
  std::unique_ptr<Communicator> c = MakeLoopbackCommunicator();
  // Values whose sum with anything else, or a division, would show.
  torch::Tensor t = torch::tensor({0.1, -3.0e-300, 7.0 / 3.0, 1e300}, torch::kDouble);
  const torch::Tensor before = t.clone();
  ASSERT_TRUE(c->AllReduce(t, ReduceOp::kSum, "sum").ok());
  EXPECT_TRUE(torch::equal(t, before));
  ASSERT_TRUE(c->AllReduce(t, ReduceOp::kAvg, "avg").ok());
  EXPECT_TRUE(torch::equal(t, before));
  torch::Tensor ints = torch::tensor({3, 4}, torch::kInt64);
  ASSERT_TRUE(c->AllReduce(ints, ReduceOp::kSum, "int sum").ok());
  EXPECT_TRUE(torch::equal(ints, torch::tensor({3, 4}, torch::kInt64)));
}

TEST(LoopbackCommunicatorTest, AsyncOperationsAreCompleteAtOnce) {
  std::unique_ptr<Communicator> c = MakeLoopbackCommunicator();
  torch::Tensor t = torch::ones({3});
  auto w = c->AllReduceAsync(t, ReduceOp::kAvg, "bucket 0");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE((*w)->Test());
  EXPECT_TRUE((*w)->Wait().ok());
  auto b = c->BroadcastAsync(t, 0, "weights");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE((*b)->Test());
  EXPECT_TRUE(torch::equal(t, torch::ones({3})));
  EXPECT_TRUE(c->Barrier("end").ok());
}

TEST(LoopbackCommunicatorTest, ChecksTensorsLikeMpi) {
  std::unique_ptr<Communicator> c = MakeLoopbackCommunicator();
  torch::Tensor undefined;
  absl::Status s = c->AllReduce(undefined, ReduceOp::kSum, "stop flag");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(s, "allreduce of stop flag: undefined tensor"));
  torch::Tensor strided = torch::ones({4, 4}).t();
  s = c->Broadcast(strided, 0, "weights");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(s, "broadcast of weights: the tensor must be contiguous"));
  torch::Tensor ints = torch::ones({2}, torch::kInt32);
  s = c->AllReduce(ints, ReduceOp::kAvg, "counts");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(s, "allreduce of counts: avg of an integer tensor"));
}

TEST(LoopbackCommunicatorTest, ReduceScatterAndAllGatherCopyTheValuesBitForBit) {
  std::unique_ptr<Communicator> c = MakeLoopbackCommunicator();
  const torch::Tensor input = torch::tensor({0.1, -3.0e-300, 7.0 / 3.0, 1e300}, torch::kDouble);
  torch::Tensor out = torch::zeros({2, 2}, torch::kDouble);  // any shape of the same numel
  ASSERT_TRUE(c->ReduceScatter(input, out, ReduceOp::kSum, "sum").ok());
  EXPECT_TRUE(torch::equal(out.reshape({-1}), input));
  out.zero_();
  ASSERT_TRUE(c->ReduceScatter(input, out, ReduceOp::kAvg, "avg").ok());
  EXPECT_TRUE(torch::equal(out.reshape({-1}), input));
  torch::Tensor gathered = torch::zeros({4}, torch::kDouble);
  ASSERT_TRUE(c->AllGather(out, gathered, "gather").ok());
  EXPECT_TRUE(torch::equal(gathered, input));

  // Async: complete at once, also into a parameter (outside autograd).
  const torch::Tensor shard = torch::arange(3).to(torch::kBFloat16);
  torch::Tensor param = torch::zeros({3}, torch::kBFloat16).requires_grad_();
  auto w = c->AllGatherAsync(shard, param, "weights");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE((*w)->Test());
  EXPECT_TRUE(torch::equal(param.detach(), shard));
  torch::Tensor ints = torch::zeros({3}, torch::kInt64);
  w = c->ReduceScatterAsync(torch::tensor({4, 5, 6}, torch::kInt64), ints, ReduceOp::kSum, "n");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE((*w)->Test());
  EXPECT_TRUE(torch::equal(ints, torch::tensor({4, 5, 6}, torch::kInt64)));
}

TEST(LoopbackCommunicatorTest, ReduceScatterAndAllGatherCheckTensorsLikeMpi) {
  std::unique_ptr<Communicator> c = MakeLoopbackCommunicator();
  torch::Tensor out = torch::zeros({4});
  absl::Status s = c->ReduceScatter(torch::zeros({5}), out, ReduceOp::kSum, "bucket 1");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(s,
                         "reducescatter of bucket 1: the input has 5 elements, expected 4 (1 "
                         "ranks x the output's 4)"));
  s = c->ReduceScatter(torch::zeros({4}, torch::kInt32), out, ReduceOp::kSum, "bucket 2");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(s, "reducescatter of bucket 2: the input is Int but the output is Float"));
  torch::Tensor ints = torch::zeros({4}, torch::kInt32);
  s = c->ReduceScatter(torch::ones({4}, torch::kInt32), ints, ReduceOp::kAvg, "counts");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(s, "reducescatter of counts: avg of an integer tensor"));
  s = c->ReduceScatter(out, out, ReduceOp::kSum, "in place");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(s, "reducescatter of in place: the input and the output overlap"));

  torch::Tensor strided = torch::zeros({2, 2}).t();
  s = c->AllGather(torch::zeros({4}), strided, "shard");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(s, "allgather of shard (output): the tensor must be contiguous"));
  torch::Tensor undefined;
  s = c->AllGather(undefined, out, "shard");
  EXPECT_TRUE(MessageHas(s, "allgather of shard (input): undefined tensor"));
  s = c->AllGather(torch::zeros({2}), out, "shard");
  EXPECT_TRUE(MessageHas(s, "allgather of shard: the output has 4 elements, expected 2"));
  EXPECT_TRUE(torch::equal(out, torch::zeros({4})));  // nothing written on errors
}

TEST(LoopbackCommunicatorTest, BroadcastFromAnotherRootIsOutOfRange) {
  std::unique_ptr<Communicator> c = MakeLoopbackCommunicator();
  torch::Tensor t = torch::ones({2});
  absl::Status s = c->Broadcast(t, 1, "weights");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(s, "broadcast of weights: root rank 1 out of range [0, 1)"));
}

TEST(LoopbackCommunicatorTest, PointToPointHasNoPeer) {
  std::unique_ptr<Communicator> c = MakeLoopbackCommunicator();
  torch::Tensor t = torch::ones({2});
  absl::Status s = c->Send(t, 0, 7, "teacher logits");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(s, "send of teacher logits (tag 7): rank 0 is the only rank"));
  s = c->Recv(t, 0, 7, "teacher logits");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(s, "recv of teacher logits (tag 7): rank 0 is the only rank"));
  s = c->Send(t, 2, 7, "teacher logits");
  EXPECT_TRUE(MessageHas(s, "send of teacher logits: destination rank 2 out of range [0, 1)"));
  s = c->Recv(t, -1, 7, "teacher logits");
  EXPECT_TRUE(MessageHas(s, "recv of teacher logits: source rank -1 out of range [0, 1)"));
  auto probe = c->Probe(0, 3);
  EXPECT_EQ(probe.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LoopbackCommunicatorTest, SplitGivesOneRankOrNothing) {
  std::unique_ptr<Communicator> c = MakeLoopbackCommunicator();
  auto member = c->Split(0, 0);
  ASSERT_TRUE(member.ok()) << member.status();
  ASSERT_NE(*member, nullptr);
  EXPECT_EQ((*member)->size(), 1);
  auto none = c->Split(-1, 0);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*none, nullptr);
}

TEST(LoopbackCommunicatorDeathTest, AbortEndsTheProcessWithTheCodeAndMessage) {
  std::unique_ptr<Communicator> c = MakeLoopbackCommunicator();
  EXPECT_EXIT(c->Abort("deliberate abort", 3), ::testing::ExitedWithCode(3),
              "rank 0: deliberate abort");
}

}  // namespace
}  // namespace distill::worker
