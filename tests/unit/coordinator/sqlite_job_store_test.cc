// SqliteJobStore against a real SQLite file: round trip, WAL, reopen,
// idempotent request ids, event sequences, listing order and filters, small
// events, a file of the previous schema, deletion and retention queries.
#include "coordinator/sqlite_job_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/util/time_util.h"

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

  // A spec of about `bytes` serialized: data.train paths of 100 bytes.
  static void Enlarge(JobRecord* r, size_t bytes) {
    for (size_t n = 0; n < bytes / 102; ++n)
      r->job.mutable_spec()->mutable_data()->add_train("/data/" + std::string(94, 'x'));
  }
  // The database file's size once the store is closed (its WAL checkpointed
  // into it and removed).
  int64_t ClosedFileSize() {
    store_.reset();
    EXPECT_FALSE(std::filesystem::exists(path_ + "-wal"));
    const int64_t size = static_cast<int64_t>(std::filesystem::file_size(path_));
    auto s = SqliteJobStore::Open(path_);
    EXPECT_TRUE(s.ok()) << s.status();
    if (s.ok()) store_ = std::move(*s);
    return size;
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

// Note [Small events]: a state change keeps the job without its spec (but
// its name and type), a progress event only the progress and what places it.
TEST_F(SqliteJobStoreTest, EventsStoreWhatChangedNotTheSpec) {
  JobRecord r = Record("j1");
  r.job.mutable_spec()->set_type(distill::v1::DISTILL);
  r.job.set_request_id("req");
  ASSERT_TRUE(store_->CreateJob(r, {JobEvent::STATE_CHANGED, "submitted"}, nullptr).ok());
  r.seq = 1;
  r.job.set_state(distill::v1::RUNNING);
  r.job.set_attempt(2);
  r.job.add_hosts("h:1");
  r.job.mutable_progress()->set_step(7);
  *r.job.mutable_update_time() = google::protobuf::util::TimeUtil::MillisecondsToTimestamp(5);
  ASSERT_TRUE(store_->UpdateJob(r, EventInfo{JobEvent::PROGRESS, "step 7"}).ok());
  auto events = store_->ListEvents("j1", 0, 10);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 2u);
  const distill::v1::Job& changed = (*events)[0].job();
  EXPECT_EQ(changed.id(), "j1");
  EXPECT_EQ(changed.request_id(), "req");
  EXPECT_EQ(changed.ranks(), 2);
  EXPECT_EQ(changed.spec().name(), "name-j1");
  EXPECT_EQ(changed.spec().type(), distill::v1::DISTILL);
  EXPECT_TRUE(changed.spec().output().empty());
  distill::v1::Job progress_want;
  progress_want.set_id("j1");
  progress_want.set_state(distill::v1::RUNNING);
  progress_want.set_attempt(2);
  progress_want.mutable_progress()->set_step(7);
  *progress_want.mutable_update_time() = r.job.update_time();
  progress_want.mutable_spec()->set_type(distill::v1::DISTILL);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals((*events)[1].job(), progress_want))
      << (*events)[1].job().DebugString();
}

// The attack this bounds: a 1 MiB spec and 100 steps grew the file by 109 MB
// when every event held the whole job.
TEST_F(SqliteJobStoreTest, AMegabyteSpecAndHundredProgressEventsGrowTheFileLittle) {
  JobRecord r = Record("big");
  Enlarge(&r, size_t{1} << 20);
  ASSERT_GT(r.job.spec().ByteSizeLong(), size_t{1000} << 10);
  auto stored = store_->CreateJob(r, {JobEvent::STATE_CHANGED, "submitted"}, nullptr);
  ASSERT_TRUE(stored.ok()) << stored.status();
  const int64_t before = ClosedFileSize();
  r = *stored;
  r.job.set_state(distill::v1::RUNNING);
  int64_t wal_max = 0;
  for (int step = 1; step <= 100; ++step) {
    r.job.mutable_progress()->set_step(step);
    r.job.mutable_progress()->set_loss(1.0 / step);
    ASSERT_TRUE(store_->UpdateJob(r, EventInfo{JobEvent::PROGRESS, "step"}).ok());
    wal_max = std::max<int64_t>(
        wal_max, static_cast<int64_t>(std::filesystem::file_size(path_ + "-wal")));
  }
  const int64_t after = ClosedFileSize();
  std::cout << "file " << before << " -> " << after << " bytes after 100 progress events of a "
            << r.job.spec().ByteSizeLong() << "-byte spec (WAL at most " << wal_max << ")\n";
  EXPECT_LT(after - before, int64_t{5} << 20);
  auto events = store_->ListEvents("big", 0, 1000);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 101u);
  EXPECT_EQ(events->back().job().progress().step(), 100);
  EXPECT_EQ(store_->GetJob("big")->job.spec().data().train_size(), r.job.spec().data().train_size());
}

// A file written by the coordinator before Note [Store schema]: the old
// tables, and events holding whole jobs. It opens, its jobs and events read
// as new ones, and its finished jobs expire.
TEST_F(SqliteJobStoreTest, OpensAFileOfThePreviousSchema) {
  store_.reset();
  std::filesystem::remove(path_);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  auto exec = [&](const std::string& sql) {
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << err;
    sqlite3_free(err);
  };
  exec(R"sql(PRAGMA journal_mode=WAL;
CREATE TABLE jobs (id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, state INTEGER NOT NULL,
  request_id TEXT NOT NULL, job BLOB NOT NULL, launch_pid INTEGER NOT NULL DEFAULT 0,
  cancel_requested INTEGER NOT NULL DEFAULT 0, cancel_force INTEGER NOT NULL DEFAULT 0,
  not_before_ms INTEGER NOT NULL DEFAULT 0, last_event INTEGER NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX jobs_request_id ON jobs(request_id) WHERE request_id != '';
CREATE INDEX jobs_state_seq ON jobs(state, seq);
CREATE TABLE events (job_id TEXT NOT NULL, sequence INTEGER NOT NULL, event BLOB NOT NULL,
  PRIMARY KEY (job_id, sequence));)sql");
  auto hex = [](const std::string& bytes) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) out += {digits[c >> 4], digits[c & 15]};
    return out;
  };
  const int64_t ended_ms = 1700000000000;
  int seq = 0;
  for (const char* id : {"done", "child", "live"}) {
    JobRecord r = Record(id, "", std::string(id) == "live" ? distill::v1::RUNNING
                                                          : distill::v1::SUCCEEDED);
    if (std::string(id) == "child") r.job.set_parent_id("done");
    if (r.job.state() == distill::v1::SUCCEEDED)
      *r.job.mutable_end_time() = google::protobuf::util::TimeUtil::MillisecondsToTimestamp(ended_ms);
    JobEvent e;
    e.set_sequence(1);
    e.set_kind(JobEvent::STATE_CHANGED);
    *e.mutable_job() = r.job;  // the whole job, spec included
    exec(absl::StrCat("INSERT INTO jobs (id, seq, state, request_id, job, last_event) VALUES ('",
                      id, "', ", ++seq, ", ", static_cast<int>(r.job.state()), ", '', x'",
                      hex(r.job.SerializeAsString()), "', 1)"));
    exec(absl::StrCat("INSERT INTO events VALUES ('", id, "', 1, x'", hex(e.SerializeAsString()),
                      "')"));
  }
  sqlite3_close(db);

  auto opened = SqliteJobStore::Open(path_);
  ASSERT_TRUE(opened.ok()) << opened.status();
  store_ = std::move(*opened);
  auto all = store_->ListJobs(distill::v1::JOB_STATE_UNSPECIFIED, 0, 10);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ(store_->GetJob("done")->job.spec().output(), "/out/done");
  auto events = store_->ListEvents("done", 0, 10);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].job().state(), distill::v1::SUCCEEDED);
  EXPECT_EQ((*events)[0].job().spec().name(), "name-done");
  EXPECT_TRUE((*events)[0].job().spec().output().empty());  // reduced as it is read
  // The new columns were filled from the stored jobs: only the finished
  // top-level job expires.
  auto expired = store_->ExpiredJobs(ended_ms + 1, 10);
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_EQ(*expired, std::vector<std::string>{"done"});
  EXPECT_TRUE(store_->ExpiredJobs(ended_ms, 10)->empty());
  // New writes and a second open work on the migrated file.
  auto created = store_->CreateJob(Record("new"), {JobEvent::STATE_CHANGED, "submitted"}, nullptr);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->seq, 4);
  EXPECT_TRUE(SqliteJobStore::Open(path_).ok());
}

TEST_F(SqliteJobStoreTest, AFileOfANewerSchemaIsRefused) {
  store_.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto opened = SqliteJobStore::Open(path_);
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition) << opened.status();
}

TEST_F(SqliteJobStoreTest, DeleteJobsRemovesJobsWithTheirEventsTogether) {
  for (const char* id : {"a", "b", "c"}) {
    ASSERT_TRUE(store_->CreateJob(Record(id), {JobEvent::STATE_CHANGED, "submitted"}, nullptr).ok());
  }
  JobRecord b = *store_->GetJob("b");
  b.job.set_state(distill::v1::CANCELLED);
  ASSERT_TRUE(store_->UpdateJob(b, EventInfo{JobEvent::STATE_CHANGED, "cancelled"}).ok());
  auto deleted = store_->DeleteJobs({"a", "b", "not-stored"});
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, (std::map<JobState, int>{{distill::v1::QUEUED, 1},
                                               {distill::v1::CANCELLED, 1}}));
  auto other = SqliteJobStore::Open(path_);  // what a restart finds
  ASSERT_TRUE(other.ok()) << other.status();
  for (const char* id : {"a", "b"}) {
    EXPECT_EQ((*other)->GetJob(id).status().code(), absl::StatusCode::kNotFound) << id;
    EXPECT_TRUE((*other)->ListEvents(id, 0, 10)->empty()) << id;
  }
  EXPECT_TRUE((*other)->GetJob("c").ok());
  EXPECT_EQ((*other)->ListEvents("c", 0, 10)->size(), 1u);
  EXPECT_EQ((*(*other)->CountJobs())[distill::v1::QUEUED], 1);
}

TEST_F(SqliteJobStoreTest, ExpiredJobsAreFinishedTopLevelJobsEarliestEndFirst) {
  using google::protobuf::util::TimeUtil;
  struct Case {
    const char* id;
    JobState state;
    int64_t end_ms;
  };
  for (const Case& c : {Case{"late", distill::v1::FAILED, 3000},
                        Case{"early", distill::v1::CANCELLED, 1000},
                        Case{"queued", distill::v1::QUEUED, 0},
                        Case{"recent", distill::v1::SUCCEEDED, 9000}}) {
    JobRecord r = Record(c.id);
    ASSERT_TRUE(store_->CreateJob(r, {}, nullptr).ok());
    r = *store_->GetJob(c.id);
    r.job.set_state(c.state);
    if (c.end_ms > 0) *r.job.mutable_end_time() = TimeUtil::MillisecondsToTimestamp(c.end_ms);
    ASSERT_TRUE(store_->UpdateJob(r, std::nullopt).ok());
  }
  JobRecord child = Record("child");  // a sweep's: goes with its sweep
  child.job.set_parent_id("late");
  child.job.set_state(distill::v1::SUCCEEDED);
  *child.job.mutable_end_time() = TimeUtil::MillisecondsToTimestamp(100);
  ASSERT_TRUE(store_->CreateJob(child, {}, nullptr).ok());
  auto expired = store_->ExpiredJobs(5000, 10);
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_EQ(*expired, (std::vector<std::string>{"early", "late"}));
  EXPECT_EQ(*store_->ExpiredJobs(5000, 1), std::vector<std::string>{"early"});
}

// Note [ListJobs budget]: a listing stops before the job that would bring it
// over the byte budget, the first job always comes, and `more` tells.
TEST_F(SqliteJobStoreTest, ListSerializedJobsStopsAtTheByteBudget) {
  for (int i = 1; i <= 5; ++i) {
    JobRecord r = Record("j" + std::to_string(i));
    Enlarge(&r, 1000);
    ASSERT_TRUE(store_->CreateJob(r, {}, nullptr).ok());
  }
  const size_t one = store_->ListSerializedJobs(distill::v1::JOB_STATE_UNSPECIFIED, 0, 1, 0,
                                                nullptr)->at(0).job.size();
  bool more = false;
  auto page = store_->ListSerializedJobs(distill::v1::JOB_STATE_UNSPECIFIED, 0, 10,
                                         2 * one + one / 2, &more);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[1].seq, 4);
  EXPECT_TRUE(more);
  page = store_->ListSerializedJobs(distill::v1::JOB_STATE_UNSPECIFIED, 0, 10, 10, &more);
  ASSERT_EQ(page->size(), 1u);  // larger than the budget: alone
  EXPECT_TRUE(more);
  page = store_->ListSerializedJobs(distill::v1::JOB_STATE_UNSPECIFIED, 3, 10, 10 * one, &more);
  ASSERT_EQ(page->size(), 2u);
  EXPECT_FALSE(more);
  page = store_->ListSerializedJobs(distill::v1::JOB_STATE_UNSPECIFIED, 0, 5, 0, &more);
  ASSERT_EQ(page->size(), 5u);
  EXPECT_FALSE(more);
  page = store_->ListSerializedJobs(distill::v1::JOB_STATE_UNSPECIFIED, 0, 4, 0, &more);
  EXPECT_TRUE(more);
}

// --sync: NORMAL by default, FULL (an fsync of the WAL at every commit) when
// asked; either way a write is read back after an unclean reopen.
TEST(SqliteJobStoreSyncTest, FullSyncIsInEffectWhenAsked) {
  char tmpl[] = "/tmp/sqlite_sync_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  for (auto [sync, pragma] : {std::pair{SqliteJobStore::Sync::kNormal, 1},
                              std::pair{SqliteJobStore::Sync::kFull, 2}}) {
    const std::string path = dir + "/db" + std::to_string(pragma);
    auto store = SqliteJobStore::Open(path, sync);
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ(*(*store)->SynchronousPragma(), pragma);
    NewJob nj;
    nj.record.job.set_id("j" + std::to_string(pragma));
    nj.record.job.set_state(distill::v1::QUEUED);
    auto created = (*store)->CreateJobs({nj});
    ASSERT_TRUE(created.ok()) << created.status();
    auto other = SqliteJobStore::Open(path, sync);  // as after kill -9: the first still open
    ASSERT_TRUE(other.ok()) << other.status();
    EXPECT_TRUE((*other)->GetJob(nj.record.job.id()).ok());
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace distill::coordinator
