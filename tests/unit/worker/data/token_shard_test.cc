#include "worker/data/token_shard.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/test_util/test_util.h"

namespace distill::worker {
namespace {

using ::distill::testing::MakeTempDir;
using ::distill::testing::ReadFile;
using ::distill::testing::WriteFile;

TEST(TokenShardTest, WriteThenOpenRoundTrips) {
  const std::string path = MakeTempDir() + "/a.bin";
  const std::vector<uint32_t> ids = {0, 1, 255, 256, 65535, 4000000000u};
  ASSERT_TRUE(WriteTokenShard(path, ids).ok());

  auto shard = TokenShard::Open(path);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ((*shard)->path(), path);
  ASSERT_EQ((*shard)->size(), 6);
  EXPECT_EQ(std::vector<uint32_t>((*shard)->data(), (*shard)->data() + 6), ids);
}

TEST(TokenShardTest, FileIsRawLittleEndianUint32) {
  const std::string path = MakeTempDir() + "/a.bin";
  ASSERT_TRUE(WriteTokenShard(path, {0x04030201u, 7}).ok());
  EXPECT_EQ(ReadFile(path), std::string("\x01\x02\x03\x04\x07\x00\x00\x00", 8));
}

TEST(TokenShardTest, WriteLeavesNoTempFileAndReplacesOldShard) {
  const std::string dir = MakeTempDir();
  const std::string path = dir + "/a.bin";
  ASSERT_TRUE(WriteTokenShard(path, {1, 2, 3}).ok());
  ASSERT_TRUE(WriteTokenShard(path, {9}).ok());
  EXPECT_EQ(ReadFile(path).size(), 4u);
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST(TokenShardTest, WriteIntoMissingDirectoryFails) {
  absl::Status s = WriteTokenShard(MakeTempDir() + "/no/such/dir/a.bin", {1});
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
}

TEST(TokenShardTest, MissingFileIsNotFound) {
  const std::string path = MakeTempDir() + "/missing.bin";
  auto shard = TokenShard::Open(path);
  ASSERT_EQ(shard.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(shard.status().message().find(path + ": cannot open"), std::string::npos)
      << shard.status();
}

TEST(TokenShardTest, OddSizeIsInvalidArgument) {
  const std::string path = MakeTempDir() + "/odd.bin";
  WriteFile(path, "abcdefg");
  auto shard = TokenShard::Open(path);
  ASSERT_EQ(shard.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(shard.status().message().find(path + ": size 7 bytes is not a multiple of 4"),
            std::string::npos)
      << shard.status();
}

TEST(TokenShardTest, EmptyFileIsInvalidArgument) {
  const std::string path = MakeTempDir() + "/empty.bin";
  WriteFile(path, "");
  auto shard = TokenShard::Open(path);
  ASSERT_EQ(shard.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(shard.status().message(), path + ": empty shard");
}

TEST(TokenShardTest, DirectoryIsInvalidArgument) {
  auto shard = TokenShard::Open(MakeTempDir());
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kInvalidArgument) << shard.status();
}

// Three shards of sizes 3, 1, 4 holding the stream 0..7.
std::vector<std::string> WriteStream(const std::string& dir) {
  std::vector<std::string> paths = {dir + "/0.bin", dir + "/1.bin", dir + "/2.bin"};
  EXPECT_TRUE(WriteTokenShard(paths[0], {0, 1, 2}).ok());
  EXPECT_TRUE(WriteTokenShard(paths[1], {3}).ok());
  EXPECT_TRUE(WriteTokenShard(paths[2], {4, 5, 6, 7}).ok());
  return paths;
}

TEST(TokenDatasetTest, ReadCrossesShardBoundaries) {
  auto dataset = TokenDataset::Open(WriteStream(MakeTempDir()));
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  ASSERT_EQ(dataset->size(), 8);
  for (int64_t begin = 0; begin < 8; ++begin) {
    for (int64_t n = 0; begin + n <= 8; ++n) {
      std::vector<int64_t> out(static_cast<size_t>(n), -1);
      dataset->Read(begin, n, out.data());
      for (int64_t i = 0; i < n; ++i) {
        EXPECT_EQ(out[static_cast<size_t>(i)], begin + i) << "begin " << begin << " n " << n;
      }
    }
  }
}

TEST(TokenDatasetTest, EmptyPathListIsInvalidArgument) {
  EXPECT_EQ(TokenDataset::Open({}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TokenDatasetTest, MissingShardIsNotFound) {
  std::vector<std::string> paths = WriteStream(MakeTempDir());
  paths.push_back(paths[0] + ".missing");
  EXPECT_EQ(TokenDataset::Open(paths).status().code(), absl::StatusCode::kNotFound);
}

TEST(TokenDatasetTest, CheckVocabNamesFileIndexAndByteOffset) {
  const std::string dir = MakeTempDir();
  std::vector<uint32_t> ids(20, 7);
  ids[17] = 300;
  ids[19] = 999;  // only the first bad id is reported
  ASSERT_TRUE(WriteTokenShard(dir + "/good.bin", {1, 2, 3}).ok());
  ASSERT_TRUE(WriteTokenShard(dir + "/bad.bin", ids).ok());
  auto dataset = TokenDataset::Open({dir + "/good.bin", dir + "/bad.bin"});
  ASSERT_TRUE(dataset.ok()) << dataset.status();

  EXPECT_TRUE(dataset->CheckVocab(1000).ok());
  absl::Status s = dataset->CheckVocab(256);
  ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), dir +
                             "/bad.bin: token id 300 at token index 17 (byte offset 68) is "
                             "outside the model's vocabulary (vocab_size 256)");
}

}  // namespace
}  // namespace distill::worker
