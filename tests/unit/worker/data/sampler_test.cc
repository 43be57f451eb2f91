#include "worker/data/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/test_util/test_util.h"

namespace distill::worker {
namespace {

constexpr int64_t kSeqLen = 4;

WindowSampler MakeSampler(int64_t num_windows, uint64_t seed, int rank = 0, int world = 1) {
  SamplerOptions options;
  options.seq_len = kSeqLen;
  options.seed = seed;
  options.rank = rank;
  options.world = world;
  // N tokens give floor((N - 1) / L) windows; +3 checks the floor.
  auto sampler = WindowSampler::Create(num_windows * kSeqLen + 1 + 3, options);
  EXPECT_TRUE(sampler.ok()) << sampler.status();
  return *std::move(sampler);
}

// Window indices of the next `n` windows, drawn `b` at a time.
std::vector<int64_t> Draw(WindowSampler& sampler, int64_t n, int64_t b) {
  std::vector<int64_t> windows;
  while (static_cast<int64_t>(windows.size()) < n) {
    for (int64_t offset : sampler.Next(b)) {
      EXPECT_EQ(offset % kSeqLen, 0);
      windows.push_back(offset / kSeqLen);
    }
  }
  return windows;
}

std::vector<int64_t> Sorted(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

std::vector<int64_t> Iota(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
  return v;
}

TEST(WindowSamplerTest, CountsFullWindowsOnly) {
  SamplerOptions options;
  options.seq_len = 4;
  EXPECT_EQ(WindowSampler::Create(5, options)->num_windows(), 1);
  EXPECT_EQ(WindowSampler::Create(8, options)->num_windows(), 1);
  EXPECT_EQ(WindowSampler::Create(9, options)->num_windows(), 2);
}

TEST(WindowSamplerTest, EveryWindowOncePerEpoch) {
  WindowSampler sampler = MakeSampler(37, 1);
  ASSERT_EQ(sampler.num_windows(), 37);
  for (int epoch = 0; epoch < 3; ++epoch) {
    EXPECT_EQ(Sorted(Draw(sampler, 37, 1)), Iota(37)) << "epoch " << epoch;
  }
  EXPECT_EQ(sampler.position(), 3 * 37);
}

TEST(WindowSamplerTest, EpochsHaveDifferentOrders) {
  WindowSampler sampler = MakeSampler(50, 1);
  std::vector<int64_t> e0 = Draw(sampler, 50, 5);
  std::vector<int64_t> e1 = Draw(sampler, 50, 5);
  EXPECT_NE(e0, e1);
  EXPECT_NE(e0, Iota(50));  // actually shuffled
}

TEST(WindowSamplerTest, SameSeedSameOrderAcrossObjects) {
  WindowSampler a = MakeSampler(50, 7);
  WindowSampler b = MakeSampler(50, 7);
  EXPECT_EQ(Draw(a, 120, 3), Draw(b, 120, 3));
}

TEST(WindowSamplerTest, DifferentSeedDifferentOrder) {
  WindowSampler a = MakeSampler(50, 7);
  WindowSampler b = MakeSampler(50, 8);
  EXPECT_NE(Draw(a, 50, 1), Draw(b, 50, 1));
}

// Golden orders from tests/reference/make_sampler_reference.py, a pure-Python
// transcription of splitmix64 + Fisher-Yates and the global dealing (see
// Note [Portable shuffle] in sampler.cc): the order must not change with the
// compiler or standard library. Every rank of each case, across epochs.
TEST(WindowSamplerTest, OrderMatchesReferenceImplementation) {
  const nlohmann::json j = distill::testing::ReadJson(distill::testing::ReferencePath("sampler/orders.json"));
  ASSERT_TRUE(j.is_object());
  int cases = 0;
  for (const auto& c : j.at("cases")) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    SamplerOptions options;
    options.seq_len = c.at("seq_len").get<int64_t>();
    options.seed = std::stoull(c.at("seed").get<std::string>());
    options.rank = c.at("rank").get<int>();
    options.world = c.at("world").get<int>();
    const int64_t num_windows = c.at("num_windows").get<int64_t>();
    // + seq_len - 1 tokens: still num_windows windows (the floor).
    auto sampler = WindowSampler::Create(num_windows * options.seq_len + options.seq_len, options);
    ASSERT_TRUE(sampler.ok()) << sampler.status();
    ASSERT_EQ(sampler->num_windows(), num_windows);
    const int64_t b = c.at("b").get<int64_t>();
    std::vector<int64_t> windows;
    for (int64_t k = 0; k < c.at("draws").get<int64_t>(); ++k) {
      for (int64_t offset : sampler->Next(b)) {
        EXPECT_EQ(offset % options.seq_len, 0);
        windows.push_back(offset / options.seq_len);
      }
    }
    EXPECT_EQ(windows, c.at("windows").get<std::vector<int64_t>>());
    ++cases;
  }
  EXPECT_GE(cases, 10);
}

TEST(WindowSamplerTest, ResumeContinuesLikeAnUninterruptedRun) {
  WindowSampler full = MakeSampler(23, 3);
  std::vector<int64_t> expected = Draw(full, 60, 3);  // crosses two epoch boundaries

  WindowSampler first = MakeSampler(23, 3);
  std::vector<int64_t> got = Draw(first, 21, 3);
  WindowSampler resumed = MakeSampler(23, 3);
  resumed.set_position(first.position());
  std::vector<int64_t> rest = Draw(resumed, 39, 3);
  got.insert(got.end(), rest.begin(), rest.end());
  EXPECT_EQ(got, expected);
}

TEST(WindowSamplerTest, TwoRanksSeeWhatOneRankWithDoubleBatchSees) {
  constexpr int64_t kWindows = 29;  // not a multiple of the batch: steps cross epochs
  constexpr int64_t b = 3;
  WindowSampler single = MakeSampler(kWindows, 11, /*rank=*/0, /*world=*/1);
  WindowSampler rank0 = MakeSampler(kWindows, 11, /*rank=*/0, /*world=*/2);
  WindowSampler rank1 = MakeSampler(kWindows, 11, /*rank=*/1, /*world=*/2);
  std::vector<int64_t> all_single, all_ranks;
  for (int step = 0; step < 25; ++step) {
    std::vector<int64_t> s = single.Next(2 * b);
    std::vector<int64_t> r0 = rank0.Next(b);
    std::vector<int64_t> r1 = rank1.Next(b);
    std::vector<int64_t> both = r0;
    both.insert(both.end(), r1.begin(), r1.end());
    EXPECT_EQ(both, s) << "step " << step;
    all_single.insert(all_single.end(), s.begin(), s.end());
    all_ranks.insert(all_ranks.end(), both.begin(), both.end());
    EXPECT_EQ(rank0.position(), single.position());
    EXPECT_EQ(rank1.position(), single.position());
  }
  EXPECT_EQ(Sorted(all_ranks), Sorted(all_single));
}

TEST(WindowSamplerTest, OffsetsAreMultiplesOfSeqLenInsideTheStream) {
  SamplerOptions options;
  options.seq_len = 5;
  const int64_t n = 53;  // 10 windows of 6 tokens at offsets 0, 5, ..., 45
  auto sampler = WindowSampler::Create(n, options);
  ASSERT_TRUE(sampler.ok());
  for (int64_t offset : sampler->Next(10)) {
    EXPECT_EQ(offset % 5, 0);
    EXPECT_LE(offset + options.seq_len + 1, n);
  }
}

TEST(WindowSamplerTest, TooShortStreamIsInvalidArgument) {
  SamplerOptions options;
  options.seq_len = 8;
  auto sampler = WindowSampler::Create(8, options);
  ASSERT_EQ(sampler.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sampler.status().message(), "token stream has 8 tokens, fewer than seq_len + 1 = 9");
}

TEST(WindowSamplerTest, BadLayoutIsInvalidArgument) {
  SamplerOptions options;
  options.seq_len = 0;
  EXPECT_EQ(WindowSampler::Create(100, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.seq_len = 4;
  options.world = 0;
  EXPECT_EQ(WindowSampler::Create(100, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.world = 2;
  options.rank = 2;
  EXPECT_EQ(WindowSampler::Create(100, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.rank = -1;
  EXPECT_EQ(WindowSampler::Create(100, options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace distill::worker
