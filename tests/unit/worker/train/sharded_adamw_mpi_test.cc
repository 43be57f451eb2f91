// ShardedAdamW on real MPI ranks (mpirun -np 2 and 3: mpi_tests.cmake):
// ZeRO-1 gives plain data parallelism's weights bit for bit, ZeRO-2 within
// the rounding of a reordered sum, each rank holds 1/S of the state (counted
// by the allocator), and a sharded checkpoint restores the same global state
// on any number of ranks.
#include <c10/core/CPUAllocator.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <vector>

#include "tests/test_util/counting_allocator.h"
#include "tests/test_util/mpi_fixture.h"
#include "worker/comm/grad_reducer.h"
#include "worker/train/checkpoint.h"
#include "worker/train/sharded_adamw.h"

namespace distill::worker {
namespace {

class ShardedAdamWMpiTest : public distill::testing::MpiTest {};

// Parameters of odd sizes (buckets of 64 bytes cut across them, chunks cut
// inside them), the same on every rank.
std::vector<NamedParam> Params() {
  torch::manual_seed(11);
  std::vector<NamedParam> out;
  int i = 0;
  for (std::vector<int64_t> shape : {std::vector<int64_t>{7, 5}, {13}, {3, 3}, {29}, {4, 6}}) {
    out.push_back({"p" + std::to_string(i++), torch::randn(shape).requires_grad_(true), shape.size() == 2});
  }
  return out;
}

std::vector<torch::Tensor> Tensors(const std::vector<NamedParam>& params) {
  std::vector<torch::Tensor> out;
  for (const NamedParam& p : params) out.push_back(p.param);
  return out;
}

// This rank's gradient of step `step` (different on every rank).
void SetGrads(const std::vector<NamedParam>& params, int rank, int step) {
  torch::manual_seed(1000 * step + rank);
  for (const NamedParam& p : params) p.param.mutable_grad() = torch::randn(p.param.sizes());
}

constexpr int64_t kBucketBytes = 64;
constexpr double kLr = 1e-2;

AdamWOptions Options() {
  AdamWOptions o;
  o.weight_decay = 0.1;
  return o;
}

// Plain data parallelism: all-reduced gradients, clipping, AdamW.
struct Plain {
  std::vector<NamedParam> params = Params();
  std::unique_ptr<GradReducer> reducer;
  std::unique_ptr<AdamW> adam;
  Plain(Communicator& comm) {
    reducer = *GradReducer::Create(Tensors(params), comm, GradReducerOptions{kBucketBytes, false});
    adam = std::make_unique<AdamW>(params, Options());
  }
  void Step(int rank, int step, double clip) {
    SetGrads(params, rank, step);
    ASSERT_TRUE(reducer->Finish().ok());
    ClipGradNorm(params, clip);
    adam->Step(kLr);
  }
};

// ZeRO stage 1 or 2 on its own copy of the parameters.
struct Zero {
  std::vector<NamedParam> params = Params();
  std::unique_ptr<GradReducer> reducer;
  std::unique_ptr<ShardedAdamW> adam;
  Zero(Communicator& comm, int stage) {
    reducer = *GradReducer::Create(Tensors(params), comm, GradReducerOptions{kBucketBytes, stage == 2});
    adam = *ShardedAdamW::Create(params, reducer->BucketLayout(), comm, stage == 2 ? reducer.get() : nullptr,
                                 Options());
  }
  void Step(int rank, int step, double clip) {
    adam->ZeroGrad();
    SetGrads(params, rank, step);
    ASSERT_TRUE(reducer->Finish().ok());
    ASSERT_TRUE(adam->ClipGradients(clip).ok());
    ASSERT_TRUE(adam->Update(kLr).ok());
  }
};

TEST_F(ShardedAdamWMpiTest, StageOneIsPlainDataParallelismBitForBit) {
  Plain plain(*world_);
  Zero zero(*world_, 1);
  for (int step = 0; step < 4; ++step) {
    plain.Step(rank_, step, 1.0);
    zero.Step(rank_, step, 1.0);
  }
  for (size_t i = 0; i < plain.params.size(); ++i) {
    EXPECT_TRUE(torch::equal(plain.params[i].param, zero.params[i].param)) << plain.params[i].name;
  }
  EXPECT_TRUE(GradReducer::CheckInSync(Tensors(zero.params), *world_, 4).ok());
}

// Stage 2's average of a bucket chunk is the reduce-scatter's, not the
// all-reduce's: the same n terms, summed in an order MPI chooses (exact for
// 2 ranks, within 2u relative for 3). Its clipping norm sums squares in
// float64 instead of float32 norms per parameter. Both move the clipped
// gradient by a few u relative; AdamW's update m / sqrt(v) is invariant to
// scaling g, so each step moves a weight by at most ~lr * 4u more (eps 1e-8
// only matters for |g| ~ 1e-8, which randn does not give). Over 4 steps of
// lr 1e-2 that is ~1e-8; 1e-6 leaves room and still catches a wrong chunk
// (an error of order lr = 1e-2).
TEST_F(ShardedAdamWMpiTest, StageTwoIsPlainDataParallelismWithinRounding) {
  Plain plain(*world_);
  Zero zero(*world_, 2);
  for (int step = 0; step < 4; ++step) {
    plain.Step(rank_, step, 1.0);
    zero.Step(rank_, step, 1.0);
  }
  for (size_t i = 0; i < plain.params.size(); ++i) {
    EXPECT_LE((plain.params[i].param - zero.params[i].param).abs().max().item<float>(), 1e-6f) << plain.params[i].name;
    EXPECT_FALSE(zero.params[i].param.grad().defined()) << "stage 2 keeps no full gradient";
  }
  EXPECT_TRUE(GradReducer::CheckInSync(Tensors(zero.params), *world_, 4).ok());
}

// Counted by the allocator: AdamW allocates 8 bytes (two float32 moments)
// per element; a rank of ShardedAdamW 8 per element of its chunks, whose sum
// is at most 1/S of the elements plus one element of padding per bucket.
TEST_F(ShardedAdamWMpiTest, EachRankAllocatesOneSthOfTheState) {
  std::vector<NamedParam> params = Params();
  int64_t elements = 0;
  for (const NamedParam& p : params) elements += p.param.numel();
  const auto buckets = GradReducer::Plan(Tensors(params), kBucketBytes);
  static distill::testing::CountingCpuAllocator* counting =
      new distill::testing::CountingCpuAllocator(c10::GetCPUAllocator());
  c10::Allocator* base = c10::GetCPUAllocator();
  c10::SetCPUAllocator(counting, 255);
  const int64_t before_plain = counting->Reset();
  auto plain = std::make_unique<AdamW>(params, Options());
  const int64_t plain_bytes = counting->Reset() - before_plain;
  auto sharded = ShardedAdamW::Create(params, buckets, *world_, nullptr, Options());
  const int64_t sharded_bytes = counting->Reset() - before_plain - plain_bytes;
  c10::SetCPUAllocator(base, 255);
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  EXPECT_EQ(plain_bytes, 8 * elements);
  EXPECT_EQ(sharded_bytes, 8 * (*sharded)->layout().shard_numel);
  EXPECT_EQ(sharded_bytes, (*sharded)->StateBytes());
  EXPECT_LE(sharded_bytes * n_, plain_bytes + 8 * n_ * static_cast<int64_t>(buckets.size()));
  EXPECT_GE(sharded_bytes * n_, plain_bytes);
}

// The state of S ranks, saved as S shards, restored on 1 rank (plain AdamW)
// and on S - 1 ranks (re-sharded) equals the plain run's state exactly.
TEST_F(ShardedAdamWMpiTest, CheckpointRestoresTheGlobalStateOnAnyRankCount) {
  Plain plain(*world_);
  Zero zero(*world_, 1);
  for (int step = 0; step < 3; ++step) {
    plain.Step(rank_, step, 0.0);
    zero.Step(rank_, step, 0.0);
  }
  const std::string root = distill::testing::SharedTempDir(*world_, "zero_ckpt");
  CheckpointState st;
  st.step = 3;
  st.method = "full";
  auto dir = SaveCheckpoint(root, st, zero.params, *zero.adam, 2, *world_);
  ASSERT_TRUE(dir.ok()) << dir.status();
  ASSERT_TRUE(world_->Barrier("checkpoint written").ok());
  for (int r = 0; r < n_; ++r) EXPECT_TRUE(std::filesystem::exists(*dir + "/" + ShardStateFile(r, n_))) << r;
  EXPECT_FALSE(std::filesystem::exists(root + "/.pending_step_00000003"));
  const std::map<std::string, torch::Tensor> want = [&] {
    std::map<std::string, torch::Tensor> m;
    for (auto& [k, t] : plain.adam->StateDict()) m[k] = t;
    return m;
  }();

  // One rank's view: plain AdamW reads all S shards.
  std::vector<NamedParam> fresh = Params();
  AdamW one(fresh, Options());
  auto loaded = LoadCheckpoint(*dir, fresh, one);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(one.step_count(), 3);
  for (auto& [k, t] : one.StateDict()) EXPECT_TRUE(torch::equal(t, want.at(k))) << k;
  for (size_t i = 0; i < fresh.size(); ++i) EXPECT_TRUE(torch::equal(fresh[i].param, zero.params[i].param));

  // S - 1 ranks: the last rank sits out.
  auto sub = world_->Split(rank_ < n_ - 1 ? 0 : 1, rank_);
  ASSERT_TRUE(sub.ok()) << sub.status();
  if (rank_ < n_ - 1) {
    std::vector<NamedParam> p = Params();
    auto resharded = ShardedAdamW::Create(p, GradReducer::Plan(Tensors(p), kBucketBytes), **sub, nullptr, Options());
    ASSERT_TRUE(resharded.ok());
    auto again = LoadCheckpoint(*dir, p, **resharded);
    ASSERT_TRUE(again.ok()) << again.status();
    for (const auto& [key, t] : (*resharded)->StateTensors()) {
      if (key == "step") continue;
      const std::string kind = key.substr(0, key.find('/'));
      const std::string name = key.substr(key.find('/') + 1, key.find('@') - key.find('/') - 1);
      const int64_t offset = std::stoll(key.substr(key.find('@') + 1));
      EXPECT_TRUE(torch::equal(t, want.at(name + "." + kind).view({-1}).narrow(0, offset, t.numel()))) << key;
    }
  }
}

}  // namespace
}  // namespace distill::worker
