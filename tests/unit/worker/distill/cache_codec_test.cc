#include "worker/distill/cache_codec.h"
#include "worker/distill/teacher_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace distill::worker {
namespace {

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

// n positions of k distinct random ids in [0, vocab) with logits ~ N(0, 3)
// sorted descending (the teacher's order), and m scalars.
TopKBlock RandomBlock(int64_t n, int32_t k, int32_t m, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> logit(0.0f, 3.0f);
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(vocab - 1));
  TopKBlock b;
  b.positions = n;
  b.k = k;
  b.scalars = m;
  std::vector<int32_t> all(vocab);
  std::iota(all.begin(), all.end(), 0);
  for (int64_t p = 0; p < n; ++p) {
    std::set<int32_t> ids;
    if (k * 4 > vocab) {
      std::shuffle(all.begin(), all.end(), rng);
      ids.insert(all.begin(), all.begin() + k);
    }
    while (static_cast<int32_t>(ids.size()) < k) ids.insert(id(rng));
    std::vector<int32_t> row(ids.begin(), ids.end());
    std::shuffle(row.begin(), row.end(), rng);
    std::vector<float> z(k);
    for (float& v : z) v = logit(rng);
    std::sort(z.begin(), z.end(), std::greater<float>());
    b.values.insert(b.values.end(), z.begin(), z.end());
    b.ids.insert(b.ids.end(), row.begin(), row.end());
    for (int32_t j = 0; j < m; ++j) b.extra.push_back(logit(rng) + 10.0f);
  }
  return b;
}

std::string Encode(const TopKBlock& b, CacheEncoding e, int64_t vocab) {
  std::string out;
  EXPECT_TRUE(EncodeTopK(b, e, vocab, &out).ok());
  return out;
}

void ExpectBitIdentical(const TopKBlock& a, const TopKBlock& b) {
  ASSERT_EQ(a.values.size(), b.values.size());
  ASSERT_EQ(a.extra.size(), b.extra.size());
  EXPECT_EQ(a.ids, b.ids);
  for (size_t i = 0; i < a.values.size(); ++i) {
    ASSERT_EQ(Bits(a.values[i]), Bits(b.values[i])) << "entry " << i;
  }
  for (size_t i = 0; i < a.extra.size(); ++i) {
    ASSERT_EQ(Bits(a.extra[i]), Bits(b.extra[i])) << "scalar " << i;
  }
}

void ExpectExactRoundTrip(const TopKBlock& b, int64_t vocab) {
  std::string bytes = Encode(b, CacheEncoding::kExact, vocab);
  absl::StatusOr<TopKBlock> d =
      DecodeTopK(bytes, CacheEncoding::kExact, b.positions, b.k, b.scalars, vocab);
  ASSERT_TRUE(d.ok()) << d.status();
  ExpectBitIdentical(b, *d);
}

TEST(CacheCodecTest, ExactRoundTripsTeacherOrderBitForBit) {
  ExpectExactRoundTrip(RandomBlock(37, 16, 3, 256, 1), 256);
  ExpectExactRoundTrip(RandomBlock(5, 64, 2, 151936, 2), 151936);
  ExpectExactRoundTrip(RandomBlock(9, 1, 0, 256, 3), 256);    // k = 1
  ExpectExactRoundTrip(RandomBlock(4, 256, 1, 256, 4), 256);  // k = V
  ExpectExactRoundTrip(RandomBlock(0, 8, 2, 256, 5), 256);    // no positions
}

TEST(CacheCodecTest, ExactKeepsSpecialValuesTiesAndAnyOrder) {
  const float denormal = std::numeric_limits<float>::denorm_min();
  const float max = std::numeric_limits<float>::max();
  TopKBlock b;
  b.positions = 2;
  b.k = 8;
  b.scalars = 1;
  // Unsorted, with -0.0 and +0.0, denormals of both signs, ties, extremes.
  b.values = {-0.0f,   0.0f,  denormal, -denormal, 3.5f,   3.5f,  -max,  max,
              -1e-30f, 7.25f, -7.25f,   7.25f,     1e-38f, -2.0f, 1e30f, -1e30f};
  b.ids = {5, 0, 255, 17, 18, 19, 200, 1, 9, 8, 7, 6, 5, 4, 3, 2};
  b.extra = {-0.0f, std::numeric_limits<float>::quiet_NaN()};  // scalars: any bits
  ExpectExactRoundTrip(b, 256);
}

size_t ZstdSize(const std::string& bytes) {  // the frame the cache writes for a row
  absl::StatusOr<std::string> frame = CompressCacheFrame(bytes);
  EXPECT_TRUE(frame.ok()) << frame.status();
  return frame.ok() ? frame->size() : 0;
}

TEST(CacheCodecTest, ExactLayoutLetsZstdRemoveTheRedundancy) {
  // Sorted float32 logits: the high bytes of the ulp gaps and of ids below
  // 16384 are predictable, so zstd takes 30% off the 8 bytes per entry of
  // raw (float, int32) pairs (measured 36%), and clearly more than it takes
  // off the pairs themselves (measured 20%).
  TopKBlock b = RandomBlock(128, 64, 1, 16384, 6);
  const size_t raw = b.values.size() * 8 + b.extra.size() * 4;
  std::string pairs;
  for (size_t i = 0; i < b.values.size(); ++i) {
    pairs.append(reinterpret_cast<const char*>(&b.values[i]), 4);
    pairs.append(reinterpret_cast<const char*>(&b.ids[i]), 4);
  }
  const size_t exact = ZstdSize(Encode(b, CacheEncoding::kExact, 16384));
  EXPECT_LT(exact, raw * 7 / 10);
  EXPECT_LT(exact, ZstdSize(pairs) * 85 / 100);
}

TEST(CacheCodecTest, CompactKeepsIdsAndValuesWithinTheBound) {
  for (int64_t vocab : {int64_t{256}, int64_t{151936}}) {
    for (int32_t k : {1, 16, 64, 256}) {
      TopKBlock b = RandomBlock(20, k, 2, vocab, static_cast<uint32_t>(k + vocab));
      std::string bytes = Encode(b, CacheEncoding::kCompact, vocab);
      absl::StatusOr<TopKBlock> d = DecodeTopK(bytes, CacheEncoding::kCompact, 20, k, 2, vocab);
      ASSERT_TRUE(d.ok()) << d.status();
      for (size_t i = 0; i < b.extra.size(); ++i) EXPECT_EQ(Bits(b.extra[i]), Bits(d->extra[i]));
      double worst = 0.0;  // the largest error as a fraction of the bound
      for (int64_t p = 0; p < 20; ++p) {
        const float* z = &b.values[p * k];
        const float z_max = *std::max_element(z, z + k), z_min = *std::min_element(z, z + k);
        for (int32_t i = 0; i < k; ++i) {
          const auto it = std::find(&d->ids[p * k], &d->ids[(p + 1) * k], b.ids[p * k + i]);
          ASSERT_NE(it, &d->ids[(p + 1) * k]) << "id " << b.ids[p * k + i] << " lost";
          const float got = d->values[it - d->ids.data()];
          const float bound = CompactValueErrorBound(z[i], z_max, z_min);
          ASSERT_LE(std::fabs(got - z[i]), bound) << "position " << p << " entry " << i;
          if (bound > 0) worst = std::max(worst, std::fabs(got - z[i]) / double{bound});
        }
        EXPECT_EQ(Bits(d->values[p * k]), Bits(z_max)) << "the top comes back exactly";
        for (int32_t i = 1; i < k; ++i) {
          const float a = d->values[p * k + i - 1], c = d->values[p * k + i];
          ASSERT_TRUE(a > c || (a == c && d->ids[p * k + i - 1] < d->ids[p * k + i]));
        }
      }
      // The bound is tight: random values use a good part of it.
      if (k >= 16) {
        EXPECT_GT(worst, 0.3) << "k " << k;
      }
    }
  }
}

TEST(CacheCodecTest, CompactTiesComeBackLowerIdFirst) {
  TopKBlock b;
  b.positions = 1;
  b.k = 5;
  b.values = {2.0f, 2.0f, 2.0f, 1.0f, 1.0f};
  b.ids = {90, 4, 60, 77, 3};
  absl::StatusOr<TopKBlock> d =
      DecodeTopK(Encode(b, CacheEncoding::kCompact, 100), CacheEncoding::kCompact, 1, 5, 0, 100);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->ids, (std::vector<int32_t>{4, 60, 90, 3, 77}));
  EXPECT_EQ(d->values, (std::vector<float>{2.0f, 2.0f, 2.0f, 1.0f, 1.0f}));
}

absl::Status EncodeStatus(const TopKBlock& b, CacheEncoding e, int64_t vocab) {
  std::string out;
  return EncodeTopK(b, e, vocab, &out);
}

TEST(CacheCodecTest, EncodeRejectsBadBlocksNamingThePosition) {
  for (CacheEncoding e : {CacheEncoding::kExact, CacheEncoding::kCompact}) {
    TopKBlock b = RandomBlock(4, 8, 1, 256, 7);
    TopKBlock sizes = b;
    sizes.extra.pop_back();
    EXPECT_EQ(EncodeStatus(sizes, e, 256).code(), absl::StatusCode::kInvalidArgument);
    TopKBlock range = b;
    range.ids[3 * 8 + 2] = 256;
    absl::Status s = EncodeStatus(range, e, 256);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("position 3: id 256 outside"), std::string::npos) << s;
    range.ids[3 * 8 + 2] = -1;
    EXPECT_EQ(EncodeStatus(range, e, 256).code(), absl::StatusCode::kInvalidArgument);
    TopKBlock repeated = b;
    repeated.ids[2 * 8 + 5] = repeated.ids[2 * 8 + 1];
    s = EncodeStatus(repeated, e, 256);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("position 2: id"), std::string::npos) << s;
    EXPECT_NE(s.message().find("repeated"), std::string::npos) << s;
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), INFINITY, -INFINITY}) {
      TopKBlock nonfinite = b;
      nonfinite.values[1 * 8 + 7] = bad;
      s = EncodeStatus(nonfinite, e, 256);
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(s.message().find("position 1: value"), std::string::npos) << s;
    }
    TopKBlock too_big = b;  // k > vocab
    EXPECT_EQ(EncodeStatus(too_big, e, 4).code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(CacheCodecTest, TruncatedTrailingOrMisshapenBytesAreDataLoss) {
  for (CacheEncoding e : {CacheEncoding::kExact, CacheEncoding::kCompact}) {
    TopKBlock b = RandomBlock(6, 16, 2, 151936, 8);
    const std::string bytes = Encode(b, e, 151936);
    for (size_t len = 0; len < bytes.size(); ++len) {
      EXPECT_EQ(DecodeTopK(bytes.substr(0, len), e, 6, 16, 2, 151936).status().code(),
                absl::StatusCode::kDataLoss)
          << "prefix of " << len << " bytes";
    }
    absl::Status s = DecodeTopK(bytes + '\0', e, 6, 16, 2, 151936).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(s.message().find("trailing"), std::string::npos) << s;
    // Read with the wrong parameters: never OK with silently shifted fields.
    EXPECT_FALSE(DecodeTopK(bytes, e, 6, 15, 2, 151936).ok());
    EXPECT_FALSE(DecodeTopK(bytes, e, 5, 16, 2, 151936).ok());
    // Absurd shapes (a damaged header upstream) are DataLoss, not a huge
    // allocation.
    EXPECT_EQ(DecodeTopK(bytes, e, int64_t{1} << 40, 16, 2, 151936).status().code(),
              absl::StatusCode::kDataLoss);
    EXPECT_EQ(DecodeTopK(bytes, e, 6, 1 << 30, 2, int64_t{1} << 31).status().code(),
              absl::StatusCode::kDataLoss);
    EXPECT_EQ(DecodeTopK(bytes, e, 6, 16, 1 << 30, 151936).status().code(),
              absl::StatusCode::kDataLoss);
    // A smaller vocabulary than the ids: DataLoss naming the position.
    s = DecodeTopK(bytes, e, 6, 16, 2, 1000).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(s.message().find("position"), std::string::npos) << s;
  }
}

TEST(CacheCodecTest, RandomByteFlipsDecodeInRangeOrAreDataLoss) {
  std::mt19937 rng(9);
  for (CacheEncoding e : {CacheEncoding::kExact, CacheEncoding::kCompact}) {
    TopKBlock b = RandomBlock(8, 16, 2, 1000, 10);
    const std::string bytes = Encode(b, e, 1000);
    int data_loss = 0;
    for (int trial = 0; trial < 3000; ++trial) {
      std::string damaged = bytes;
      const int flips = 1 + trial % 4;
      for (int f = 0; f < flips; ++f) {
        damaged[rng() % damaged.size()] ^= static_cast<char>(1 + rng() % 255);
      }
      absl::StatusOr<TopKBlock> d = DecodeTopK(damaged, e, 8, 16, 2, 1000);
      if (!d.ok()) {
        ASSERT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << d.status();
        ++data_loss;
        continue;
      }
      ASSERT_EQ(d->ids.size(), 8u * 16u);
      ASSERT_EQ(d->values.size(), 8u * 16u);
      for (int64_t p = 0; p < 8; ++p) {
        std::set<int32_t> ids(&d->ids[p * 16], &d->ids[(p + 1) * 16]);
        ASSERT_EQ(ids.size(), 16u) << "repeated id decoded";
        ASSERT_GE(*ids.begin(), 0);
        ASSERT_LT(*ids.rbegin(), 1000);
      }
      for (float v : d->values) ASSERT_TRUE(std::isfinite(v));
    }
    EXPECT_GT(data_loss, 100) << "damage is mostly noticed";
  }
}

TEST(CacheCodecTest, ErrorBoundIsZeroAtTheTopAndRangeOver255AtTheBottom) {
  EXPECT_NEAR(CompactValueErrorBound(10.0f, 10.0f, 0.0f), 10.0 / (4 * 255 * 255), 1e-5);
  EXPECT_NEAR(CompactValueErrorBound(0.0f, 10.0f, 0.0f), 10.0 / 255, 1e-4);
  EXPECT_EQ(CompactValueErrorBound(1.0f, 1.0f, 1.0f), 0.0f);
}

}  // namespace
}  // namespace distill::worker
