#include "common/host_memory.h"

#include <gtest/gtest.h>
#include <unistd.h>

namespace distill::common {
namespace {

TEST(HostMemoryTest, CgroupLimitFilesAreBytesOrNoLimit) {
  EXPECT_EQ(ParseCgroupLimit("8589934592\n"), int64_t{8} << 30);
  EXPECT_EQ(ParseCgroupLimit("max\n"), 0);                  // v2: no limit
  EXPECT_EQ(ParseCgroupLimit("9223372036854771712\n"), 0);  // v1: no limit
  EXPECT_EQ(ParseCgroupLimit(""), 0);
  EXPECT_EQ(ParseCgroupLimit("-1"), 0);
  EXPECT_EQ(ParseCgroupLimit("12 GiB"), 0);
}

// At most physical memory (a cgroup can only lower it), and some of it.
TEST(HostMemoryTest, HostMemoryIsAtMostPhysicalMemory) {
  const int64_t physical = int64_t{sysconf(_SC_PHYS_PAGES)} * sysconf(_SC_PAGE_SIZE);
  const int64_t host = HostMemoryBytes();
  EXPECT_GT(host, 0);
  EXPECT_LE(host, physical);
}

TEST(HostMemoryTest, HumanBytesUsesBinaryUnits) {
  EXPECT_EQ(HumanBytes(512), "512 B");
  EXPECT_EQ(HumanBytes(1536), "1.5 KiB");
  EXPECT_EQ(HumanBytes(24.0 * (int64_t{1} << 30)), "24.0 GiB");
  EXPECT_EQ(HumanBytes(8.0 * (int64_t{1} << 40)), "8.0 TiB");
}

}  // namespace
}  // namespace distill::common
