// ShardedAdamW in one process: the ZeRO layout worked out by hand, and bf16
// weights with fp32 master weights (one rank, loopback) against AdamW on the
// fp32 master. The multi-rank tests (stages 1 and 2 against plain data
// parallelism, state per rank, re-sharding) are sharded_adamw_mpi_test.cc.
#include "worker/train/sharded_adamw.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "worker/comm/loopback_communicator.h"

namespace distill::worker {
namespace {

TEST(ShardLayoutTest, ChunksAndSegmentsByHand) {
  // Parameters of 5, 3 and 4 elements; buckets [2, 1] (7 elements) and [0]
  // (5). Three ranks: chunks of ceil(7/3) = 3 and ceil(5/3) = 2.
  const std::vector<std::vector<int64_t>> buckets = {{2, 1}, {0}};
  const std::vector<int64_t> numels = {5, 3, 4};
  // Bucket 0 is p2[0..4) then p1[0..3): rank 0 owns [0,3) = p2[0,3); rank 1
  // [3,6) = p2[3,4) + p1[0,2); rank 2 [6,7) = p1[2,3) and 2 padding.
  // Bucket 1 is p0: ranks own [0,2), [2,4), [4,5).
  const ShardLayout r0 = ShardLayout::Make(buckets, numels, 0, 3);
  const ShardLayout r1 = ShardLayout::Make(buckets, numels, 1, 3);
  const ShardLayout r2 = ShardLayout::Make(buckets, numels, 2, 3);
  EXPECT_EQ(r0.chunk, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(r0.shard_numel, 5);
  auto seg = [](const ShardSegment& s) {
    return std::vector<int64_t>{s.param, s.offset, s.length, s.bucket, s.chunk_offset, s.shard_offset};
  };
  ASSERT_EQ(r0.segments.size(), 2u);
  EXPECT_EQ(seg(r0.segments[0]), (std::vector<int64_t>{2, 0, 3, 0, 0, 0}));
  EXPECT_EQ(seg(r0.segments[1]), (std::vector<int64_t>{0, 0, 2, 1, 0, 3}));
  ASSERT_EQ(r1.segments.size(), 3u);
  EXPECT_EQ(seg(r1.segments[0]), (std::vector<int64_t>{2, 3, 1, 0, 0, 0}));
  EXPECT_EQ(seg(r1.segments[1]), (std::vector<int64_t>{1, 0, 2, 0, 1, 1}));
  EXPECT_EQ(seg(r1.segments[2]), (std::vector<int64_t>{0, 2, 2, 1, 0, 3}));
  ASSERT_EQ(r2.segments.size(), 2u);
  EXPECT_EQ(seg(r2.segments[0]), (std::vector<int64_t>{1, 2, 1, 0, 0, 0}));
  EXPECT_EQ(seg(r2.segments[1]), (std::vector<int64_t>{0, 4, 1, 1, 0, 3}));
  // Every element of every parameter is owned exactly once.
  std::vector<std::vector<int>> owners = {std::vector<int>(5), std::vector<int>(3), std::vector<int>(4)};
  for (const ShardLayout* l : {&r0, &r1, &r2}) {
    for (const ShardSegment& s : l->segments) {
      for (int64_t j = s.offset; j < s.offset + s.length; ++j) ++owners[s.param][j];
    }
  }
  for (const auto& o : owners) EXPECT_EQ(o, std::vector<int>(o.size(), 1));
}

// Parameters (a matrix with decay, a vector without) and their gradients,
// the same values in `dtype` for every call.
std::vector<NamedParam> Params(torch::ScalarType dtype) {
  torch::manual_seed(7);
  torch::Tensor w = torch::randn({6, 5}).to(dtype).requires_grad_(true);
  torch::Tensor b = torch::randn({7}).to(dtype).requires_grad_(true);
  return {{"w", w, true}, {"b", b, false}};
}

void SetGrads(const std::vector<NamedParam>& params, int step) {
  torch::manual_seed(100 + step);
  for (const NamedParam& p : params) {
    p.param.mutable_grad() = torch::randn(p.param.sizes()).to(p.param.scalar_type());
  }
}

std::vector<torch::Tensor> Tensors(const std::vector<NamedParam>& params) {
  std::vector<torch::Tensor> out;
  for (const NamedParam& p : params) out.push_back(p.param);
  return out;
}

TEST(ShardedAdamWTest, Bf16WeightsFollowFp32MasterWeightsExactly) {
  AdamWOptions o;
  o.weight_decay = 0.1;
  std::vector<NamedParam> bf16 = Params(torch::kBFloat16);
  // The reference: AdamW on float32 copies of the bf16 starting values, fed
  // the same (bf16) gradients widened to float32.
  std::vector<NamedParam> master;
  for (const NamedParam& p : bf16) {
    master.push_back({p.name, p.param.detach().to(torch::kFloat).requires_grad_(true), p.decay});
  }
  AdamW reference(master, o);
  auto loopback = MakeLoopbackCommunicator();
  auto sharded = ShardedAdamW::Create(bf16, GradReducer::Plan(Tensors(bf16), 64), *loopback, nullptr, o);
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  EXPECT_TRUE((*sharded)->has_master());
  for (int step = 0; step < 5; ++step) {
    SetGrads(bf16, step);
    for (size_t i = 0; i < bf16.size(); ++i) master[i].param.mutable_grad() = bf16[i].param.grad().to(torch::kFloat);
    // No clipping here: clipping bf16 gradients in place rounds them. The
    // norm of bf16 gradients is rounded to bf16 per parameter (2^-8 relative).
    auto norm = (*sharded)->ClipGradients(0.0);
    ASSERT_TRUE(norm.ok());
    EXPECT_NEAR(*norm, ClipGradNorm(master, 0.0), *norm * 1e-2);
    ASSERT_TRUE((*sharded)->Update(1e-2).ok());
    reference.Step(1e-2);
  }
  // The weights are the master rounded to bf16, and the master (in the
  // state tensors) is the reference bit for bit.
  for (size_t i = 0; i < bf16.size(); ++i) {
    EXPECT_EQ(bf16[i].param.scalar_type(), torch::kBFloat16);
    EXPECT_TRUE(torch::equal(bf16[i].param, master[i].param.to(torch::kBFloat16))) << bf16[i].name;
  }
  int masters = 0;
  for (const auto& [key, t] : (*sharded)->StateTensors()) {
    if (key.rfind("master/w@", 0) != 0) continue;
    ++masters;
    const int64_t offset = std::stoll(key.substr(key.find('@') + 1));
    EXPECT_TRUE(torch::equal(t, master[0].param.detach().view({-1}).narrow(0, offset, t.numel()))) << key;
  }
  EXPECT_GE(masters, 1);
  // Moments and master: 12 bytes per parameter element (AdamW alone: 8).
  EXPECT_EQ((*sharded)->StateBytes(), 12 * (30 + 7));
  EXPECT_EQ(reference.StateBytes(), 8 * (30 + 7));
}

TEST(ShardedAdamWTest, Fp32OnOneRankIsAdamWBitForBit) {
  AdamWOptions o;
  o.weight_decay = 0.01;
  std::vector<NamedParam> a = Params(torch::kFloat), b = Params(torch::kFloat);
  AdamW plain(a, o);
  auto loopback = MakeLoopbackCommunicator();
  auto sharded = ShardedAdamW::Create(b, GradReducer::Plan(Tensors(b), 40), *loopback, nullptr, o);
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  EXPECT_FALSE((*sharded)->has_master());
  for (int step = 0; step < 4; ++step) {
    SetGrads(a, step);
    SetGrads(b, step);
    plain.Step(3e-3);
    ASSERT_TRUE((*sharded)->Update(3e-3).ok());
  }
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i].param, b[i].param)) << a[i].name;
}

}  // namespace
}  // namespace distill::worker
