#include "worker/data/sequence_data.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "tests/test_util/test_util.h"

namespace distill::worker {
namespace {

using ::distill::testing::MakeTempDir;

TokenDataset Stream(const std::vector<uint32_t>& ids) {
  const std::string path = MakeTempDir() + "/s.bin";
  EXPECT_TRUE(WriteTokenShard(path, ids).ok());
  auto data = TokenDataset::Open({path});
  EXPECT_TRUE(data.ok()) << data.status();
  return *std::move(data);
}

TEST(TextWindowsTest, RowIIsTheWindowAtILWithNextTokenTargets) {
  std::vector<uint32_t> ids(12);
  std::iota(ids.begin(), ids.end(), 100u);
  auto w = TextWindows::Create(Stream(ids), 5);  // (12 - 1) / 5 = 2 rows
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->rows(), 2);
  EXPECT_EQ((*w)->counted_targets(), 10);
  EXPECT_FALSE((*w)->packed());
  std::vector<int64_t> in(5), tg(5), pos(5);
  (*w)->Read(1, in.data(), tg.data(), pos.data());
  EXPECT_EQ(in, (std::vector<int64_t>{105, 106, 107, 108, 109}));
  EXPECT_EQ(tg, (std::vector<int64_t>{106, 107, 108, 109, 110}));
  EXPECT_EQ(pos, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ((*w)->Describe(), "12 tokens in 2 windows of 5");
}

TEST(TextWindowsTest, StreamShorterThanOneWindowIsInvalidArgument) {
  auto w = TextWindows::Create(Stream({1, 2, 3, 4}), 4);  // needs 5 tokens
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(w.status().message().find("4 tokens, fewer than seq_len + 1 = 5"), std::string::npos) << w.status();
}

TEST(TextWindowsTest, CheckVocabIsTheStreams) {
  auto w = TextWindows::Create(Stream({1, 2, 3, 9}), 2);
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE((*w)->CheckVocab(10).ok());
  EXPECT_EQ((*w)->CheckVocab(9).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace distill::worker
