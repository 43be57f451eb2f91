// OptimizerStateReader (Note [Optimizer state files]) on files written by
// hand: ranges served across shard pieces, the plain format, and the errors.
#include "worker/train/optimizer_state.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "tests/test_util/test_util.h"
#include "worker/model/safetensors.h"

namespace distill::worker {
namespace {
using distill::testing::MakeTempDir;
using Tensors = std::vector<std::pair<std::string, torch::Tensor>>;

torch::Tensor Range(int64_t begin, int64_t end) { return torch::arange(begin, end, torch::kFloat); }
torch::Tensor Step(int64_t s) { return torch::tensor(s, torch::kLong); }

void Write(const std::string& path, const Tensors& tensors) { ASSERT_TRUE(WriteSafetensors(path, tensors).ok()); }

// Parameter "w" of 10 elements whose exp_avg is 0..9, cut over 3 shards as
// ZeRO cuts it (chunks of 4: [0,4), [4,8), [8,10)).
std::string ThreeShards() {
  const std::string dir = MakeTempDir("optimizer_state");
  Write(dir + "/" + ShardStateFile(0, 3), {{SegmentKey("exp_avg", "w", 0), Range(0, 4)}, {"step", Step(7)}});
  Write(dir + "/" + ShardStateFile(1, 3), {{SegmentKey("exp_avg", "w", 4), Range(4, 8)}, {"step", Step(7)}});
  Write(dir + "/" + ShardStateFile(2, 3), {{SegmentKey("exp_avg", "w", 8), Range(8, 10)}, {"step", Step(7)}});
  return dir;
}

TEST(OptimizerStateTest, NamesFilesAndKeys) {
  EXPECT_EQ(ShardStateFile(1, 3), "optimizer-00001-of-00003.safetensors");
  EXPECT_EQ(SegmentKey("exp_avg_sq", "model.layers.0.mlp.up_proj.weight", 96),
            "exp_avg_sq/model.layers.0.mlp.up_proj.weight@96");
}

TEST(OptimizerStateTest, ServesAnyRangeAcrossShards) {
  auto reader = OptimizerStateReader::Open(ThreeShards());
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->step(), 7);
  EXPECT_EQ((*reader)->shards(), 3);
  EXPECT_TRUE((*reader)->Has("exp_avg", "w"));
  EXPECT_FALSE((*reader)->Has("master", "w"));
  // Two shards of 5 (re-sharding 3 -> 2): [0,5) and [5,10) each cross a boundary.
  for (auto [begin, end] : {std::pair<int64_t, int64_t>{0, 5}, {5, 10}, {3, 9}, {0, 10}}) {
    auto t = (*reader)->Read("exp_avg", "w", begin, end - begin);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_TRUE(torch::equal(*t, Range(begin, end))) << begin << ".." << end << ": " << *t;
  }
}

TEST(OptimizerStateTest, ReadsThePlainFileFlattened) {
  const std::string dir = MakeTempDir("optimizer_state");
  Write(dir + "/optimizer.safetensors", {{"w.exp_avg", Range(0, 6).view({2, 3})},
                                         {"w.exp_avg_sq", Range(10, 16).view({2, 3})},
                                         {"step", Step(3)}});
  auto reader = OptimizerStateReader::Open(dir);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->shards(), 1);
  auto t = (*reader)->Read("exp_avg_sq", "w", 2, 3);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(torch::equal(*t, Range(12, 15)));
}

TEST(OptimizerStateTest, ErrorsNameWhatIsMissing) {
  EXPECT_EQ(OptimizerStateReader::Open(MakeTempDir("optimizer_state")).status().code(), absl::StatusCode::kNotFound);

  std::string dir = ThreeShards();
  std::filesystem::remove(dir + "/" + ShardStateFile(1, 3));
  auto missing = OptimizerStateReader::Open(dir);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("optimizer shard missing: optimizer-00001-of-00003"), std::string::npos)
      << missing.status();

  dir = ThreeShards();
  Write(dir + "/" + ShardStateFile(0, 2), {{"step", Step(7)}});
  auto mixed = OptimizerStateReader::Open(dir);
  EXPECT_NE(mixed.status().message().find("side by side"), std::string::npos) << mixed.status();

  dir = ThreeShards();
  Write(dir + "/" + ShardStateFile(2, 3), {{SegmentKey("exp_avg", "w", 8), Range(8, 10)}, {"step", Step(6)}});
  auto steps = OptimizerStateReader::Open(dir);
  EXPECT_NE(steps.status().message().find("step 6 differs from the other shards' 7"), std::string::npos)
      << steps.status();

  auto reader = OptimizerStateReader::Open(ThreeShards());
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto past = (*reader)->Read("exp_avg", "w", 6, 6);  // the parameter grew to 12
  EXPECT_EQ(past.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(past.status().message().find("optimizer state of 'w' (exp_avg) has no element 10"), std::string::npos)
      << past.status();
  EXPECT_NE((*reader)->Read("exp_avg_sq", "w", 0, 1).status().message().find("has no exp_avg_sq of 'w'"),
            std::string::npos);
}

}  // namespace
}  // namespace distill::worker
