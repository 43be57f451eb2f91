#include "worker/data/instruction_cache.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "tests/test_util/test_util.h"

namespace distill::worker {
namespace {
using distill::testing::MakeTempDir;
using distill::testing::ReadFile;
using distill::testing::WriteFile;

TokenizedExamples TwoExamples() {
  TokenizedExamples ex;
  ex.Add({1, 2, 3}, {0, 1, 1}, 1);
  ex.Add({70000, 5}, {0, 1}, 4);
  return ex;
}

TEST(InstructionCacheTest, RoundTrips) {
  const std::string path = MakeTempDir("instruction_cache") + "/c.examples";
  const TokenizedExamples ex = TwoExamples();
  ASSERT_TRUE(WriteExampleCache(path, ex).ok());
  // 32-byte header, begins 3 x 8, lines 2 x 4, ids 5 x 4, response 5.
  EXPECT_EQ(ReadFile(path).size(), 32u + 24 + 8 + 20 + 5);
  auto back = ReadExampleCache(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ids, ex.ids);
  EXPECT_EQ(back->response, ex.response);
  EXPECT_EQ(back->begins, (std::vector<uint64_t>{0, 3, 5}));
  EXPECT_EQ(back->lines, (std::vector<uint32_t>{1, 4}));
  EXPECT_EQ(back->length(1), 2);
}

TEST(InstructionCacheTest, AppendShiftsTheBounds) {
  TokenizedExamples ex = TwoExamples();
  ex.Append(TwoExamples());
  EXPECT_EQ(ex.size(), 4);
  EXPECT_EQ(ex.begins, (std::vector<uint64_t>{0, 3, 5, 8, 10}));
  EXPECT_EQ(ex.lines, (std::vector<uint32_t>{1, 4, 1, 4}));
}

TEST(InstructionCacheTest, DamagedFilesAreDataLossNamingThePath) {
  const std::string dir = MakeTempDir("instruction_cache");
  const std::string good = dir + "/good.examples";
  ASSERT_TRUE(WriteExampleCache(good, TwoExamples()).ok());
  const std::string bytes = ReadFile(good);
  std::vector<std::pair<std::string, std::string>> damaged = {
      {"short", bytes.substr(0, bytes.size() - 1)},
      {"long", bytes + "x"},
      {"magic", "XSTLEXMP" + bytes.substr(8)},
      {"version", bytes.substr(0, 8) + std::string("\2\0\0\0", 4) + bytes.substr(12)},
      {"mask", bytes.substr(0, bytes.size() - 1) + "\2"},
  };
  std::string bounds = bytes;  // begins[1] = 9 > begins[2] = 5
  bounds[32 + 8] = 9;
  damaged.push_back({"bounds", bounds});
  for (const auto& [name, contents] : damaged) {
    const std::string path = dir + "/" + name + ".examples";
    WriteFile(path, contents);
    auto ex = ReadExampleCache(path);
    EXPECT_EQ(ex.status().code(), absl::StatusCode::kDataLoss) << name;
    EXPECT_NE(ex.status().message().find(path), std::string::npos) << ex.status();
  }
  EXPECT_EQ(ReadExampleCache(dir + "/missing.examples").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace distill::worker
