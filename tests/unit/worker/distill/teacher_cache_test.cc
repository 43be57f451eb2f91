#include "worker/distill/teacher_cache.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "tests/test_util/test_util.h"

namespace distill::worker {
namespace {
namespace fs = std::filesystem;
using distill::testing::MakeTempDir;
using distill::testing::ReadFile;
using distill::testing::WriteFile;

constexpr int64_t kL = 3, kK = 2, kVocab = 10, kHidden = 2;

TeacherCacheKey Key() {
  TeacherCacheKey k;
  k.teacher_config = "aa";
  k.teacher_weights = {{"model.safetensors", "bb"}};
  k.tokenizer = "bytes";
  CacheSplitKey s;
  s.files = {{"/data/train.bin", "cc"}};
  s.format = "text";
  s.loss_on = "assistant";
  s.overflow = "truncate";
  s.text_field = "text";
  s.seq_len = kL;
  s.rows = 5;
  k.splits["train"] = s;
  k.vocab = kVocab;
  k.top_k = kK;
  k.temperatures = {1.0, 2.0};
  k.layers = {1};
  return k;
}

// Row r: distinct values and ids that depend on r, one feature layer.
CacheRow Row(int64_t r) {
  CacheRow row;
  row.topk.positions = kL;
  row.topk.k = kK;
  row.topk.scalars = 2;
  for (int64_t p = 0; p < kL; ++p) {
    for (int64_t j = 0; j < kK; ++j) {
      row.topk.values.push_back(static_cast<float>(10 - j) + 0.125f * static_cast<float>(r + p));
      row.topk.ids.push_back(static_cast<int32_t>((r + p + 3 * j) % kVocab));
    }
    row.topk.extra.push_back(1.5f + static_cast<float>(r));
    row.topk.extra.push_back(-0.25f * static_cast<float>(p));
  }
  row.features.push_back(std::vector<float>(kL * kHidden, 0.5f + static_cast<float>(r)));
  return row;
}

uint64_t Hash(int64_t r) {
  std::vector<int64_t> in(kL, r);
  return RowInputHash(in.data(), kL);
}

// A complete cache of Key() with 2 rows per shard (shards of 2, 2, 1 rows).
std::string WriteCache() {
  const std::string dir = MakeTempDir("teacher_cache") + "/cache";
  CacheGeometry g;
  g.shard_rows = 2;
  g.hidden = kHidden;
  auto w = TeacherCacheWriter::Open(dir, Key(), g, "{}");
  EXPECT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->shards("train"), 3);
  for (int64_t s = 0; s < 3; ++s) {
    std::vector<CacheRow> rows;
    std::vector<uint64_t> hashes;
    for (int64_t r = 2 * s; r < std::min<int64_t>(2 * s + 2, 5); ++r) {
      rows.push_back(Row(r));
      hashes.push_back(Hash(r));
    }
    EXPECT_TRUE((*w)->WriteShard("train", s, rows, hashes).ok());
  }
  EXPECT_TRUE((*w)->Finish().ok());
  return dir;
}

TEST(TeacherCacheTest, RowsReadBackExactly) {
  const std::string dir = WriteCache();
  auto c = TeacherCache::Open(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->tokens(), 5 * kL);
  EXPECT_GT((*c)->bytes_on_disk(), 0);
  for (int64_t r : {4, 0, 3, 1, 2}) {
    auto row = (*c)->ReadRow("train", r, Hash(r));
    ASSERT_TRUE(row.ok()) << row.status();
    const CacheRow want = Row(r);
    EXPECT_EQ(row->topk.values, want.topk.values);
    EXPECT_EQ(row->topk.ids, want.topk.ids);
    EXPECT_EQ(row->topk.extra, want.topk.extra);
    EXPECT_EQ(row->features, want.features);
  }
}

TEST(TeacherCacheTest, KeyRoundTripsThroughJson) {
  auto k = KeyFromJson(KeyToJson(Key()));
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ(KeyToJson(*k), KeyToJson(Key()));
}

TEST(TeacherCacheTest, OtherRowsInputsAreFailedPrecondition) {
  auto c = TeacherCache::Open(WriteCache());
  ASSERT_TRUE(c.ok());
  auto row = (*c)->ReadRow("train", 2, Hash(3));
  EXPECT_EQ(row.status().code(), absl::StatusCode::kFailedPrecondition) << row.status();
  EXPECT_TRUE(absl::StrContains(row.status().message(), "row 2")) << row.status();
}

void ExpectDataLoss(const std::string& dir, int64_t row, const std::string& what) {
  auto c = TeacherCache::Open(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  auto r = (*c)->ReadRow("train", row, Hash(row));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "train-00001.shard")) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), what)) << r.status();
}

TEST(TeacherCacheTest, DamagedShardsAreDataLossNamingFileAndRow) {
  {  // a flipped byte in the index
    const std::string dir = WriteCache();
    std::string b = ReadFile(dir + "/train-00001.shard");
    b[30] ^= 1;
    WriteFile(dir + "/train-00001.shard", b);
    ExpectDataLoss(dir, 3, "CRC");
  }
  {  // a flipped byte in the last row's frame
    const std::string dir = WriteCache();
    std::string b = ReadFile(dir + "/train-00001.shard");
    b[b.size() - 6] ^= 0x40;
    WriteFile(dir + "/train-00001.shard", b);
    ExpectDataLoss(dir, 3, "row 3");
  }
  {  // truncated
    const std::string dir = WriteCache();
    fs::resize_file(dir + "/train-00001.shard", fs::file_size(dir + "/train-00001.shard") - 1);
    ExpectDataLoss(dir, 2, "wrong size");
  }
  {  // deleted
    const std::string dir = WriteCache();
    fs::remove(dir + "/train-00001.shard");
    ExpectDataLoss(dir, 2, "missing");
  }
}

TEST(TeacherCacheTest, ResumeKeepsFinishedShardsAndRefusesAnotherKey) {
  const std::string dir = WriteCache();
  CacheGeometry g;
  g.shard_rows = 7;  // the directory's (2) wins
  g.hidden = kHidden;
  auto w = TeacherCacheWriter::Open(dir, Key(), g, "{}");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->geometry().shard_rows, 2);
  EXPECT_TRUE((*w)->ShardDone("train", 0));
  fs::resize_file(dir + "/train-00002.shard", 10);
  EXPECT_FALSE((*w)->ShardDone("train", 2));

  TeacherCacheKey other = Key();
  other.top_k = 3;
  auto refused = TeacherCacheWriter::Open(dir, other, g, "{}");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(
      absl::StrContains(refused.status().message(), "distill.top_k is 3 but the cache holds top-2"))
      << refused.status();
  EXPECT_TRUE(fs::exists(dir + "/train-00000.shard"));  // never overwritten

  const std::string plain = MakeTempDir("teacher_cache_plain");
  WriteFile(plain + "/notes.txt", "mine");
  EXPECT_EQ(TeacherCacheWriter::Open(plain, Key(), g, "{}").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(TeacherCacheTest, IncompleteCacheIsNotRead) {
  const std::string dir = MakeTempDir("teacher_cache_incomplete") + "/cache";
  CacheGeometry g;
  g.hidden = kHidden;
  ASSERT_TRUE(TeacherCacheWriter::Open(dir, Key(), g, "{}").ok());
  auto c = TeacherCache::Open(dir);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(c.status().message(), "not complete")) << c.status();
}

void ExpectMismatch(const TeacherCacheKey& job, const std::string& what) {
  const absl::Status st = CheckCacheKey("DIR", job, Key(), /*exact=*/false);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "teacher.cache DIR: ")) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), what)) << st;
}

TEST(TeacherCacheTest, KeyMismatchesNameTheField) {
  TeacherCacheKey job = Key();
  job.teacher_config.clear();  // a reader without teacher.model
  job.teacher_weights.clear();
  job.temperatures = {2.0};
  job.layers = {};
  EXPECT_TRUE(CheckCacheKey("DIR", job, Key(), false).ok());

  TeacherCacheKey k = job;
  k.top_k = 4;
  ExpectMismatch(k, "distill.top_k is 4 but the cache holds top-2");
  k = job;
  k.splits["train"].files[0] = {"/data/other.bin", "dd"};
  ExpectMismatch(k, "data.train differs from the cache's (file /data/other.bin sha256 dd");
  k = job;
  k.tokenizer = "ee";
  ExpectMismatch(k, "data.tokenizer differs");
  k = job;
  k.temperatures = {3.0};
  ExpectMismatch(k, "temperature 3 is not cached");
  k = job;
  k.layers = {0};
  ExpectMismatch(k, "teacher layer 0 is not cached");
  k = job;
  k.vocab = 11;
  ExpectMismatch(k, "V = 10");
  k = job;
  k.splits["train"].seq_len = 4;
  ExpectMismatch(k, "data.seq_len is 4");
  k = job;
  k.splits["eval"] = k.splits["train"];
  ExpectMismatch(k, "data.eval is not cached");
  k = job;
  k.teacher_config = "ff";
  ExpectMismatch(k, "teacher.model differs");
}

}  // namespace
}  // namespace distill::worker
