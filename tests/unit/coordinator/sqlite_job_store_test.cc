// SqliteJobStore against a real SQLite file: round trip, WAL, reopen,
// idempotent request ids, event sequences, listing order and filters.
#include "coordinator/sqlite_job_store.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "google/protobuf/util/message_differencer.h"

namespace distill::coordinator {
namespace {

using distill::v1::JobEvent;
using distill::v1::JobState;

class SqliteJobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/distill_store_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/coordinator.db";
    auto s = SqliteJobStore::Open(path_);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  static JobRecord Record(const std::string& id, const std::string& request_id = "",
                          JobState state = distill::v1::QUEUED) {
    JobRecord r;
    r.job.set_id(id);
    r.job.set_request_id(request_id);
    r.job.set_state(state);
    r.job.mutable_spec()->set_name("name-" + id);
    r.job.mutable_spec()->set_output("/out/" + id);
    r.job.set_ranks(2);
    return r;
  }

  std::string dir_, path_;
  std::unique_ptr<SqliteJobStore> store_;
};

TEST_F(SqliteJobStoreTest, CreateThenGetRoundTrips) {
  JobRecord r = Record("j1", "req-1");
  r.launch_pid = 1234;
  r.cancel_requested = true;
  r.cancel_force = true;
  r.not_before_ms = 99;
  bool created = false;
  auto stored = store_->CreateJob(r, {JobEvent::STATE_CHANGED, "submitted"}, &created);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_TRUE(created);
  EXPECT_EQ(stored->seq, 1);
  auto got = store_->GetJob("j1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(got->job, r.job));
  EXPECT_EQ(got->seq, 1);
  EXPECT_EQ(got->launch_pid, 1234);
  EXPECT_TRUE(got->cancel_requested);
  EXPECT_TRUE(got->cancel_force);
  EXPECT_EQ(got->not_before_ms, 99);
}

TEST_F(SqliteJobStoreTest, GetUnknownJobReturnsNotFound) {
  EXPECT_EQ(store_->GetJob("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->UpdateJob(Record("nope"), std::nullopt).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SqliteJobStoreTest, RequestIdLookupUsesItsIndex) {
  // Every SubmitJob with a request id runs this lookup under the write lock: a
  // table scan would make submissions slower as jobs accumulate.
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(store_->CreateJob(Record("j" + std::to_string(i), "req" + std::to_string(i)), {},
                                  nullptr)
                    .ok());
  }
  auto plan = store_->RequestIdLookupPlan();
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_NE(plan->find("USING INDEX jobs_request_id"), std::string::npos) << *plan;
  EXPECT_EQ(plan->find("SCAN"), std::string::npos) << *plan;
}

TEST_F(SqliteJobStoreTest, UsesWalAndSurvivesReopen) {
  auto mode = store_->JournalMode();
  ASSERT_TRUE(mode.ok()) << mode.status();
  EXPECT_EQ(*mode, "wal");
  ASSERT_TRUE(store_->CreateJob(Record("j1"), {}, nullptr).ok());
  JobRecord r = Record("j1", "", distill::v1::RUNNING);
  r.seq = 1;
  r.launch_pid = 77;
  ASSERT_TRUE(store_->UpdateJob(r, EventInfo{JobEvent::STATE_CHANGED, "running"}).ok());
  EXPECT_TRUE(std::filesystem::exists(path_ + "-wal"));
  store_.reset();
  auto reopened = SqliteJobStore::Open(path_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  auto got = (*reopened)->GetJob("j1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->job.state(), distill::v1::RUNNING);
  EXPECT_EQ(got->launch_pid, 77);
  auto events = (*reopened)->ListEvents("j1", 0, 10);
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(events->size(), 2u);
}

TEST_F(SqliteJobStoreTest, SameRequestIdReturnsTheFirstJob) {
  bool created = false;
  ASSERT_TRUE(store_->CreateJob(Record("j1", "req"), {}, &created).ok());
  EXPECT_TRUE(created);
  auto again = store_->CreateJob(Record("j2", "req"), {}, &created);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(created);
  EXPECT_EQ(again->job.id(), "j1");
  EXPECT_EQ(store_->GetJob("j2").status().code(), absl::StatusCode::kNotFound);
  // Empty request ids are never deduplicated.
  ASSERT_TRUE(store_->CreateJob(Record("j3"), {}, &created).ok());
  EXPECT_TRUE(created);
  ASSERT_TRUE(store_->CreateJob(Record("j4"), {}, &created).ok());
  EXPECT_TRUE(created);
}

TEST_F(SqliteJobStoreTest, DuplicateIdIsAlreadyExists) {
  ASSERT_TRUE(store_->CreateJob(Record("j1"), {}, nullptr).ok());
  EXPECT_EQ(store_->CreateJob(Record("j1"), {}, nullptr).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_F(SqliteJobStoreTest, EventsHaveIncreasingSequencesPerJob) {
  JobRecord a = *store_->CreateJob(Record("a"), {JobEvent::STATE_CHANGED, "submitted"}, nullptr);
  JobRecord b = *store_->CreateJob(Record("b"), {JobEvent::STATE_CHANGED, "submitted"}, nullptr);
  a.job.set_state(distill::v1::STARTING);
  EXPECT_EQ(*store_->UpdateJob(a, EventInfo{JobEvent::STATE_CHANGED, "launching"}), 2);
  EXPECT_EQ(*store_->UpdateJob(a, std::nullopt), 0);  // no event
  a.job.mutable_progress()->set_step(5);
  EXPECT_EQ(*store_->UpdateJob(a, EventInfo{JobEvent::PROGRESS, "step 5"}), 3);
  EXPECT_EQ(*store_->UpdateJob(b, EventInfo{JobEvent::PROGRESS, "b"}), 2);

  auto all = store_->ListEvents("a", 0, 100);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].sequence(), 1);
  EXPECT_EQ((*all)[0].message(), "submitted");
  EXPECT_EQ((*all)[0].job().state(), distill::v1::QUEUED);
  EXPECT_EQ((*all)[1].job().state(), distill::v1::STARTING);  // the job as of the event
  EXPECT_EQ((*all)[2].kind(), JobEvent::PROGRESS);
  EXPECT_EQ((*all)[2].job().progress().step(), 5);
  EXPECT_TRUE((*all)[2].has_time());
  auto rest = store_->ListEvents("a", 2, 100);
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0].sequence(), 3);
  EXPECT_EQ(store_->ListEvents("a", 1, 1)->size(), 1u);
}

TEST_F(SqliteJobStoreTest, ListsNewestFirstWithStateFilterAndCursor) {
  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE(store_
                    ->CreateJob(Record("j" + std::to_string(i), "",
                                       i % 2 ? distill::v1::QUEUED : distill::v1::RUNNING),
                                {}, nullptr)
                    .ok());
  }
  auto page = store_->ListJobs(distill::v1::JOB_STATE_UNSPECIFIED, 0, 2);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].job.id(), "j5");
  EXPECT_EQ((*page)[1].job.id(), "j4");
  auto next = store_->ListJobs(distill::v1::JOB_STATE_UNSPECIFIED, (*page)[1].seq, 10);
  ASSERT_EQ(next->size(), 3u);
  EXPECT_EQ((*next)[0].job.id(), "j3");
  auto queued = store_->ListJobs(distill::v1::QUEUED, 0, 10);
  ASSERT_EQ(queued->size(), 3u);
  EXPECT_EQ((*queued)[2].job.id(), "j1");
  auto live = store_->JobsInStates({distill::v1::RUNNING});
  ASSERT_EQ(live->size(), 2u);
  EXPECT_EQ((*live)[0].job.id(), "j2");  // oldest first
  auto counts = store_->CountJobs();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ((*counts)[distill::v1::QUEUED], 3);
  EXPECT_EQ((*counts)[distill::v1::RUNNING], 2);
}

// One transaction for a batch: a request id repeated inside the batch, or
// of a job stored before, returns that job; a duplicate id fails that job
// alone (no row, no event, no seq used); the others commit.
TEST_F(SqliteJobStoreTest, CreateJobsBatchIsIdempotentAndIsolatesFailures) {
  const EventInfo submitted{JobEvent::STATE_CHANGED, "submitted"};
  ASSERT_TRUE(store_->CreateJob(Record("x", "req-x"), submitted, nullptr).ok());
  const std::vector<NewJob> batch = {
      {Record("a", "req-a"), submitted},  // new
      {Record("b", "req-a"), submitted},  // the request of a, again
      {Record("x"), submitted},           // duplicate id
      {Record("c", "req-x"), submitted},  // the request of a job stored before
      {Record("d"), submitted},           // new
  };
  auto r = store_->CreateJobs(batch);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 5u);
  ASSERT_TRUE((*r)[0].record.ok()) << (*r)[0].record.status();
  EXPECT_TRUE((*r)[0].created);
  EXPECT_EQ((*r)[0].record->job.id(), "a");
  EXPECT_EQ((*r)[0].record->seq, 2);
  ASSERT_TRUE((*r)[1].record.ok()) << (*r)[1].record.status();
  EXPECT_FALSE((*r)[1].created);
  EXPECT_EQ((*r)[1].record->job.id(), "a");
  EXPECT_EQ((*r)[1].record->seq, 2);
  EXPECT_EQ((*r)[2].record.status().code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE((*r)[3].record.ok()) << (*r)[3].record.status();
  EXPECT_FALSE((*r)[3].created);
  EXPECT_EQ((*r)[3].record->job.id(), "x");
  ASSERT_TRUE((*r)[4].record.ok()) << (*r)[4].record.status();
  EXPECT_TRUE((*r)[4].created);
  EXPECT_EQ((*r)[4].record->seq, 3);

  // What a restarted coordinator would see (the first store still open).
  auto other = SqliteJobStore::Open(path_);
  ASSERT_TRUE(other.ok()) << other.status();
  auto all = (*other)->ListJobs(distill::v1::JOB_STATE_UNSPECIFIED, 0, 10);
  ASSERT_TRUE(all.ok()) << all.status();
  std::vector<std::string> ids;
  for (const JobRecord& j : *all) ids.push_back(j.job.id());
  EXPECT_EQ(ids, (std::vector<std::string>{"d", "a", "x"}));
  for (const char* id : {"a", "d", "x"}) {
    auto events = (*other)->ListEvents(id, 0, 10);
    ASSERT_TRUE(events.ok()) << events.status();
    EXPECT_EQ(events->size(), 1u) << id;
  }
  EXPECT_EQ((*other)->GetJob("x")->job.request_id(), "req-x");  // untouched
  EXPECT_EQ((*other)->GetJob("b").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SqliteJobStoreTest, ASweepAndItsChildrenAreWrittenTogetherOrNotAtAll) {
  const EventInfo submitted{JobEvent::STATE_CHANGED, "submitted"};
  ASSERT_TRUE(store_->CreateJob(Record("taken"), submitted, nullptr).ok());
  NewJob sweep{Record("p", "req-p"), submitted, {Record("c1"), Record("c2")}};
  NewJob clash{Record("q", "req-q"), submitted, {Record("c3"), Record("taken")}};
  auto r = store_->CreateJobs({sweep, clash, sweep});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE((*r)[0].record.ok()) << (*r)[0].record.status();
  EXPECT_TRUE((*r)[0].created);
  ASSERT_EQ((*r)[0].children.size(), 2u);
  EXPECT_EQ((*r)[0].record->seq, 2);
  EXPECT_EQ((*r)[0].children[0].job.id(), "c1");
  EXPECT_EQ((*r)[0].children[1].seq, 4);
  // A child that cannot be written undoes its whole sweep.
  EXPECT_EQ((*r)[1].record.status().code(), absl::StatusCode::kAlreadyExists);
  for (const char* id : {"q", "c3"}) {
    EXPECT_EQ(store_->GetJob(id).status().code(), absl::StatusCode::kNotFound) << id;
  }
  // The same request again: the first sweep, nothing new.
  ASSERT_TRUE((*r)[2].record.ok());
  EXPECT_FALSE((*r)[2].created);
  EXPECT_EQ((*r)[2].record->job.id(), "p");
  auto all = store_->ListJobs(distill::v1::JOB_STATE_UNSPECIFIED, 0, 10);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 4u);
  auto events = store_->ListEvents("c2", 0, 10);
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(events->size(), 1u);
}

// A write that returned is visible to the next read (reader connections in
// WAL mode) and to a second store opened on the file while the first is still
// open, as after a kill -9 of the coordinator (nothing closed or flushed).
TEST_F(SqliteJobStoreTest, ReturnedWritesAreReadAndSurviveAnUncleanReopen) {
  bool created = false;
  auto stored = store_->CreateJob(Record("j1"), {JobEvent::STATE_CHANGED, "submitted"}, &created);
  ASSERT_TRUE(stored.ok()) << stored.status();
  for (int i = 0; i < 20; ++i) {
    JobRecord r = *stored;
    r.launch_pid = 100 + i;
    ASSERT_TRUE(store_->UpdateJob(r, std::nullopt).ok());
    auto got = store_->GetJob("j1");
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->launch_pid, 100 + i);
  }
  auto other = SqliteJobStore::Open(path_);
  ASSERT_TRUE(other.ok()) << other.status();
  auto got = (*other)->GetJob("j1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->launch_pid, 119);
  auto events = (*other)->ListEvents("j1", 0, 10);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_EQ(events->size(), 1u);
}

}  // namespace
}  // namespace distill::coordinator
