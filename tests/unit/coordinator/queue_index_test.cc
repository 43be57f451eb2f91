// QueueIndex against Scheduler::Order, the reference for the queue order.
#include "coordinator/queue_index.h"

#include <gtest/gtest.h>

#include <random>

#include "coordinator/scheduler.h"

namespace distill::coordinator {
namespace {

TEST(QueueIndexTest, PositionsFollowPriorityThenSeq) {
  QueueIndex q;
  q.Insert(0, 1);
  q.Insert(5, 2);
  q.Insert(0, 3);
  q.Insert(5, 4);
  EXPECT_EQ(q.Position(5, 2), 1);
  EXPECT_EQ(q.Position(5, 4), 2);
  EXPECT_EQ(q.Position(0, 1), 3);
  EXPECT_EQ(q.Position(0, 3), 4);
  // A job not in the index gets the place it would take.
  EXPECT_EQ(q.Position(9, 10), 1);
  EXPECT_EQ(q.Position(0, 2), 4);
  q.Erase(5, 2);
  q.Erase(5, 2);  // absent: no-op
  EXPECT_EQ(q.Position(0, 1), 2);
  EXPECT_EQ(q.size(), 3u);
}

TEST(QueueIndexTest, MatchesSchedulerOrderUnderRandomChanges) {
  std::mt19937 rng(7);
  QueueIndex q;
  std::vector<QueuedJob> jobs;
  for (int64_t seq = 1; seq <= 300; ++seq) {
    const int priority = static_cast<int>(rng() % 4) - 1;
    if (rng() % 4 == 0 && !jobs.empty()) {
      const size_t i = rng() % jobs.size();
      q.Erase(jobs[i].priority, jobs[i].seq);
      jobs.erase(jobs.begin() + static_cast<std::ptrdiff_t>(i));
    }
    q.Insert(priority, seq);
    jobs.push_back({std::to_string(seq), 1, priority, seq, true});
  }
  const std::vector<QueuedJob> order = Scheduler::Order(jobs);
  ASSERT_EQ(q.size(), order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    EXPECT_EQ(q.Position(order[i].priority, order[i].seq), static_cast<int>(i) + 1);
  }
}

}  // namespace
}  // namespace distill::coordinator
