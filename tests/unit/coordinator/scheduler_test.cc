// Scheduler: gang allocation, priority then FIFO, no starvation of large
// jobs, retry backoff not blocking others, hosts file parsing.
#include "coordinator/scheduler.h"

#include <gtest/gtest.h>

namespace distill::coordinator {
namespace {

std::vector<std::string> Ids(const std::vector<std::pair<std::string, Allocation>>& starts) {
  std::vector<std::string> ids;
  for (const auto& s : starts) ids.push_back(s.first);
  return ids;
}

int Slots(const Allocation& a) {
  int n = 0;
  for (const HostSlots& hs : a) n += hs.slots;
  return n;
}

TEST(SchedulerTest, GangAllocatesAllRanksOrNone) {
  Scheduler s(LocalInventory(4));
  auto starts = s.Schedule({{"a", 3, 0, 1}, {"b", 2, 0, 2}});
  ASSERT_EQ(Ids(starts), std::vector<std::string>({"a"}));
  EXPECT_EQ(Slots(starts[0].second), 3);
  EXPECT_EQ(s.free_slots(), 1);
  // b needs 2, only 1 free: nothing partial.
  EXPECT_TRUE(s.Schedule({{"b", 2, 0, 2}}).empty());
  EXPECT_EQ(s.free_slots(), 1);
  s.Release("a");
  EXPECT_EQ(Ids(s.Schedule({{"b", 2, 0, 2}})), std::vector<std::string>({"b"}));
  EXPECT_EQ(s.free_slots(), 2);
}

TEST(SchedulerTest, PriorityThenFifo) {
  Scheduler s(LocalInventory(3));
  auto starts = s.Schedule(
      {{"old_low", 1, 0, 1}, {"new_high", 1, 5, 4}, {"old_high", 1, 5, 2}, {"mid", 1, 1, 3}});
  EXPECT_EQ(Ids(starts), std::vector<std::string>({"old_high", "new_high", "mid"}));
}

TEST(SchedulerTest, HeadJobIsNotStarvedBySmallerJobs) {
  Scheduler s(LocalInventory(4));
  ASSERT_EQ(Ids(s.Schedule({{"small1", 2, 0, 1}})).size(), 1u);
  // big (4 ranks) is at the head; small2 would fit in the 2 free slots but
  // must not start, or a stream of small jobs would keep big waiting forever.
  EXPECT_TRUE(s.Schedule({{"big", 4, 0, 2}, {"small2", 1, 0, 3}}).empty());
  s.Release("small1");
  EXPECT_EQ(Ids(s.Schedule({{"big", 4, 0, 2}, {"small2", 1, 0, 3}})),
            std::vector<std::string>({"big"}));
}

TEST(SchedulerTest, JobInRetryBackoffDoesNotBlockOthers) {
  Scheduler s(LocalInventory(2));
  QueuedJob waiting{"retrying", 2, 9, 1, /*eligible=*/false};
  EXPECT_EQ(Ids(s.Schedule({waiting, {"next", 1, 0, 2}})), std::vector<std::string>({"next"}));
}

TEST(SchedulerTest, SpreadsOverHostsWhenNoneHoldsTheJob) {
  Scheduler s({{"a", 2, 0}, {"b", 3, 0}, {"c", 1, 0}});
  auto one = s.Schedule({{"fits_c", 1, 0, 1}});
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].second[0].host, "c");  // the tightest single host
  auto wide = s.Schedule({{"wide", 5, 0, 2}});
  ASSERT_EQ(wide.size(), 1u);
  ASSERT_EQ(wide[0].second.size(), 2u);
  EXPECT_EQ(wide[0].second[0].host, "b");
  EXPECT_EQ(wide[0].second[0].slots, 3);
  EXPECT_EQ(wide[0].second[1].host, "a");
  EXPECT_EQ(wide[0].second[1].slots, 2);
  EXPECT_EQ(s.free_slots(), 0);
}

TEST(SchedulerTest, PlacesNothingOnAHostThatIsDown) {
  Scheduler s({{"a", 2, 0}, {"b", 2, 0}, {"c", 2, 0}});
  s.SetHostDown("b", true);
  s.SetHostDown("unknown", true);  // ignored
  EXPECT_TRUE(s.IsHostDown("b"));
  EXPECT_FALSE(s.IsHostDown("unknown"));
  auto starts = s.Schedule({{"job", 4, 0, 1}});
  ASSERT_EQ(starts.size(), 1u);
  ASSERT_EQ(starts[0].second.size(), 2u);
  EXPECT_EQ(starts[0].second[0].host, "a");
  EXPECT_EQ(starts[0].second[1].host, "c");
  // Only b is free now, and it is down: the next job waits until b is up.
  EXPECT_TRUE(s.Schedule({{"next", 2, 0, 2}}).empty());
  s.SetHostDown("b", false);
  auto next = s.Schedule({{"next", 2, 0, 2}});
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].second[0].host, "b");
}

TEST(SchedulerTest, ReserveBeyondCapacityIsReported) {
  Scheduler s(LocalInventory(2));
  EXPECT_TRUE(s.Reserve("adopted", {{"localhost", 2}}).ok());
  absl::Status st = s.Reserve("other", {{"localhost", 1}});
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.free_slots(), -1);
}

TEST(HostsFileTest, ParsesHostsSlotsAndGpus) {
  auto hosts =
      ParseHostsFile("# cluster\nnode1 slots=4 gpus=2\n\n  node2   slots=8   # big one\n", "hosts");
  ASSERT_TRUE(hosts.ok()) << hosts.status();
  ASSERT_EQ(hosts->size(), 2u);
  EXPECT_EQ((*hosts)[0].name, "node1");
  EXPECT_EQ((*hosts)[0].slots, 4);
  EXPECT_EQ((*hosts)[0].gpus, 2);
  EXPECT_EQ((*hosts)[1].name, "node2");
  EXPECT_EQ((*hosts)[1].slots, 8);
  EXPECT_EQ(Scheduler(*hosts).total_slots(), 12);
}

TEST(HostsFileTest, ErrorsNameFileAndLine) {
  struct Case {
    const char* text;
    const char* want;
  };
  for (const Case& c : {Case{"node1\n", "hosts:1: host 'node1' needs slots=N"},
                        Case{"a slots=1\nb slots=x\n", "hosts:2: 'slots=x'"},
                        Case{"a slots=0\n", "hosts:1: slots must be >= 1"},
                        Case{"a slots=1 cpus=3\n", "hosts:1: unknown key 'cpus'"},
                        Case{"a slots=1\na slots=2\n", "hosts:2: host 'a' is listed twice"},
                        Case{"slots=2\n", "hosts:1: expected a host name first"},
                        Case{"# nothing\n", "hosts: no hosts"}}) {
    auto hosts = ParseHostsFile(c.text, "hosts");
    ASSERT_FALSE(hosts.ok()) << c.text;
    EXPECT_EQ(hosts.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(hosts.status().message().find(c.want), std::string::npos) << hosts.status();
  }
}

}  // namespace
}  // namespace distill::coordinator
