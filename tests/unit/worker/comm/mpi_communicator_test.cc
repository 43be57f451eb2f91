// The MPI Communicator on real ranks (mpirun -np N mpi_tests, N >= 2; see
// mpi_tests.cmake). Every rank runs every test; expected values are worked
// out by hand from each rank's contribution (rank r contributes r + 1, ...).
#include "worker/comm/mpi_communicator.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/test_util/mpi_fixture.h"

namespace distill::worker {
namespace internal {
void SetMpiMaxChunkForTesting(int64_t elements);  // mpi_communicator.cc
}  // namespace internal
namespace {

// Whether `status`'s message contains `part`.
::testing::AssertionResult MessageHas(const absl::Status& status, const std::string& part) {
  if (std::string(status.message()).find(part) != std::string::npos) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << status << " does not contain \"" << part << "\"";
}

constexpr double kTimeoutS = distill::testing::kMpiTimeoutS;

class MpiCommunicatorTest : public distill::testing::MpiTest {};

TEST_F(MpiCommunicatorTest, ReportsRankSizeAndBackend) {
  EXPECT_EQ(world_->backend(), "mpi");
  EXPECT_GE(rank_, 0);
  EXPECT_LT(rank_, n_);
  EXPECT_TRUE(LaunchedByMpirun());
}

TEST_F(MpiCommunicatorTest, AllReduceSumAndAvg) {
  // Rank r contributes r + 1: sum = n (n + 1) / 2, avg = (n + 1) / 2.
  torch::Tensor t = torch::full({5}, static_cast<float>(rank_ + 1));
  ASSERT_TRUE(world_->AllReduce(t, ReduceOp::kSum, "sum test").ok());
  EXPECT_TRUE(torch::equal(t, torch::full({5}, n_ * (n_ + 1) / 2.0f)));

  torch::Tensor a = torch::full({2, 3}, static_cast<double>(rank_ + 1), torch::kFloat64);
  ASSERT_TRUE(world_->AllReduce(a, ReduceOp::kAvg, "avg test").ok());
  EXPECT_TRUE(torch::equal(a, torch::full({2, 3}, (n_ + 1) / 2.0, torch::kFloat64)));
}

TEST_F(MpiCommunicatorTest, AllReduceEveryDtype) {
  // Rank r contributes arange(6) + r: sum = n * arange(6) + n (n - 1) / 2.
  for (torch::ScalarType dtype : {torch::kFloat32, torch::kFloat64, torch::kBFloat16, torch::kInt64,
                                  torch::kInt32, torch::kUInt8}) {
    SCOPED_TRACE(c10::toString(dtype));
    torch::Tensor t = (torch::arange(6, torch::kInt64) + rank_).to(dtype);
    ASSERT_TRUE(world_->AllReduce(t, ReduceOp::kSum, "dtype test").ok());
    torch::Tensor want = (torch::arange(6, torch::kInt64) * n_ + n_ * (n_ - 1) / 2).to(dtype);
    EXPECT_EQ(t.scalar_type(), dtype);
    EXPECT_TRUE(torch::equal(t, want)) << t << want;
    if (!c10::isIntegralType(dtype, true)) {
      // avg = arange(6) + (n - 1) / 2 (exact in every float dtype for n <= 8).
      torch::Tensor v = (torch::arange(6, torch::kInt64) + rank_).to(dtype);
      ASSERT_TRUE(world_->AllReduce(v, ReduceOp::kAvg, "dtype test").ok());
      torch::Tensor want_avg = (torch::arange(6, torch::kFloat64) + (n_ - 1) / 2.0).to(dtype);
      EXPECT_TRUE(torch::equal(v, want_avg)) << v << want_avg;
    }
  }
}

TEST_F(MpiCommunicatorTest, AllReduceBFloat16SumsInFloat32) {
  // Every rank draws every rank's input from one seed: the reference is the
  // float32 sum rounded once to bfloat16 (summing in bfloat16 would round
  // after every addition).
  torch::manual_seed(1234);
  torch::Tensor all = torch::randn({n_, 257}).to(torch::kBFloat16);
  torch::Tensor t = all[rank_].clone();
  ASSERT_TRUE(world_->AllReduce(t, ReduceOp::kSum, "bf16 test").ok());
  torch::Tensor want = all.to(torch::kFloat32).sum(0).to(torch::kBFloat16);
  // The order of the float32 additions is MPI's: allow one bfloat16 ulp.
  EXPECT_TRUE(torch::allclose(t.to(torch::kFloat32), want.to(torch::kFloat32), 8e-3, 1e-6));
  torch::Tensor v = all[rank_].clone();
  ASSERT_TRUE(world_->AllReduce(v, ReduceOp::kAvg, "bf16 test").ok());
  torch::Tensor want_avg = (all.to(torch::kFloat32).sum(0) / n_).to(torch::kBFloat16);
  EXPECT_TRUE(torch::allclose(v.to(torch::kFloat32), want_avg.to(torch::kFloat32), 8e-3, 1e-6));

  // The staged result is written back outside autograd (parameters require grad).
  torch::Tensor param = torch::ones({3}, torch::kBFloat16).requires_grad_();
  ASSERT_TRUE(world_->AllReduce(param, ReduceOp::kSum, "bf16 parameter").ok());
  EXPECT_TRUE(torch::equal(param.detach(), torch::full({3}, n_, torch::kBFloat16)));
}

TEST_F(MpiCommunicatorTest, RejectsBadTensorsNamingWhat) {
  torch::Tensor strided = torch::zeros({4, 4}).t();
  auto w = world_->AllReduceAsync(strided, ReduceOp::kSum, "strided thing");
  ASSERT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(w.status(), "strided thing"));
  EXPECT_TRUE(MessageHas(w.status(), "contiguous"));

  torch::Tensor half = torch::zeros({4}, torch::kFloat16);
  w = world_->BroadcastAsync(half, 0, "half thing");
  ASSERT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(w.status(), "half thing"));

  torch::Tensor ints = torch::zeros({4}, torch::kInt64);
  EXPECT_EQ(world_->AllReduceAsync(ints, ReduceOp::kAvg, "ints").status().code(),
            absl::StatusCode::kInvalidArgument);
  torch::Tensor f = torch::zeros({4});
  EXPECT_EQ(world_->SendAsync(f, n_, 0, "x").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(world_->RecvAsync(f, 0, -1, "x").status().code(), absl::StatusCode::kInvalidArgument);
}

// The reduce-scatter and all-gather expectations below: rank r's block of
// a whole tensor of n_ blocks of `n` elements.
torch::Tensor Block(const torch::Tensor& whole, int r, int64_t n) {
  return whole.reshape({-1}).narrow(0, r * n, n);
}

TEST_F(MpiCommunicatorTest, ReduceScatterSumAndAvgEveryDtype) {
  // Rank r contributes arange(n_ * 5) + r, a block of 5 (odd) per rank: the
  // sum at i is n_ * i + n_ (n_ - 1) / 2, the avg i + (n_ - 1) / 2.
  const int64_t n = 5;
  for (torch::ScalarType dtype : {torch::kFloat32, torch::kFloat64, torch::kBFloat16, torch::kInt64,
                                  torch::kInt32, torch::kUInt8}) {
    SCOPED_TRACE(c10::toString(dtype));
    const torch::Tensor input = (torch::arange(n_ * n, torch::kInt64) + rank_).to(dtype);
    torch::Tensor out = torch::full({n}, 77, dtype);
    ASSERT_TRUE(world_->ReduceScatter(input, out, ReduceOp::kSum, "sum test").ok());
    torch::Tensor sum = torch::arange(n_ * n, torch::kInt64) * n_ + n_ * (n_ - 1) / 2;
    EXPECT_TRUE(torch::equal(out, Block(sum, rank_, n).to(dtype))) << out;
    EXPECT_TRUE(torch::equal(input, (torch::arange(n_ * n, torch::kInt64) + rank_).to(dtype)));
    if (c10::isIntegralType(dtype, true)) continue;
    // Exact in every float dtype for n_ <= 8; the output may have any shape.
    torch::Tensor avg = torch::zeros({1, n}, dtype);
    ASSERT_TRUE(world_->ReduceScatter(input, avg, ReduceOp::kAvg, "avg test").ok());
    torch::Tensor want = torch::arange(n_ * n, torch::kFloat64) + (n_ - 1) / 2.0;
    EXPECT_TRUE(torch::equal(avg.reshape({-1}), Block(want, rank_, n).to(dtype))) << avg;
  }
}

TEST_F(MpiCommunicatorTest, ReduceScatterBFloat16SumsInFloat32) {
  // As AllReduceBFloat16SumsInFloat32: one rounding of the float32 sum.
  torch::manual_seed(4321);
  const int64_t n = 129;
  torch::Tensor all = torch::randn({n_, n_ * n}).to(torch::kBFloat16);
  torch::Tensor out = torch::empty({n}, torch::kBFloat16);
  ASSERT_TRUE(world_->ReduceScatter(all[rank_], out, ReduceOp::kSum, "bf16 test").ok());
  torch::Tensor want = Block(all.to(torch::kFloat32).sum(0), rank_, n).to(torch::kBFloat16);
  EXPECT_TRUE(torch::allclose(out.to(torch::kFloat32), want.to(torch::kFloat32), 8e-3, 1e-6));
}

// What ZeRO relies on: its shard of a reduce-scatter avg is the matching
// slice of the all-reduce avg it replaces. Bit for bit on two ranks (a sum
// of two is one addition); with more ranks MPI may add in another order.
TEST_F(MpiCommunicatorTest, ReduceScatterAvgIsTheSliceOfAllReduceAvg) {
  torch::manual_seed(99);
  const int64_t n = 1001;
  for (torch::ScalarType dtype : {torch::kFloat32, torch::kBFloat16, torch::kFloat64}) {
    SCOPED_TRACE(c10::toString(dtype));
    torch::Tensor all = torch::randn({n_, n_ * n}, torch::kFloat64).to(dtype);
    torch::Tensor reduced = all[rank_].clone();
    ASSERT_TRUE(world_->AllReduce(reduced, ReduceOp::kAvg, "allreduce avg").ok());
    torch::Tensor shard = torch::empty({n}, dtype);
    ASSERT_TRUE(world_->ReduceScatter(all[rank_], shard, ReduceOp::kAvg, "reducescatter avg").ok());
    if (n_ == 2) {
      EXPECT_TRUE(torch::equal(shard, Block(reduced, rank_, n)));
    } else {
      const double rtol = dtype == torch::kBFloat16 ? 8e-3 : 1e-6;
      EXPECT_TRUE(torch::allclose(shard.to(torch::kFloat64),
                                  Block(reduced, rank_, n).to(torch::kFloat64), rtol, 1e-12));
    }
  }
}

TEST_F(MpiCommunicatorTest, AllGatherEveryDtype) {
  // Rank r's block of 7 (odd) is arange(7) * 3 + 10 r (bfloat16-exact).
  const int64_t n = 7;
  for (torch::ScalarType dtype : {torch::kFloat32, torch::kFloat64, torch::kBFloat16, torch::kInt64,
                                  torch::kInt32, torch::kUInt8}) {
    SCOPED_TRACE(c10::toString(dtype));
    const torch::Tensor input = (torch::arange(n, torch::kInt64) * 3 + 10 * rank_).to(dtype);
    torch::Tensor out = torch::full({n_, n}, 1, dtype);
    ASSERT_TRUE(world_->AllGather(input, out, "gather test").ok());
    torch::Tensor want = (torch::arange(n, torch::kInt64).unsqueeze(0) * 3 +
                          torch::arange(n_, torch::kInt64).unsqueeze(1) * 10)
                             .to(dtype);
    EXPECT_TRUE(torch::equal(out, want)) << out;
  }
}

TEST_F(MpiCommunicatorTest, ReduceScatterAndAllGatherRejectBadTensorsNamingWhat) {
  torch::Tensor out = torch::zeros({4});
  auto w = world_->ReduceScatterAsync(torch::zeros({n_ * 4 + 1}), out, ReduceOp::kSum, "bucket 1");
  ASSERT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(w.status(), absl::StrCat("reducescatter of bucket 1: the input has ",
                                                  n_ * 4 + 1, " elements, expected ", n_ * 4, " (",
                                                  n_, " ranks x the output's 4)")));
  w = world_->ReduceScatterAsync(torch::zeros({n_ * 4}, torch::kFloat64), out, ReduceOp::kSum,
                                 "bucket 2");
  ASSERT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(w.status(), "reducescatter of bucket 2: the input is Double but the "
                                     "output is Float (the dtypes must match)"));
  w = world_->ReduceScatterAsync(torch::zeros({4, n_}).t(), out, ReduceOp::kSum, "bucket 3");
  ASSERT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(w.status(), "reducescatter of bucket 3 (input): the tensor must be "));
  torch::Tensor ints = torch::zeros({4}, torch::kInt32);
  w = world_->ReduceScatterAsync(torch::zeros({n_ * 4}, torch::kInt32), ints, ReduceOp::kAvg, "n");
  ASSERT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(w.status(), "reducescatter of n: avg of an integer tensor (Int)"));
  torch::Tensor whole = torch::zeros({n_ * 4});
  torch::Tensor inside = whole.narrow(0, 4, 4);
  w = world_->ReduceScatterAsync(whole, inside, ReduceOp::kSum, "bucket 4");
  ASSERT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(w.status(), "reducescatter of bucket 4: the input and the output overlap"));

  torch::Tensor gathered = torch::zeros({n_ * 4 - 1});
  w = world_->AllGatherAsync(torch::zeros({4}), gathered, "shard 1");
  ASSERT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(w.status(), absl::StrCat("allgather of shard 1: the output has ",
                                                  n_ * 4 - 1, " elements, expected ", n_ * 4)));
  torch::Tensor halves = torch::zeros({n_ * 4}, torch::kFloat16);
  w = world_->AllGatherAsync(torch::zeros({4}, torch::kFloat16), halves, "shard 2");
  ASSERT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(w.status(), "allgather of shard 2 (input): dtype Half is not supported"));
  w = world_->AllGatherAsync(torch::zeros({4}, torch::kBFloat16), whole, "shard 3");
  ASSERT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(w.status(), "allgather of shard 3: the input is BFloat16 but the output"));
  w = world_->AllGatherAsync(inside, whole, "shard 4");
  ASSERT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(w.status(), "allgather of shard 4: the input and the output overlap"));
  // Nothing above reached MPI: the ranks are still in step.
  ASSERT_TRUE(world_->AllGather(torch::ones({4}), whole, "after errors").ok());
  EXPECT_TRUE(torch::equal(whole, torch::ones({n_ * 4})));
}

TEST_F(MpiCommunicatorTest, BroadcastFromLastRank) {
  const int root = n_ - 1;
  for (torch::ScalarType dtype :
       {torch::kFloat32, torch::kBFloat16, torch::kInt64, torch::kUInt8}) {
    SCOPED_TRACE(c10::toString(dtype));
    torch::Tensor want = (torch::arange(12, torch::kInt64).reshape({3, 4}) * 7 % 251).to(dtype);
    torch::Tensor t = rank_ == root ? want.clone() : torch::zeros({3, 4}, dtype);
    ASSERT_TRUE(world_->Broadcast(t, root, "broadcast test").ok());
    EXPECT_TRUE(torch::equal(t, want));
  }
}

TEST_F(MpiCommunicatorTest, TaggedRingMatchesByTagOutOfOrder) {
  // Each rank sends tag 3 then tag 5 to its right neighbour, which receives
  // tag 5 first.
  const int right = (rank_ + 1) % n_;
  const int left = (rank_ + n_ - 1) % n_;
  torch::Tensor a = torch::full({4}, rank_ * 10.0f + 3);
  torch::Tensor b = torch::full({2, 2}, rank_ * 10.0f + 5).to(torch::kBFloat16);
  auto send_a = world_->SendAsync(a, right, 3, "ring a");
  auto send_b = world_->SendAsync(b, right, 5, "ring b");
  ASSERT_TRUE(send_a.ok() && send_b.ok());
  torch::Tensor got_b = torch::zeros({2, 2}, torch::kBFloat16);
  torch::Tensor got_a = torch::zeros({4});
  ASSERT_TRUE(world_->Recv(got_b, left, 5, "ring b").ok());
  ASSERT_TRUE(world_->Recv(got_a, left, 3, "ring a").ok());
  EXPECT_TRUE(torch::equal(got_a, torch::full({4}, left * 10.0f + 3)));
  EXPECT_TRUE(torch::equal(got_b, torch::full({2, 2}, left * 10.0f + 5).to(torch::kBFloat16)));
  EXPECT_TRUE((*send_a)->Wait().ok());
  EXPECT_TRUE((*send_b)->Wait().ok());
}

TEST_F(MpiCommunicatorTest, RecvOfAShorterMessageIsAnError) {
  if (rank_ == 0) {
    ASSERT_TRUE(world_->Send(torch::ones({3}), 1, 21, "short message").ok());
  } else if (rank_ == 1) {
    torch::Tensor t = torch::zeros({5});
    absl::Status st = world_->Recv(t, 0, 21, "short message");
    EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
    EXPECT_TRUE(MessageHas(st, "has 3 elements, expected 5"));
  }
}

TEST_F(MpiCommunicatorTest, ProbeSeesAWaitingMessage) {
  if (rank_ == 1) {
    auto p = world_->Probe(0, 11);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_FALSE(*p);
  }
  ASSERT_TRUE(world_->Barrier("before probe send").ok());
  if (rank_ == 0) {
    ASSERT_TRUE(world_->Send(torch::full({3}, 42.0f), 1, 11, "probe message").ok());
  } else if (rank_ == 1) {
    bool seen = false;
    for (int i = 0; i < 20000 && !seen; ++i) {
      auto p = world_->Probe(0, 11);
      ASSERT_TRUE(p.ok()) << p.status();
      seen = *p;
      if (!seen) std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    ASSERT_TRUE(seen);
    auto other = world_->Probe(0, 12);
    ASSERT_TRUE(other.ok());
    EXPECT_FALSE(*other);
    torch::Tensor t = torch::zeros({3});
    ASSERT_TRUE(world_->Recv(t, 0, 11, "probe message").ok());
    EXPECT_TRUE(torch::equal(t, torch::full({3}, 42.0f)));
  }
}

TEST_F(MpiCommunicatorTest, SplitEvenOddWithCollectivesInside) {
  // Key -rank orders each group from its highest world rank down.
  auto sub_or = world_->Split(rank_ % 2, -rank_);
  ASSERT_TRUE(sub_or.ok()) << sub_or.status();
  std::unique_ptr<Communicator> sub = std::move(sub_or).value();
  ASSERT_NE(sub, nullptr);
  std::vector<int> members;  // world ranks of my parity, descending
  for (int r = n_ - 1; r >= 0; --r) {
    if (r % 2 == rank_ % 2) members.push_back(r);
  }
  ASSERT_EQ(sub->size(), static_cast<int>(members.size()));
  EXPECT_EQ(members[sub->rank()], rank_);

  int64_t want_sum = 0;
  for (int r : members) want_sum += r;
  torch::Tensor t = torch::full({3}, static_cast<int64_t>(rank_), torch::kInt64);
  ASSERT_TRUE(sub->AllReduce(t, ReduceOp::kSum, "parity sum").ok());
  EXPECT_TRUE(torch::equal(t, torch::full({3}, want_sum, torch::kInt64)));

  torch::Tensor b = torch::full({2}, static_cast<float>(rank_));
  ASSERT_TRUE(sub->Broadcast(b, 0, "parity broadcast").ok());
  EXPECT_TRUE(torch::equal(b, torch::full({2}, static_cast<float>(members[0]))));
  EXPECT_TRUE(sub->Barrier("parity barrier").ok());

  // A negative color leaves a rank out.
  auto rest = world_->Split(rank_ == 0 ? -1 : 0, rank_);
  ASSERT_TRUE(rest.ok()) << rest.status();
  if (rank_ == 0) {
    EXPECT_EQ(*rest, nullptr);
  } else {
    ASSERT_NE(*rest, nullptr);
    EXPECT_EQ((*rest)->size(), n_ - 1);
    EXPECT_EQ((*rest)->rank(), rank_ - 1);
  }
}

TEST_F(MpiCommunicatorTest, AsyncOperationsOverlapAndCompleteInAnyOrder) {
  std::vector<torch::Tensor> tensors;
  std::vector<std::unique_ptr<Work>> works;
  for (int i = 0; i < 4; ++i) {
    tensors.push_back(torch::full({1000}, static_cast<float>((rank_ + 1) * (i + 1))));
    auto w = world_->AllReduceAsync(tensors.back(), ReduceOp::kSum, absl::StrCat("overlap ", i));
    ASSERT_TRUE(w.ok()) << w.status();
    works.push_back(std::move(w).value());
  }
  const int right = (rank_ + 1) % n_;
  const int left = (rank_ + n_ - 1) % n_;
  torch::Tensor out = torch::full({8}, static_cast<double>(rank_), torch::kFloat64);
  torch::Tensor in = torch::zeros({8}, torch::kFloat64);
  auto recv = world_->RecvAsync(in, left, 9, "overlap recv");
  auto send = world_->SendAsync(out, right, 9, "overlap send");
  ASSERT_TRUE(recv.ok() && send.ok());
  works.push_back(std::move(recv).value());
  works.push_back(std::move(send).value());
  for (auto it = works.rbegin(); it != works.rend(); ++it) ASSERT_TRUE((*it)->Wait().ok());
  for (auto& w : works) EXPECT_TRUE(w->Test());  // complete stays complete
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(torch::equal(tensors[i], torch::full({1000}, n_ * (n_ + 1) / 2.0f * (i + 1))));
  }
  EXPECT_TRUE(torch::equal(in, torch::full({8}, static_cast<double>(left), torch::kFloat64)));
}

TEST_F(MpiCommunicatorTest, TimeoutNamesTheRanksAndWhat) {
  std::vector<std::string> names;
  for (int r = 0; r < n_; ++r) names.push_back(absl::StrCat("rank ", r, " (role ", r, ")"));
  SetMpiRankNames(names);
  struct ClearNames {
    ~ClearNames() { SetMpiRankNames({}); }
  } clear_names;
  auto short_or = MpiWorld(0.5);
  ASSERT_TRUE(short_or.ok()) << short_or.status();
  std::unique_ptr<Communicator> fast = std::move(short_or).value();

  // A receive nobody matches: cancelled on timeout, so nothing is left over.
  if (rank_ == 0) {
    torch::Tensor t = torch::zeros({4});
    absl::Status st = fast->Recv(t, 1, 99, "missing message");
    ASSERT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
    EXPECT_EQ(st.message(),
              "rank 0 (role 0): timed out after 0.5 s waiting for recv of missing message from "
              "rank 1 (role 1) (tag 99)");
  }
  ASSERT_TRUE(world_->Barrier("after missing message").ok());

  // A collective that the others join late: the wait times out, naming the
  // communicator's ranks; a second wait completes it.
  torch::Tensor t = torch::full({3}, 1.0f);
  if (rank_ != 0) std::this_thread::sleep_for(std::chrono::seconds(2));
  auto w = fast->AllReduceAsync(t, ReduceOp::kSum, "gradient bucket 3");
  ASSERT_TRUE(w.ok()) << w.status();
  if (rank_ == 0) {
    absl::Status st = (*w)->Wait();
    ASSERT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
    EXPECT_EQ(st.message(), absl::StrCat("rank 0 (role 0): timed out after 0.5 s waiting for "
                                         "allreduce of gradient bucket 3 among ranks ",
                                         n_ == 2 ? "0, 1" : absl::StrCat("0-", n_ - 1)));
  }
  // Now everyone is in: completes (within the 0.5 s timeout on a quiet
  // machine; retried so a busy one does not flake).
  absl::Status st;
  for (int i = 0; i < 20; ++i) {
    st = (*w)->Wait();
    if (st.ok()) break;
  }
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_TRUE(torch::equal(t, torch::full({3}, static_cast<float>(n_))));
  SetMpiRankNames({});

  // Without names: bare world ranks.
  if (rank_ == 1) {
    torch::Tensor u = torch::zeros({1}, torch::kInt32);
    absl::Status s = fast->Recv(u, 0, 98, "nothing");
    EXPECT_EQ(s.message(),
              "rank 1: timed out after 0.5 s waiting for recv of nothing from rank 0 (tag 98)");
  }
}

TEST_F(MpiCommunicatorTest, LargeTensorsGoInChunks) {
  // Chunks of 7 elements stand in for chunks of INT_MAX.
  internal::SetMpiMaxChunkForTesting(7);
  struct Restore {
    ~Restore() { internal::SetMpiMaxChunkForTesting(0); }
  } restore;
  torch::Tensor t = torch::arange(50, torch::kFloat32) * (rank_ + 1);
  ASSERT_TRUE(world_->AllReduce(t, ReduceOp::kAvg, "chunked avg").ok());
  EXPECT_TRUE(torch::allclose(t, torch::arange(50, torch::kFloat32) * ((n_ + 1) / 2.0f)));

  torch::Tensor want = torch::arange(23, torch::kFloat32).to(torch::kBFloat16);
  torch::Tensor b = rank_ == 0 ? want.clone() : torch::zeros({23}, torch::kBFloat16);
  ASSERT_TRUE(world_->Broadcast(b, 0, "chunked broadcast").ok());
  EXPECT_TRUE(torch::equal(b, want));

  const int right = (rank_ + 1) % n_;
  const int left = (rank_ + n_ - 1) % n_;
  torch::Tensor out = torch::arange(30, torch::kInt64) + 100 * rank_;
  torch::Tensor in = torch::zeros({30}, torch::kInt64);
  auto send = world_->SendAsync(out, right, 4, "chunked send");
  ASSERT_TRUE(send.ok());
  ASSERT_TRUE(world_->Recv(in, left, 4, "chunked recv").ok());
  ASSERT_TRUE((*send)->Wait().ok());
  EXPECT_TRUE(torch::equal(in, torch::arange(30, torch::kInt64) + 100 * left));

  // Exactly one chunk, and an empty tensor (one empty message).
  torch::Tensor seven = torch::ones({7}, torch::kInt32);
  ASSERT_TRUE(world_->AllReduce(seven, ReduceOp::kSum, "seven").ok());
  EXPECT_TRUE(torch::equal(seven, torch::full({7}, n_, torch::kInt32)));
  torch::Tensor empty = torch::zeros({0});
  ASSERT_TRUE(world_->AllReduce(empty, ReduceOp::kSum, "empty").ok());
}

// Note [Block chunks]: blocks of 23 in chunks of 7 (7, 7, 7, 2) move
// chunk-major and land in each rank's block.
TEST_F(MpiCommunicatorTest, LargeBlocksGoInChunks) {
  internal::SetMpiMaxChunkForTesting(7);
  struct Restore {
    ~Restore() { internal::SetMpiMaxChunkForTesting(0); }
  } restore;
  for (const int64_t n : {23, 7, 0}) {  // several chunks, exactly one, none
    SCOPED_TRACE(absl::StrCat("block of ", n));
    // Rank r contributes arange(n_ * n) * (r + 1): avg arange * (n_ + 1) / 2.
    const torch::Tensor input = torch::arange(n_ * n, torch::kFloat32) * (rank_ + 1);
    torch::Tensor avg = torch::empty({n});
    ASSERT_TRUE(world_->ReduceScatter(input, avg, ReduceOp::kAvg, "chunked avg").ok());
    torch::Tensor want = torch::arange(n_ * n, torch::kFloat32) * ((n_ + 1) / 2.0f);
    EXPECT_TRUE(torch::allclose(avg, Block(want, rank_, n)));
    torch::Tensor sum = torch::empty({n}, torch::kBFloat16);
    ASSERT_TRUE(
        world_->ReduceScatter(input.to(torch::kBFloat16), sum, ReduceOp::kSum, "chunked bf16").ok());
    want = torch::arange(n_ * n, torch::kFloat32) * (n_ * (n_ + 1) / 2.0f);
    EXPECT_TRUE(torch::equal(sum, Block(want, rank_, n).to(torch::kBFloat16)));

    // Gathered into a parameter: written outside autograd.
    const torch::Tensor shard = torch::arange(n, torch::kInt64) + 100 * rank_;
    torch::Tensor whole = torch::zeros({n_ * n}, torch::kInt64);
    ASSERT_TRUE(world_->AllGather(shard, whole, "chunked gather").ok());
    torch::Tensor param = torch::zeros({n_, n}, torch::kFloat64).requires_grad_();
    ASSERT_TRUE(world_->AllGather(shard.to(torch::kFloat64), param, "chunked parameter").ok());
    for (int r = 0; r < n_; ++r) {
      EXPECT_TRUE(torch::equal(Block(whole, r, n), torch::arange(n, torch::kInt64) + 100 * r));
      EXPECT_TRUE(torch::equal(param.detach()[r], torch::arange(n, torch::kFloat64) + 100 * r));
    }
  }
}

TEST_F(MpiCommunicatorTest, ReduceScatterAndAllGatherOverlapOtherOperations) {
  // Issued together, waited on in reverse order.
  const int64_t n = 1000;
  const torch::Tensor input = torch::full({n_ * n}, static_cast<float>(rank_ + 1));
  torch::Tensor scattered = torch::empty({n});
  torch::Tensor reduced = torch::full({10}, static_cast<double>(rank_), torch::kFloat64);
  const torch::Tensor shard = torch::full({n}, static_cast<int32_t>(rank_), torch::kInt32);
  torch::Tensor gathered = torch::empty({n_, n}, torch::kInt32);
  std::vector<std::unique_ptr<Work>> works;
  auto rs = world_->ReduceScatterAsync(input, scattered, ReduceOp::kSum, "overlap scatter");
  auto ar = world_->AllReduceAsync(reduced, ReduceOp::kSum, "overlap reduce");
  auto ag = world_->AllGatherAsync(shard, gathered, "overlap gather");
  ASSERT_TRUE(rs.ok() && ar.ok() && ag.ok());
  works.push_back(std::move(rs).value());
  works.push_back(std::move(ar).value());
  works.push_back(std::move(ag).value());
  for (auto it = works.rbegin(); it != works.rend(); ++it) ASSERT_TRUE((*it)->Wait().ok());
  for (auto& w : works) EXPECT_TRUE(w->Test());
  EXPECT_TRUE(torch::equal(scattered, torch::full({n}, n_ * (n_ + 1) / 2.0f)));
  EXPECT_TRUE(torch::equal(reduced, torch::full({10}, n_ * (n_ - 1) / 2.0, torch::kFloat64)));
  EXPECT_TRUE(torch::equal(gathered, torch::arange(n_, torch::kInt32).unsqueeze(1).expand({n_, n})));
}

TEST_F(MpiCommunicatorTest, ReduceScatterTimeoutNamesWhat) {
  auto short_or = MpiWorld(0.5);
  ASSERT_TRUE(short_or.ok()) << short_or.status();
  std::unique_ptr<Communicator> fast = std::move(short_or).value();
  // Rank 0 comes early: its wait times out naming the operation; a second
  // wait (everyone is in then) completes it.
  if (rank_ != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const torch::Tensor input = torch::ones({n_ * 3});
  torch::Tensor out = torch::zeros({3});
  auto w = fast->ReduceScatterAsync(input, out, ReduceOp::kSum, "gradient shard 2");
  ASSERT_TRUE(w.ok()) << w.status();
  if (rank_ == 0) {
    absl::Status st = (*w)->Wait();
    ASSERT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
    EXPECT_EQ(st.message(), absl::StrCat("rank 0: timed out after 0.5 s waiting for reducescatter "
                                         "of gradient shard 2 among ranks ",
                                         n_ == 2 ? "0, 1" : absl::StrCat("0-", n_ - 1)));
  }
  absl::Status st;
  for (int i = 0; i < 20; ++i) {
    st = (*w)->Wait();
    if (st.ok()) break;
  }
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_TRUE(torch::equal(out, torch::full({3}, static_cast<float>(n_))));
}

TEST_F(MpiCommunicatorTest, BarrierCompletes) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(world_->Barrier(absl::StrCat("barrier ", i)).ok());
}

// Seconds on the host's monotonic clock (CLOCK_MONOTONIC: one clock for all
// processes of a host; mpi_tests.cmake runs every rank on this host).
double MonotonicNow() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A barrier holds every rank until the last one has entered: a late rank
// (it sleeps first) records when it entered, and no rank may have left
// before that. A barrier that returned at once would let the others out
// ~0.3 s early. Late rank first 0, then the last.
TEST_F(MpiCommunicatorTest, NoRankLeavesTheBarrierBeforeTheLastEnters) {
  for (const int late : {0, n_ - 1}) {
    SCOPED_TRACE(absl::StrCat("late rank ", late));
    if (rank_ == late) std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const double entered = MonotonicNow();
    ASSERT_TRUE(world_->Barrier("late entry").ok());
    const double left = MonotonicNow();
    torch::Tensor late_entered = torch::full({1}, entered, torch::kFloat64);
    ASSERT_TRUE(world_->Broadcast(late_entered, late, "late rank's entry time").ok());
    EXPECT_GE(left, late_entered.item<double>()) << "rank " << rank_ << " left the barrier before rank "
                                                  << late << " entered it";
  }
}

// Ends the whole job, so it is disabled: only the mpi.comm_abort_np2 entry
// runs it (GTEST_ALSO_RUN_DISABLED_TESTS=1) and checks mpirun's output.
TEST(MpiCommunicatorAbortTest, DISABLED_AbortEndsEveryRank) {
  auto world = MpiWorld(kTimeoutS);
  ASSERT_TRUE(world.ok()) << world.status();
  if ((*world)->rank() == 1) (*world)->Abort("deliberate abort (code 3)", 3);
  // The others wait (up to the timeout) until mpirun ends them.
  absl::Status st = (*world)->Barrier("never completes");
  ADD_FAILURE() << "still running after the abort: " << st;
}

}  // namespace
}  // namespace distill::worker
