#include "worker/data/byte_tokenizer.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tests/test_util/test_util.h"
#include "worker/data/token_shard.h"

namespace distill::worker {
namespace {

using ::distill::testing::MakeTempDir;
using ::distill::testing::WriteFile;

// The bytes of a .bin shard, decoded back to text.
std::string ShardText(const std::string& path) {
  auto shard = TokenShard::Open(path);
  EXPECT_TRUE(shard.ok()) << shard.status();
  if (!shard.ok()) return "";
  std::vector<uint32_t> ids((*shard)->data(), (*shard)->data() + (*shard)->size());
  auto text = ByteTokenizer().Decode(ids);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : "";
}

TEST(ByteTokenizerTest, EncodeGivesUtf8Bytes) {
  // "é" is C3 A9 and "€" is E2 82 AC in UTF-8.
  EXPECT_EQ(ByteTokenizer().Encode("a\xC3\xA9\xE2\x82\xAC"),
            (std::vector<uint32_t>{0x61, 0xC3, 0xA9, 0xE2, 0x82, 0xAC}));
}

TEST(ByteTokenizerTest, MultibyteTextRoundTrips) {
  const char kText[] = "na\xC3\xAFve caf\xC3\xA9 \xE2\x82\xAC 5 \xF0\x9F\x99\x82\n\t\0end";
  const std::string text(kText, sizeof(kText) - 1);  // keeps the NUL byte
  ByteTokenizer tokenizer;
  std::vector<uint32_t> ids = tokenizer.Encode(text);
  EXPECT_EQ(ids.size(), text.size());
  for (uint32_t id : ids) EXPECT_LT(id, ByteTokenizer::kVocabSize);
  auto decoded = tokenizer.Decode(ids);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, text);
}

TEST(ByteTokenizerTest, DecodeOutOfRangeIdIsInvalidArgument) {
  auto decoded = ByteTokenizer().Decode({104, 105, 256});
  ASSERT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(decoded.status().message().find("token id 256 at position 2"), std::string::npos)
      << decoded.status();
}

TEST(ByteTokenizerTest, TextFileIsOneDocument) {
  const std::string dir = MakeTempDir();
  const std::string text = "First paragraph.\n\nSecond, with \xC3\xA9.\n";
  WriteFile(dir + "/in.txt", text);
  ASSERT_TRUE(TokenizeFileBytes(dir + "/in.txt", dir + "/out.bin").ok());
  EXPECT_EQ(ShardText(dir + "/out.bin"), text);
}

TEST(ByteTokenizerTest, JsonlDocumentsAreJoinedBySeparator) {
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/in.jsonl",
            "{\"text\": \"doc one\", \"id\": 1}\n"
            "\n"
            "{\"id\": 2, \"text\": \"doc \\u00e9 two\"}\n");
  ASSERT_TRUE(TokenizeFileBytes(dir + "/in.jsonl", dir + "/out.bin").ok());
  EXPECT_EQ(ShardText(dir + "/out.bin"), "doc one\n\ndoc \xC3\xA9 two");
}

TEST(ByteTokenizerTest, JsonlHonoursFieldAndSeparator) {
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/in.jsonl", "{\"body\": \"a\"}\r\n{\"body\": \"b\"}\r\n{\"body\": \"c\"}");
  ASSERT_TRUE(TokenizeFileBytes(dir + "/in.jsonl", dir + "/out.bin", "body", "|").ok());
  EXPECT_EQ(ShardText(dir + "/out.bin"), "a|b|c");
}

TEST(ByteTokenizerTest, BadJsonlLineNamesFileAndLine) {
  const std::string dir = MakeTempDir();
  const std::string input = dir + "/in.jsonl";
  WriteFile(input, "{\"text\": \"ok\"}\n\n{\"text\": \"broken}\n");
  absl::Status s = TokenizeFileBytes(input, dir + "/out.bin");
  ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(input + ":3: invalid JSON"), std::string::npos) << s;
}

// Found by tests/fuzz/jsonl_fuzz: nlohmann throws out_of_range, not
// parse_error, for a number past a double, and it escaped the reader.
TEST(ByteTokenizerTest, NumberOverflowingADoubleNamesFileAndLine) {
  const std::string dir = MakeTempDir();
  const std::string input = dir + "/in.jsonl";
  WriteFile(input, "{\"text\": \"ok\"}\n{\"text\": \"x\", \"n\": 1e99999}\n");
  absl::Status s = TokenizeFileBytes(input, dir + "/out.bin");
  ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(input + ":2: invalid JSON"), std::string::npos) << s;
}

TEST(ByteTokenizerTest, MissingOrNonStringFieldNamesLine) {
  const std::string dir = MakeTempDir();
  const std::string input = dir + "/in.jsonl";
  WriteFile(input, "{\"text\": \"ok\"}\n{\"text\": 5}\n");
  absl::Status s = TokenizeFileBytes(input, dir + "/out.bin");
  ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(input + ":2: missing string field \"text\""), std::string::npos) << s;

  WriteFile(input, "{\"content\": \"ok\"}\n");
  s = TokenizeFileBytes(input, dir + "/out.bin");
  ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(input + ":1:"), std::string::npos) << s;
}

TEST(ByteTokenizerTest, MissingInputIsNotFound) {
  const std::string dir = MakeTempDir();
  absl::Status s = TokenizeFileBytes(dir + "/nope.txt", dir + "/out.bin");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
}

TEST(ByteTokenizerTest, EmptyInputIsInvalidArgument) {
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/empty.txt", "");
  absl::Status s = TokenizeFileBytes(dir + "/empty.txt", dir + "/out.bin");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

}  // namespace
}  // namespace distill::worker
