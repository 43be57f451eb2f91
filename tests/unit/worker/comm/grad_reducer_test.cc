// GradReducer on real MPI ranks (mpirun -np N mpi_tests, N >= 2). Each rank
// backpropagates its own loss; the reference average is recomputed on every
// rank from all ranks' losses with plain autograd on separate copies of the
// parameters (no hooks, no communication). Float32, tolerance 1e-5 relative:
// only the order of the float additions differs.
#include "worker/comm/grad_reducer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/test_util/mpi_fixture.h"
#include "worker/comm/mpi_communicator.h"

namespace distill::worker {
namespace {

// A two-layer net of raw tensors; `u` (registered first, so its bucket is
// last) never gets a gradient.
struct Net {
  torch::Tensor u, w1, b1, w2, b2;

  static Net Make() {
    // Deterministic and identical on every rank, without the global RNG.
    auto init = [](std::vector<int64_t> shape, double phase) {
      int64_t n = 1;
      for (int64_t d : shape) n *= d;
      return torch::sin(torch::arange(n, torch::kFloat32) * 0.7 + phase)
          .reshape(shape)
          .requires_grad_();
    };
    return Net{init({3}, 0.1), init({4, 3}, 0.2), init({4}, 0.3), init({2, 4}, 0.4),
               init({2}, 0.5)};
  }
  Net Copy() const {
    auto c = [](const torch::Tensor& t) { return t.detach().clone().requires_grad_(); };
    return Net{c(u), c(w1), c(b1), c(w2), c(b2)};
  }
  std::vector<torch::Tensor> params() const { return {u, w1, b1, w2, b2}; }

  // Rank r's loss in micro-step `micro`: its own inputs and weight.
  torch::Tensor Loss(int r, int micro) const {
    torch::Tensor x =
        torch::cos(torch::arange(15, torch::kFloat32).reshape({5, 3}) * (r + 1) * 0.3 + micro);
    torch::Tensor h = torch::tanh(x.matmul(w1.t()) + b1);
    torch::Tensor y = h.matmul(w2.t()) + b2;
    return (y * y).sum() * (0.1 * (r + 1));
  }
};

// The average over all `n` ranks of the gradients of sum over `micros` of
// Loss(r, micro), by plain autograd on a copy of `net`.
std::vector<torch::Tensor> ReferenceAverage(const Net& net, int n, std::vector<int> micros) {
  Net ref = net.Copy();
  std::vector<torch::Tensor> sum;
  for (const torch::Tensor& p : ref.params()) sum.push_back(torch::zeros_like(p));
  for (int r = 0; r < n; ++r) {
    for (int micro : micros) {
      auto grads = torch::autograd::grad({ref.Loss(r, micro)}, ref.params(), {}, false, false,
                                         /*allow_unused=*/true);
      for (size_t i = 0; i < grads.size(); ++i) {
        if (grads[i].defined()) sum[i] += grads[i];
      }
    }
  }
  for (torch::Tensor& s : sum) s /= n;
  return sum;
}

void ExpectGradsEqual(const std::vector<torch::Tensor>& params,
                      const std::vector<torch::Tensor>& want) {
  ASSERT_EQ(params.size(), want.size());
  for (size_t i = 0; i < params.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("parameter ", i));
    ASSERT_TRUE(params[i].grad().defined());
    EXPECT_TRUE(torch::allclose(params[i].grad(), want[i], 1e-5, 1e-6))
        << params[i].grad() << "\nwant\n"
        << want[i];
  }
}

class GradReducerTest : public distill::testing::MpiTest {};

TEST_F(GradReducerTest, AveragesEveryRanksGradients) {
  Net net = Net::Make();
  auto reducer = GradReducer::Create(net.params(), *world_, GradReducerOptions{});
  ASSERT_TRUE(reducer.ok()) << reducer.status();
  EXPECT_EQ((*reducer)->stats().buckets, 1);
  EXPECT_EQ((*reducer)->stats().bytes, (3 + 12 + 4 + 8 + 2) * 4);

  (*reducer)->Arm();
  net.Loss(rank_, 0).backward();
  ASSERT_TRUE((*reducer)->Finish().ok());
  ExpectGradsEqual(net.params(), ReferenceAverage(net, n_, {0}));
  // The unused parameter: zeros, created by Finish.
  EXPECT_TRUE(torch::equal(net.u.grad(), torch::zeros({3})));
  // Its one bucket waits for `u`, which gets no gradient: launched by Finish.
  EXPECT_EQ((*reducer)->stats().launched_in_backward, 0);

  // Once the reducer is gone its hooks are too: backward accumulates locally.
  reducer->reset();
  for (const torch::Tensor& p : net.params()) p.mutable_grad() = torch::Tensor();
  net.Loss(rank_, 0).backward();
  Net alone = net.Copy();
  alone.Loss(rank_, 0).backward();
  EXPECT_TRUE(torch::allclose(net.w1.grad(), alone.w1.grad()));
}

TEST_F(GradReducerTest, AccumulatesUnarmedMicroStepsIntoTheAverage) {
  Net net = Net::Make();
  auto reducer = GradReducer::Create(net.params(), *world_, GradReducerOptions{});
  ASSERT_TRUE(reducer.ok()) << reducer.status();
  for (int step = 0; step < 2; ++step) {
    SCOPED_TRACE(absl::StrCat("step ", step));
    for (const torch::Tensor& p : net.params()) p.mutable_grad() = torch::Tensor();
    net.Loss(rank_, 1).backward();  // accumulation micro-step: no communication
    (*reducer)->Arm();
    net.Loss(rank_, 2).backward();
    ASSERT_TRUE((*reducer)->Finish().ok());
    ExpectGradsEqual(net.params(), ReferenceAverage(net, n_, {1, 2}));
  }
}

TEST_F(GradReducerTest, SmallBucketsLaunchInReverseOrderDuringBackward) {
  // Bytes: u 12, w1 48, b1 16, w2 32, b2 8. Reverse order within 40 bytes:
  // {b2, w2} (40), {b1}, {w1} (48, alone), {u}.
  Net net = Net::Make();
  GradReducerOptions options;
  options.bucket_bytes = 40;
  auto reducer = GradReducer::Create(net.params(), *world_, options);
  ASSERT_TRUE(reducer.ok()) << reducer.status();
  const std::vector<std::vector<int64_t>> want_layout = {{4, 3}, {2}, {1}, {0}};
  EXPECT_EQ((*reducer)->BucketLayout(), want_layout);
  EXPECT_EQ((*reducer)->stats().buckets, 4);

  for (int step = 0; step < 3; ++step) {
    for (const torch::Tensor& p : net.params()) p.mutable_grad() = torch::Tensor();
    (*reducer)->Arm();
    net.Loss(rank_, step).backward();
    ASSERT_TRUE((*reducer)->Finish().ok());
    ExpectGradsEqual(net.params(), ReferenceAverage(net, n_, {step}));
    // Buckets 0-2 complete during backward; {u} never does.
    EXPECT_EQ((*reducer)->stats().launched_in_backward, 3);
    EXPECT_GE((*reducer)->stats().finish_wait_s, 0.0);
  }
}

TEST_F(GradReducerTest, CutsBucketsWhereTheDtypeChanges) {
  torch::Tensor a = torch::full({2}, 1.0f).requires_grad_();
  torch::Tensor b = torch::full({2}, 2.0, torch::kFloat64).requires_grad_();
  torch::Tensor c = torch::full({2}, 3.0f).requires_grad_();
  auto reducer = GradReducer::Create({a, b, c}, *world_, GradReducerOptions{});
  ASSERT_TRUE(reducer.ok()) << reducer.status();
  const std::vector<std::vector<int64_t>> want_layout = {{2}, {1}, {0}};
  EXPECT_EQ((*reducer)->BucketLayout(), want_layout);
  // Rank r's gradients are (r + 1) * (1, 2, 3): the average is (n + 1) / 2 times.
  (*reducer)->Arm();
  ((a.sum() + 2 * b.sum().to(torch::kFloat32) + 3 * c.sum()) * (rank_ + 1)).backward();
  ASSERT_TRUE((*reducer)->Finish().ok());
  const double k = (n_ + 1) / 2.0;
  EXPECT_TRUE(torch::allclose(a.grad(), torch::full({2}, k * 1, torch::kFloat32)));
  EXPECT_TRUE(torch::allclose(b.grad(), torch::full({2}, k * 2, torch::kFloat64)));
  EXPECT_TRUE(torch::allclose(c.grad(), torch::full({2}, k * 3, torch::kFloat32)));
  EXPECT_EQ(b.grad().scalar_type(), torch::kFloat64);
}

TEST_F(GradReducerTest, SecondBackwardAfterALaunchFailsAndTheReducerRefusesFurtherUse) {
  Net net = Net::Make();
  GradReducerOptions options;
  options.bucket_bytes = 40;  // buckets {b2, w2}, {b1}, {w1} launch during backward
  auto reducer = GradReducer::Create(net.params(), *world_, options);
  ASSERT_TRUE(reducer.ok()) << reducer.status();
  (*reducer)->Arm();
  net.Loss(rank_, 0).backward();
  net.Loss(rank_, 1).backward();
  absl::Status st = (*reducer)->Finish();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_NE(std::string(st.message()).find("after its bucket 0 was launched"), std::string::npos)
      << st;
  (*reducer)->Arm();
  EXPECT_EQ((*reducer)->Finish().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(GradReducerTest, RejectsParametersThatCannotBeReduced) {
  torch::Tensor frozen = torch::zeros({2});
  EXPECT_EQ(GradReducer::Create({frozen}, *world_, GradReducerOptions{}).status().code(),
            absl::StatusCode::kInvalidArgument);
  torch::Tensor p = torch::zeros({2}).requires_grad_();
  EXPECT_EQ(GradReducer::Create({p, p}, *world_, GradReducerOptions{}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// reduce_scatter (ZeRO-2) on a chain of 8 layers, one bucket each: the
// buckets are reduce-scattered while backward runs, at most two in flight,
// so at most three bucket buffers are ever alive (a buffer per layer alive at
// the end of backward was the bug this catches); each chunk is this rank's
// slice of the average.
TEST_F(GradReducerTest, ReduceScatterFoldsBucketsDuringBackward) {
  constexpr int kLayers = 8;
  std::vector<torch::Tensor> w;
  for (int i = 0; i < kLayers; ++i) {
    w.push_back((torch::eye(4) + 0.01 * torch::sin(torch::arange(16, torch::kFloat32) + i).reshape({4, 4}))
                    .requires_grad_());
  }
  auto loss = [&](const std::vector<torch::Tensor>& ws, int r) {
    torch::Tensor h = torch::cos(torch::arange(12, torch::kFloat32).reshape({3, 4}) * (r + 1));
    for (const torch::Tensor& m : ws) h = torch::tanh(h.matmul(m.t()));
    return (h * h).sum();
  };
  GradReducerOptions options;
  options.bucket_bytes = 64;  // one 4x4 float matrix
  options.reduce_scatter = true;
  auto reducer = GradReducer::Create(w, *world_, options);
  ASSERT_TRUE(reducer.ok()) << reducer.status();
  ASSERT_EQ((*reducer)->stats().buckets, kLayers);
  (*reducer)->ZeroChunks();
  (*reducer)->Arm();
  loss(w, rank_).backward();
  ASSERT_TRUE((*reducer)->Finish().ok());
  EXPECT_EQ((*reducer)->stats().launched_in_backward, kLayers);
  // Two in flight and the one being filled.
  EXPECT_LE((*reducer)->stats().max_live_buckets, 3);

  // The reference: every rank's gradient by plain autograd, averaged.
  std::vector<torch::Tensor> avg(kLayers);
  for (int r = 0; r < n_; ++r) {
    std::vector<torch::Tensor> copy;
    for (const torch::Tensor& m : w) copy.push_back(m.detach().clone().requires_grad_());
    auto grads = torch::autograd::grad({loss(copy, r)}, copy);
    for (int i = 0; i < kLayers; ++i) avg[i] = r == 0 ? grads[i] / n_ : avg[i] + grads[i] / n_;
  }
  const int64_t chunk = (16 + n_ - 1) / n_;
  for (int64_t k = 0; k < kLayers; ++k) {
    const torch::Tensor want = torch::constant_pad_nd(avg[kLayers - 1 - k].reshape({-1}), {0, chunk * n_ - 16})
                                   .narrow(0, chunk * rank_, chunk);
    EXPECT_TRUE(torch::allclose((*reducer)->chunk(k), want, 1e-5, 1e-6)) << "bucket " << k;
    EXPECT_FALSE(w[kLayers - 1 - k].grad().defined());
  }
}

TEST_F(GradReducerTest, CheckInSyncPassesForEqualWeightsAndFailsEverywhereOnOneChangedElement) {
  Net net = Net::Make();
  EXPECT_TRUE(GradReducer::CheckInSync(net.params(), *world_, 7).ok());

  // The last rank nudges one element by one ulp.
  const int odd = n_ - 1;
  if (rank_ == odd) {
    torch::NoGradGuard no_grad;
    float v = net.w2[1][2].item<float>();
    net.w2[1][2] = std::nextafter(v, 10.0f);
  }
  absl::Status st = GradReducer::CheckInSync(net.params(), *world_, 8);
  ASSERT_EQ(st.code(), absl::StatusCode::kInternal) << st;
  const std::string msg(st.message());
  EXPECT_NE(msg.find("step 8: student weights differ across ranks"), std::string::npos) << msg;
  EXPECT_NE(msg.find(absl::StrCat("rank ", odd, " checksum")), std::string::npos) << msg;
  EXPECT_NE(msg.find("vs rank 0"), std::string::npos) << msg;
  for (int r = 1; r < odd; ++r)
    EXPECT_EQ(msg.find(absl::StrCat("rank ", r, " checksum")), std::string::npos) << msg;
}

}  // namespace
}  // namespace distill::worker
