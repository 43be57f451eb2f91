#include "worker/data/text_source.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "tests/test_util/test_util.h"
#include "worker/data/token_shard.h"

namespace distill::worker {
namespace {
namespace fs = std::filesystem;
using distill::testing::MakeTempDir;
using distill::testing::WriteFile;

std::vector<int64_t> ReadAll(const std::string& path) {
  auto ds = TokenDataset::Open({path});
  EXPECT_TRUE(ds.ok()) << ds.status();
  std::vector<int64_t> out(ds->size());
  ds->Read(0, ds->size(), out.data());
  return out;
}

TEST(TextSourceTest, BinPassesThrough) {
  auto r = EnsureTokenShard("/any/where/train.bin", "bytes", "text", 1);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "/any/where/train.bin");
}

TEST(TextSourceTest, JsonlIsTokenizedOnceAndCachedBesideIt) {
  const std::string dir = MakeTempDir("text_source");
  WriteFile(dir + "/d.jsonl", "{\"text\": \"ab\"}\n{\"text\": \"c\"}\n");
  auto r = EnsureTokenShard(dir + "/d.jsonl", "bytes", "text", 1);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, dir + "/d.jsonl.bytes.bin");
  EXPECT_EQ(ReadAll(*r), (std::vector<int64_t>{'a', 'b', '\n', '\n', 'c'}));
  const auto built = fs::last_write_time(*r);
  ASSERT_TRUE(EnsureTokenShard(dir + "/d.jsonl", "bytes", "text", 1).ok());
  EXPECT_EQ(fs::last_write_time(*r), built);  // reused, not rebuilt

  // Newer text: rebuilt.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  WriteFile(dir + "/d.jsonl", "{\"text\": \"xyz\"}\n");
  fs::last_write_time(dir + "/d.jsonl", built + std::chrono::seconds(5));
  ASSERT_TRUE(EnsureTokenShard(dir + "/d.jsonl", "bytes", "text", 1).ok());
  EXPECT_EQ(ReadAll(*r), (std::vector<int64_t>{'x', 'y', 'z'}));
}

TEST(TextSourceTest, MissingTextOrTokenizerIsAnErrorNamingIt) {
  auto r = EnsureTokenShard("/nonexistent/d.jsonl", "bytes", "text", 1);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("/nonexistent/d.jsonl"), std::string::npos);
  const std::string dir = MakeTempDir("text_source_tok");
  WriteFile(dir + "/d.txt", "hello");
  r = EnsureTokenShard(dir + "/d.txt", dir + "/missing/tokenizer.json", "text", 1);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("tokenizer.json"), std::string::npos) << r.status();
}

}  // namespace
}  // namespace distill::worker
