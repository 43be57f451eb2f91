#include "worker/data/packing.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "tests/test_util/test_util.h"

namespace distill::worker {
namespace {

TEST(PackingTest, BestFitDecreasingByHand) {
  // Sizes 3, 5, 2, 4, 1 into rows of 6: 5 opens row 0, 4 opens row 1, 3 opens
  // row 2, 2 best fits row 1 (room 2), 1 best fits row 0 (room 1).
  const PackedRows rows = PackBestFitDecreasing({3, 5, 2, 4, 1}, 6);
  EXPECT_EQ(rows, (PackedRows{{1, 4}, {3, 2}, {0}}));
}

TEST(PackingTest, TiesGoByIndexAndRowsWithEqualRoomFirstComeFirstServed) {
  // Four items of 2 into rows of 3: each opens a row, in index order.
  EXPECT_EQ(PackBestFitDecreasing({2, 2, 2, 2}, 3), (PackedRows{{0}, {1}, {2}, {3}}));
  // Then two 1s: rows 0 and 1 both have room 1; the first 1 goes to row 0.
  EXPECT_EQ(PackBestFitDecreasing({2, 1, 2, 1}, 3), (PackedRows{{0, 1}, {2, 3}}));
}

TEST(PackingTest, FullItemsTakeARowEachAndRowsNeverOverflow) {
  const std::vector<int64_t> sizes = {8, 1, 7, 8, 3, 5, 2, 6, 4, 4, 1};
  const PackedRows rows = PackBestFitDecreasing(sizes, 8);
  std::vector<int> seen(sizes.size(), 0);
  for (const auto& row : rows) {
    int64_t used = 0;
    for (int64_t item : row) {
      used += sizes[item];
      ++seen[item];
    }
    EXPECT_LE(used, 8);
  }
  EXPECT_EQ(seen, std::vector<int>(sizes.size(), 1));
  EXPECT_EQ(rows, (PackedRows{{0}, {3}, {2, 1}, {7, 6}, {5, 4}, {8, 9}, {10}}));
}

TEST(PackingTest, OnePerRowKeepsIndexOrder) {
  EXPECT_EQ(OnePerRow(3), (PackedRows{{0}, {1}, {2}}));
  EXPECT_TRUE(OnePerRow(0).empty());
}

// The rows TRL's pack_dataset(strategy="bfd") makes of the same sizes
// (tests/reference/hf_instruction_data.py: bfd.json).
TEST(PackingTest, MatchesTrlBestFitDecreasing) {
  const nlohmann::json cases =
      distill::testing::ReadJson(distill::testing::ReferencePath("hf_instruction_data/bfd.json"));
  ASSERT_TRUE(cases.is_array());
  ASSERT_FALSE(cases.empty());
  for (const nlohmann::json& c : cases) {
    const auto sizes = c["sizes"].get<std::vector<int64_t>>();
    const auto expected = c["rows"].get<PackedRows>();
    EXPECT_EQ(PackBestFitDecreasing(sizes, c["capacity"].get<int64_t>()), expected)
        << "case " << c["name"].get<std::string>();
  }
}

}  // namespace
}  // namespace distill::worker
