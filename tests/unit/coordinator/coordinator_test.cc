// Coordinator submissions through the group commit, against a real SQLite
// file behind a fault-injecting JobStore (as leveldb's fault_injection_test):
// concurrent submissions are all durable once answered, a request id stays
// idempotent inside one batch, and a failing insert or batch fails only its
// own callers and loses nothing stored before. The control loop is not
// started, so nothing is launched.
#include "coordinator/coordinator.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/clock.h"
#include "coordinator/mpirun_launcher.h"
#include "coordinator/sqlite_job_store.h"

namespace distill::coordinator {
namespace {

using distill::v1::Job;

// SqliteJobStore with faults: jobs named "bad*" fail alone (Internal), the
// next `fail_batches` CreateJobs() calls fail whole (Unavailable), UpdateJob()
// fails on demand (Unavailable), and
// CreateJobs() can be held at a gate so that submissions pile up into one
// batch. Counts CreateJobs() calls (batches).
class FaultyStore : public JobStore {
 public:
  explicit FaultyStore(SqliteJobStore* real) : real_(real) {}

  absl::StatusOr<std::vector<CreatedJob>> CreateJobs(const std::vector<NewJob>& jobs) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      ++arrived_;
      gate_cv_.notify_all();
      gate_cv_.wait(lock, [&] { return gate_open_; });
      ++batches_;
      max_batch_ = std::max(max_batch_, static_cast<int>(jobs.size()));
      if (fail_batches_ > 0) {
        --fail_batches_;
        return absl::UnavailableError("injected: the store is unavailable");
      }
    }
    if (slow_) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::vector<NewJob> good;
    std::vector<size_t> where;
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (jobs[i].record.job.spec().name().rfind("bad", 0) == 0) continue;
      good.push_back(jobs[i]);
      where.push_back(i);
    }
    std::vector<CreatedJob> out(jobs.size());
    for (CreatedJob& c : out) c.record = absl::InternalError("injected: insert failed");
    auto r = real_->CreateJobs(good);
    if (!r.ok()) return r.status();
    for (size_t k = 0; k < where.size(); ++k) out[where[k]] = std::move((*r)[k]);
    return out;
  }
  absl::StatusOr<JobRecord> GetJob(const std::string& id) override { return real_->GetJob(id); }
  absl::StatusOr<int64_t> UpdateJob(const JobRecord& record,
                                    const std::optional<EventInfo>& event) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (fail_updates_) {
        ++failed_updates_;
        return absl::UnavailableError("injected: update failed");
      }
    }
    return real_->UpdateJob(record, event);
  }
  absl::StatusOr<std::vector<JobRecord>> ListJobs(distill::v1::JobState state, int64_t before_seq,
                                                  int limit) override {
    return real_->ListJobs(state, before_seq, limit);
  }
  absl::StatusOr<std::vector<SerializedJob>> ListSerializedJobs(distill::v1::JobState state,
                                                                int64_t before_seq, int limit,
                                                                size_t max_bytes,
                                                                bool* more) override {
    return real_->ListSerializedJobs(state, before_seq, limit, max_bytes, more);
  }
  absl::StatusOr<std::vector<std::string>> ExpiredJobs(int64_t ended_before_ms,
                                                       int limit) override {
    return real_->ExpiredJobs(ended_before_ms, limit);
  }
  absl::StatusOr<std::map<distill::v1::JobState, int>> DeleteJobs(
      const std::vector<std::string>& ids) override {
    return real_->DeleteJobs(ids);
  }
  absl::StatusOr<std::vector<JobRecord>> JobsInStates(
      const std::vector<distill::v1::JobState>& states) override {
    return real_->JobsInStates(states);
  }
  absl::StatusOr<std::map<distill::v1::JobState, int>> CountJobs() override {
    return real_->CountJobs();
  }
  absl::StatusOr<std::vector<distill::v1::JobEvent>> ListEvents(const std::string& id,
                                                                int64_t after_sequence,
                                                                int limit) override {
    return real_->ListEvents(id, after_sequence, limit);
  }

  void SetGate(bool open) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      gate_open_ = open;
    }
    gate_cv_.notify_all();
  }
  // Waits until `n` CreateJobs() calls have begun (they may wait at the gate).
  void WaitArrived(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    gate_cv_.wait(lock, [&] { return arrived_ >= n; });
  }
  void FailBatches(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_batches_ = n;
  }
  // While on, every UpdateJob() fails (Unavailable) and writes nothing.
  void FailUpdates(bool fail) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_updates_ = fail;
  }
  int failed_updates() {
    std::lock_guard<std::mutex> lock(mu_);
    return failed_updates_;
  }
  void set_slow(bool slow) { slow_ = slow; }
  int batches() {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_;
  }
  int max_batch() {
    std::lock_guard<std::mutex> lock(mu_);
    return max_batch_;
  }

 private:
  SqliteJobStore* const real_;
  std::mutex mu_;
  std::condition_variable gate_cv_;  // the gate opened, or a call arrived
  bool gate_open_ = true;
  int arrived_ = 0;
  int fail_batches_ = 0;
  bool fail_updates_ = false;
  int failed_updates_ = 0;
  int batches_ = 0;
  int max_batch_ = 0;
  std::atomic<bool> slow_{false};
};

// Never launches anything (the control loop is not started).
class NoLauncher : public Launcher {
 public:
  absl::StatusOr<int64_t> Launch(const LaunchSpec&) override {
    return absl::UnavailableError("no launches in this test");
  }
  LaunchStatus Poll(int64_t, const std::string&) override { return {}; }
  void Terminate(int64_t, const std::string&, bool) override {}
  int64_t RecordedLaunchId(const std::string&) const override { return 0; }
  std::string RankLogPath(const std::string& work_dir, int rank) const override {
    return work_dir + "/rank." + std::to_string(rank) + ".log";
  }
};

// Starts nothing: launch n (pid n) has ended as `ended[n - 1]` says, and its
// allocation is kept.
class ScriptedLauncher : public Launcher {
 public:
  explicit ScriptedLauncher(std::vector<LaunchStatus> ended) : ended_(std::move(ended)) {}
  absl::StatusOr<int64_t> Launch(const LaunchSpec& spec) override {
    launched.push_back(spec.allocation);
    return static_cast<int64_t>(launched.size());
  }
  LaunchStatus Poll(int64_t pid, const std::string&) override { return ended_.at(pid - 1); }
  void Terminate(int64_t, const std::string&, bool) override {}
  std::string RankLogPath(const std::string& work_dir, int rank) const override {
    return work_dir + "/rank." + std::to_string(rank) + ".log";
  }
  int64_t RecordedLaunchId(const std::string&) const override { return 0; }
  std::vector<Allocation> launched;

 private:
  std::vector<LaunchStatus> ended_;
};

class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/distill_coordinator_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto s = SqliteJobStore::Open(dir_ + "/coordinator.db");
    ASSERT_TRUE(s.ok()) << s.status();
    real_ = std::move(*s);
    store_ = std::make_unique<FaultyStore>(real_.get());
    scheduler_ = std::make_unique<Scheduler>(LocalInventory(2));
    CoordinatorOptions o;
    o.state_dir = dir_ + "/var";
    coordinator_ =
        std::make_unique<Coordinator>(o, store_.get(), scheduler_.get(), &launcher_, &metrics_);
  }
  void TearDown() override {
    coordinator_.reset();
    store_.reset();
    real_.reset();
    std::filesystem::remove_all(dir_);
  }

  static distill::v1::SubmitJobRequest Request(const std::string& name,
                                               const std::string& request_id = "") {
    distill::v1::SubmitJobRequest r;
    r.mutable_spec()->set_type(distill::v1::FINETUNE);
    r.mutable_spec()->set_name(name);
    r.mutable_spec()->set_output("/out/" + name);
    r.set_request_id(request_id);
    return r;
  }

  // The jobs in the file as a restarted coordinator would find them (a second
  // store on the file while the first is still open, as after kill -9).
  std::vector<JobRecord> Reopened() {
    auto other = SqliteJobStore::Open(dir_ + "/coordinator.db");
    EXPECT_TRUE(other.ok()) << other.status();
    if (!other.ok()) return {};
    auto all = (*other)->ListJobs(distill::v1::JOB_STATE_UNSPECIFIED, 0, 100000);
    EXPECT_TRUE(all.ok()) << all.status();
    return all.ok() ? *all : std::vector<JobRecord>{};
  }

  // Collects SubmitAsync() answers.
  struct Answers {
    std::mutex mu;
    std::condition_variable cv;
    std::map<std::string, absl::StatusOr<Job>> by_name;
    std::function<void(absl::StatusOr<Job>)> For(const std::string& name) {
      return [this, name](absl::StatusOr<Job> job) {
        std::lock_guard<std::mutex> lock(mu);
        by_name.emplace(name, std::move(job));
        cv.notify_all();
      };
    }
    void WaitFor(size_t n) {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return by_name.size() >= n; });
    }
  };

  std::string dir_;
  std::unique_ptr<SqliteJobStore> real_;
  std::unique_ptr<FaultyStore> store_;
  std::unique_ptr<Scheduler> scheduler_;
  NoLauncher launcher_;
  Metrics metrics_;
  std::unique_ptr<Coordinator> coordinator_;
};

// 16 threads x 25 submissions at once: every answer is a distinct QUEUED job
// that is already in the file, the writes were grouped into fewer batches
// than jobs, and a repeated request id answers with the first job.
TEST_F(CoordinatorTest, ConcurrentSubmissionsAreAllDurableWhenAnswered) {
  store_->set_slow(true);  // a slower commit lets submissions pile up
  constexpr int kThreads = 16, kPerThread = 25;
  std::mutex mu;
  std::set<std::string> ids;
  std::atomic<int> failures{0}, not_durable{0};
  std::vector<std::string> first_ids(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string name = "t" + std::to_string(t) + "-" + std::to_string(i);
        absl::StatusOr<Job> job = coordinator_->Submit(Request(name, "req-" + name));
        if (!job.ok() || job->state() != distill::v1::QUEUED || job->queue_position() < 1) {
          failures.fetch_add(1);
          continue;
        }
        // Answered after its commit: a fresh read of the file has it.
        if (!real_->GetJob(job->id()).ok()) not_durable.fetch_add(1);
        std::lock_guard<std::mutex> lock(mu);
        ids.insert(job->id());
        if (i == 0) first_ids[t] = job->id();
      }
      // The same request again (Note [Request ids]: the same spec).
      absl::StatusOr<Job> again = coordinator_->Submit(
          Request("t" + std::to_string(t) + "-0", "req-t" + std::to_string(t) + "-0"));
      if (!again.ok() || again->id() != first_ids[t]) failures.fetch_add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(not_durable.load(), 0);
  EXPECT_EQ(ids.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_LT(store_->batches(), kThreads * (kPerThread + 1));
  EXPECT_GT(store_->max_batch(), 1);

  const std::vector<JobRecord> stored = Reopened();
  EXPECT_EQ(stored.size(), static_cast<size_t>(kThreads * kPerThread));
  std::set<int64_t> seqs;
  for (const JobRecord& r : stored) {
    EXPECT_EQ(ids.count(r.job.id()), 1u) << r.job.id();
    seqs.insert(r.seq);
  }
  EXPECT_EQ(seqs.size(), stored.size());
  // Every answered job is listed, with its place in the queue.
  auto listed = coordinator_->List(distill::v1::QUEUED, 0, 1000, nullptr);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->size(), static_cast<size_t>(kThreads * kPerThread));
  std::set<int> positions;
  for (const Job& j : *listed) positions.insert(j.queue_position());
  EXPECT_EQ(positions.size(), listed->size());
  EXPECT_EQ(*positions.begin(), 1);
  EXPECT_EQ(*positions.rbegin(), kThreads * kPerThread);
}

// Two submissions of one request id (and one spec) that land in the same
// batch get the same job, and the file holds it once; a third with another
// spec in that batch is refused (Note [Request ids]).
TEST_F(CoordinatorTest, RequestIdIsIdempotentWithinOneBatch) {
  Answers answers;
  store_->SetGate(false);
  coordinator_->SubmitAsync(Request("hold"), answers.For("hold"));
  store_->WaitArrived(1);  // the writer holds "hold" alone at the gate
  coordinator_->SubmitAsync(Request("one", "same"), answers.For("first"));
  coordinator_->SubmitAsync(Request("one", "same"), answers.For("again"));
  coordinator_->SubmitAsync(Request("two", "same"), answers.For("other"));
  store_->SetGate(true);
  answers.WaitFor(4);
  ASSERT_TRUE(answers.by_name.at("first").ok()) << answers.by_name.at("first").status();
  ASSERT_TRUE(answers.by_name.at("again").ok()) << answers.by_name.at("again").status();
  EXPECT_EQ(answers.by_name.at("first")->id(), answers.by_name.at("again")->id());
  EXPECT_EQ(answers.by_name.at("other").status().code(), absl::StatusCode::kAlreadyExists);
  int same = 0;
  for (const JobRecord& r : Reopened()) same += r.job.request_id() == "same";
  EXPECT_EQ(same, 1);
}

// A failing insert fails its own caller with the store's error; the other
// jobs of its batch and everything stored before are kept. A batch that
// fails as a whole fails only its own callers.
TEST_F(CoordinatorTest, FailingWritesFailOnlyTheirCallers) {
  absl::StatusOr<Job> before = coordinator_->Submit(Request("before"));
  ASSERT_TRUE(before.ok()) << before.status();

  Answers answers;
  store_->SetGate(false);
  coordinator_->SubmitAsync(Request("ok1"), answers.For("ok1"));
  store_->WaitArrived(2);  // so that the other four share the next batch
  for (const char* n : {"bad1", "ok2", "bad2", "ok3"}) {
    coordinator_->SubmitAsync(Request(n), answers.For(n));
  }
  store_->SetGate(true);
  answers.WaitFor(5);
  for (const char* n : {"ok1", "ok2", "ok3"}) {
    EXPECT_TRUE(answers.by_name.at(n).ok()) << n << ": " << answers.by_name.at(n).status();
  }
  for (const char* n : {"bad1", "bad2"}) {
    EXPECT_EQ(answers.by_name.at(n).status().code(), absl::StatusCode::kInternal) << n;
    EXPECT_EQ(answers.by_name.at(n).status().message(), "injected: insert failed");
  }

  store_->FailBatches(1);
  absl::StatusOr<Job> lost = coordinator_->Submit(Request("lost"));
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(lost.status().message(), "injected: the store is unavailable");
  absl::StatusOr<Job> after = coordinator_->Submit(Request("after"));
  ASSERT_TRUE(after.ok()) << after.status();

  std::set<std::string> names;
  for (const JobRecord& r : Reopened()) names.insert(r.job.spec().name());
  EXPECT_EQ(names, (std::set<std::string>{"before", "ok1", "ok2", "ok3", "after"}));
  // The coordinator's own view agrees: the failed ones were never queued.
  auto listed = coordinator_->List(distill::v1::QUEUED, 0, 100, nullptr);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->size(), 5u);
  EXPECT_EQ(coordinator_->Get(before->id())->queue_position(), 1);
  EXPECT_EQ(coordinator_->Get(after->id())->queue_position(), 5);
}

// ListSerialized() (what ListJobs sends) is List() without the parse: the same
// jobs in the same order, and each parsed job with its queue position set is
// the job List() returns, also for negative priorities, a stale position in
// the stored bytes, a state filter and a cursor.
TEST_F(CoordinatorTest, ListSerializedMatchesList) {
  const std::vector<int> priorities = {0, 2, -1, 2, 0, -300, 7, 0};
  std::vector<std::string> ids;
  for (size_t i = 0; i < priorities.size(); ++i) {
    distill::v1::SubmitJobRequest r = Request("p" + std::to_string(i));
    r.set_priority(priorities[i]);
    absl::StatusOr<Job> job = coordinator_->Submit(r);
    ASSERT_TRUE(job.ok()) << job.status();
    ids.push_back(job->id());
  }
  // Positions have moved since most jobs were stored; cancel one so that the
  // listing also holds a job that is not queued.
  ASSERT_TRUE(coordinator_->Cancel(ids[1], false).ok());
  for (distill::v1::JobState state : {distill::v1::JOB_STATE_UNSPECIFIED, distill::v1::QUEUED}) {
    for (int64_t before : {int64_t{0}, int64_t{6}}) {
      std::vector<int64_t> seqs;
      auto want = coordinator_->List(state, before, 100, &seqs);
      auto got = coordinator_->ListSerialized(state, before, 100, 0, nullptr);
      ASSERT_TRUE(want.ok()) << want.status();
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_EQ(got->size(), want->size());
      for (size_t i = 0; i < got->size(); ++i) {
        Job parsed;
        ASSERT_TRUE(parsed.ParseFromString((*got)[i].stored.job));
        parsed.set_queue_position((*got)[i].queue_position);
        EXPECT_EQ((*got)[i].stored.seq, seqs[i]);
        EXPECT_EQ((*got)[i].stored.state, (*want)[i].state());
        EXPECT_EQ(parsed.SerializeAsString(), (*want)[i].SerializeAsString())
            << parsed.DebugString() << " vs " << (*want)[i].DebugString();
      }
    }
  }
  // The order itself: priority 7 first, then 2 (p3; p1 was cancelled), then
  // the 0s in submission order, -1, -300.
  auto queued = coordinator_->ListSerialized(distill::v1::QUEUED, 0, 100, 0, nullptr);
  ASSERT_TRUE(queued.ok());
  std::map<std::string, int> position;
  for (const Coordinator::ListedJob& j : *queued) {
    Job parsed;
    ASSERT_TRUE(parsed.ParseFromString(j.stored.job));
    position[parsed.spec().name()] = j.queue_position;
  }
  EXPECT_EQ(position,
            (std::map<std::string, int>{
                {"p6", 1}, {"p3", 2}, {"p0", 3}, {"p4", 4}, {"p7", 5}, {"p2", 6}, {"p5", 7}}));
}

// Requests refused before any write are answered at once, on the caller's thread.
TEST_F(CoordinatorTest, RefusedRequestsAreAnsweredWithoutAWrite) {
  distill::v1::SubmitJobRequest too_big = Request("big");
  too_big.mutable_spec()->set_ranks(3);  // the inventory has 2 slots
  EXPECT_EQ(coordinator_->Submit(too_big).status().code(), absl::StatusCode::kFailedPrecondition);
  distill::v1::SubmitJobRequest negative = Request("neg");
  negative.set_max_retries(-1);
  EXPECT_EQ(coordinator_->Submit(negative).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->batches(), 0);
}

}  // namespace
}  // namespace distill::coordinator

namespace distill::coordinator {
namespace {

// Note [Write before act]: an attempt ends (the real mpirun, a worker that
// exits 3) while every state write fails. The coordinator must keep the job
// as it was (STARTING, in memory and in the file, its slot held, its launch
// pid known) and end it properly once the store works again: FAILED with
// the worker's own exit code, the slot freed.
TEST_F(CoordinatorTest, FailedStateWriteKeepsTheJobAndItsSlot) {
  const std::string worker = dir_ + "/worker.sh";
  std::ofstream(worker) << "#!/bin/sh\nexit 3\n";
  ASSERT_EQ(chmod(worker.c_str(), 0755), 0);
  MpirunLauncher launcher({"mpirun", worker, {}});
  CoordinatorOptions o;
  o.state_dir = dir_ + "/var2";
  Coordinator c(o, store_.get(), scheduler_.get(), &launcher, &metrics_);
  distill::v1::SubmitJobRequest r = Request("exits3");
  r.set_max_retries(0);
  absl::StatusOr<Job> job = c.Submit(r);
  ASSERT_TRUE(job.ok()) << job.status();
  const std::string id = job->id();

  c.Tick();  // launches attempt 1
  ASSERT_EQ(c.Get(id)->state(), distill::v1::STARTING);
  ASSERT_EQ(scheduler_->free_slots(), 1);
  store_->FailUpdates(true);
  // The launch exits on its own; the tick that sees it tries to record it.
  for (int i = 0; i < 600 && store_->failed_updates() == 0; ++i) {
    c.Tick();
    if (store_->failed_updates() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_GT(store_->failed_updates(), 0) << "the attempt never ended";
  c.Tick();  // the next tick fails to write again: still nothing changes
  absl::StatusOr<Job> kept = c.Get(id);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->state(), distill::v1::STARTING);
  EXPECT_EQ(kept->exit_code(), 0);
  EXPECT_EQ(scheduler_->free_slots(), 1) << "the slot was freed before the write";
  EXPECT_EQ(real_->GetJob(id)->job.state(), distill::v1::STARTING);

  store_->FailUpdates(false);
  c.Tick();
  absl::StatusOr<Job> ended = c.Get(id);
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(ended->state(), distill::v1::FAILED);
  EXPECT_EQ(ended->failure_reason(), distill::v1::RANK_FAILED) << ended->failure_message();
  EXPECT_EQ(ended->exit_code(), 3);
  EXPECT_EQ(scheduler_->free_slots(), 2);
  EXPECT_EQ(real_->GetJob(id)->job.state(), distill::v1::FAILED);
}

// Note [Lost hosts]: an attempt that lost host b fails HOST_LOST naming b and
// its ranks by role; the retry runs on a and c; b gets jobs again after
// host_down_for.
TEST_F(CoordinatorTest, ALostHostFailsTheAttemptAndTheRetryRunsElsewhere) {
  LaunchStatus lost;
  lost.state = LaunchStatus::kExited;
  lost.exit_code = 205;
  lost.detail = "mpirun exit code 205";
  lost.failed_host = "b";
  lost.failed_ranks = {2, 3};
  lost.host_lost = true;
  lost.failed_how = "lost contact with its daemon";
  LaunchStatus done;
  done.state = LaunchStatus::kExited;
  done.detail = "mpirun exit code 0";
  ScriptedLauncher launcher({lost, done});
  Scheduler scheduler({{"a", 2, 0}, {"b", 2, 0}, {"c", 2, 0}});
  FakeClock clock;
  CoordinatorOptions o;
  o.state_dir = dir_ + "/var3";
  o.health.host_down_for = absl::Minutes(5);
  Coordinator c(o, store_.get(), &scheduler, &launcher, &metrics_, &clock);
  distill::v1::SubmitJobRequest r = Request("spans");
  r.mutable_spec()->set_type(distill::v1::DISTILL);
  r.mutable_spec()->mutable_student()->set_ranks(2);
  r.mutable_spec()->mutable_teacher()->set_ranks(2);
  absl::StatusOr<Job> job = c.Submit(r);
  ASSERT_TRUE(job.ok()) << job.status();

  c.Tick();  // attempt 1 on a and b
  ASSERT_EQ(launcher.launched.size(), 1u);
  ASSERT_EQ(launcher.launched[0].size(), 2u);
  EXPECT_EQ(launcher.launched[0][1].host, "b");
  c.Tick();  // it lost b
  EXPECT_EQ(c.Get(job->id())->state(), distill::v1::QUEUED);
  auto events = real_->ListEvents(job->id(), 0, 100);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_FALSE(events->empty());
  EXPECT_NE(events->back().message().find(
                "attempt 1 failed: HOST_LOST: host b (rank 2 (teacher stage 0), rank 3 (teacher "
                "stage 1)) lost contact with its daemon (mpirun exit code 205)"),
            std::string::npos)
      << events->back().message();
  EXPECT_TRUE(scheduler.IsHostDown("b"));

  clock.Advance(absl::Seconds(3));  // past the retry backoff
  c.Tick();
  ASSERT_EQ(launcher.launched.size(), 2u);
  ASSERT_EQ(launcher.launched[1].size(), 2u);
  EXPECT_EQ(launcher.launched[1][0].host, "a");
  EXPECT_EQ(launcher.launched[1][1].host, "c");
  c.Tick();
  EXPECT_EQ(c.Get(job->id())->state(), distill::v1::SUCCEEDED);

  clock.Advance(absl::Minutes(5));
  c.Tick();
  EXPECT_FALSE(scheduler.IsHostDown("b"));
}

// Note [Failure classes]: a rank that exits 65 (bad input) fails the job at
// once, DETERMINISTIC, with the rank's own error line, though retries are
// left; a plain crash is retried.
TEST_F(CoordinatorTest, ADeterministicFailureIsNotRetriedAndCarriesTheRanksLine) {
  LaunchStatus bad;
  bad.state = LaunchStatus::kExited;
  bad.exit_code = 65;
  bad.detail = "mpirun exit code 65";
  bad.failed_host = "localhost";
  bad.failed_ranks = {0};
  bad.failed_how = "exit code 65";
  bad.failed_exit_code = 65;
  ScriptedLauncher launcher({bad});
  FakeClock clock;
  CoordinatorOptions o;
  o.state_dir = dir_ + "/var4";
  Coordinator c(o, store_.get(), scheduler_.get(), &launcher, &metrics_, &clock);
  distill::v1::SubmitJobRequest r = Request("input");
  r.set_max_retries(3);
  absl::StatusOr<Job> job = c.Submit(r);
  ASSERT_TRUE(job.ok()) << job.status();
  c.Tick();  // launches attempt 1
  const std::string log = launcher.RankLogPath(c.WorkDir(job->id(), 1), 0);
  std::ofstream(log)
      << "distill-worker train: error: /d/x.bin: cannot open: No such file or directory\n";
  c.Tick();
  absl::StatusOr<Job> failed = c.Get(job->id());
  ASSERT_TRUE(failed.ok()) << failed.status();
  EXPECT_EQ(failed->state(), distill::v1::FAILED);
  EXPECT_EQ(failed->failure_reason(), distill::v1::DETERMINISTIC);
  EXPECT_EQ(failed->attempt(), 1);
  EXPECT_NE(failed->failure_message().find(
                "rank 0 (student 0) on host localhost: exit code 65 (mpirun exit code 65); "
                "distill-worker train: error: /d/x.bin: cannot open: No such file or directory; "
                "not retried: the worker's exit code 65"),
            std::string::npos)
      << failed->failure_message();
}

// Note [Failure classes]: the same crash at the same step twice is a replay
// (the retry resumed from a checkpoint before it): the second is not retried.
TEST_F(CoordinatorTest, TheSameCrashAtTheSameStepTwiceIsNotRetriedAThirdTime) {
  LaunchStatus crash;
  crash.state = LaunchStatus::kExited;
  crash.exit_code = 139;
  crash.detail = "mpirun exit code 139";
  crash.failed_host = "localhost";
  crash.failed_ranks = {0};
  crash.failed_how = "exited on signal 11 (Segmentation fault)";
  ScriptedLauncher launcher({crash, crash});
  FakeClock clock;
  CoordinatorOptions o;
  o.state_dir = dir_ + "/var5";
  Coordinator c(o, store_.get(), scheduler_.get(), &launcher, &metrics_, &clock);
  distill::v1::SubmitJobRequest r = Request("crash");
  r.set_max_retries(5);
  absl::StatusOr<Job> job = c.Submit(r);
  ASSERT_TRUE(job.ok()) << job.status();
  for (int attempt = 1; attempt <= 2; ++attempt) {
    c.Tick();  // launches
    distill::v1::ProgressReport report;
    report.set_job_id(job->id());
    report.set_attempt(attempt);
    report.set_step(7);
    ASSERT_TRUE(c.Report(report).ok());
    c.Tick();  // it ended
    clock.Advance(absl::Minutes(1));
  }
  absl::StatusOr<Job> failed = c.Get(job->id());
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed->state(), distill::v1::FAILED) << failed->failure_message();
  EXPECT_EQ(failed->failure_reason(), distill::v1::DETERMINISTIC);
  EXPECT_EQ(failed->attempt(), 2);
  EXPECT_NE(failed->failure_message().find("at step 7 in the attempt before"), std::string::npos)
      << failed->failure_message();
}

// A launch that runs until it is terminated, then has exited 137.
class KillableLauncher : public ScriptedLauncher {
 public:
  KillableLauncher() : ScriptedLauncher({}) {}
  absl::StatusOr<int64_t> Launch(const LaunchSpec& spec) override {
    killed_.push_back(false);
    return ScriptedLauncher::Launch(spec);
  }
  LaunchStatus Poll(int64_t pid, const std::string&) override {
    LaunchStatus s;
    if (killed_.at(pid - 1)) {
      s.state = LaunchStatus::kExited;
      s.exit_code = 137;
      s.detail = "mpirun exit code 137";
    }
    return s;
  }
  void Terminate(int64_t pid, const std::string&, bool) override { killed_.at(pid - 1) = true; }

 private:
  std::vector<bool> killed_;
};

// Note [Liveness by progress]: the rank keeps reporting but its step stays
// at 4: the attempt is killed, PROGRESS_TIMEOUT naming the rank and its
// step, and retried.
TEST_F(CoordinatorTest, AStuckStepFailsTheAttemptWithProgressTimeout) {
  KillableLauncher launcher;
  FakeClock clock;
  CoordinatorOptions o;
  o.state_dir = dir_ + "/var6";
  o.health.progress_timeout = absl::Seconds(30);
  o.health.heartbeat_timeout = absl::Seconds(60);
  Coordinator c(o, store_.get(), scheduler_.get(), &launcher, &metrics_, &clock);
  absl::StatusOr<Job> job = c.Submit(Request("stuck"));
  ASSERT_TRUE(job.ok()) << job.status();
  c.Tick();
  distill::v1::ProgressReport report;
  report.set_job_id(job->id());
  report.set_attempt(1);
  report.set_step(4);
  for (int i = 0; i <= 30; ++i) {
    ASSERT_TRUE(c.Report(report).ok());
    c.Tick();
    ASSERT_EQ(c.Get(job->id())->state(), distill::v1::RUNNING) << i;
    clock.Advance(absl::Seconds(1));
  }
  ASSERT_TRUE(c.Report(report).ok());
  c.Tick();  // 31 s at step 4: killed
  c.Tick();  // the launch has ended
  absl::StatusOr<Job> retried = c.Get(job->id());
  ASSERT_TRUE(retried.ok());
  EXPECT_EQ(retried->state(), distill::v1::QUEUED);
  auto events = real_->ListEvents(job->id(), 0, 100);
  ASSERT_TRUE(events.ok());
  ASSERT_FALSE(events->empty());
  EXPECT_NE(events->back().message().find("attempt 1 failed: PROGRESS_TIMEOUT: rank 0 (student 0) "
                                          "still at step 4 after 31s (progress timeout 30s)"),
            std::string::npos)
      << events->back().message();
}

// A STARTING attempt that no rank reports from is killed: START_TIMEOUT.
TEST_F(CoordinatorTest, AnAttemptThatNeverReportsFailsWithStartTimeout) {
  KillableLauncher launcher;
  FakeClock clock;
  CoordinatorOptions o;
  o.state_dir = dir_ + "/var8";
  o.health.start_timeout = absl::Minutes(2);
  Coordinator c(o, store_.get(), scheduler_.get(), &launcher, &metrics_, &clock);
  distill::v1::SubmitJobRequest r = Request("silent");
  r.set_max_retries(0);
  absl::StatusOr<Job> job = c.Submit(r);
  ASSERT_TRUE(job.ok()) << job.status();
  c.Tick();
  clock.Advance(absl::Minutes(2));
  c.Tick();
  EXPECT_EQ(c.Get(job->id())->state(), distill::v1::STARTING);
  clock.Advance(absl::Seconds(1));
  c.Tick();  // killed
  c.Tick();  // ended
  absl::StatusOr<Job> failed = c.Get(job->id());
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed->state(), distill::v1::FAILED);
  EXPECT_EQ(failed->failure_reason(), distill::v1::START_TIMEOUT) << failed->failure_message();
}

// Note [One writer per output]: a second job of the same output waits while
// the first runs; a job of another output starts beside it.
TEST_F(CoordinatorTest, AJobWaitsWhileAnotherWritesItsOutput) {
  LaunchStatus running;
  ScriptedLauncher launcher({running, running, running});
  FakeClock clock;
  CoordinatorOptions o;
  o.state_dir = dir_ + "/var7";
  Scheduler scheduler(LocalInventory(4));
  Coordinator c(o, store_.get(), &scheduler, &launcher, &metrics_, &clock);
  absl::StatusOr<Job> first = c.Submit(Request("same"));
  absl::StatusOr<Job> second = c.Submit(Request("same"));
  absl::StatusOr<Job> other = c.Submit(Request("other"));
  ASSERT_TRUE(first.ok() && second.ok() && other.ok());
  c.Tick();
  EXPECT_EQ(c.Get(first->id())->state(), distill::v1::STARTING);
  EXPECT_EQ(c.Get(second->id())->state(), distill::v1::QUEUED);
  EXPECT_EQ(c.Get(other->id())->state(), distill::v1::STARTING);
  EXPECT_EQ(launcher.launched.size(), 2u);
  EXPECT_EQ(scheduler.free_slots(), 2) << "the waiting job reserves nothing";
}

// Note [Request ids]: the same request id with the same spec is the first
// job; with another spec, ALREADY_EXISTS naming it.
TEST_F(CoordinatorTest, ARequestIdReusedWithAnotherSpecIsRefused) {
  absl::StatusOr<Job> first = coordinator_->Submit(Request("a", "req-1"));
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<Job> again = coordinator_->Submit(Request("a", "req-1"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->id(), first->id());
  absl::StatusOr<Job> other = coordinator_->Submit(Request("b", "req-1"));
  EXPECT_EQ(other.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(other.status().message().find("request_id 'req-1' was used for job " + first->id() +
                                          " with another spec"),
            std::string::npos)
      << other.status();
  auto all = real_->ListJobs(distill::v1::JOB_STATE_UNSPECIFIED, 0, 100);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 1u);
}

// DeleteJob: a finished job goes with its events and work directory, never
// its output; an unfinished or unknown one is refused and nothing changes.
TEST_F(CoordinatorTest, DeleteRemovesAFinishedJobWithItsWorkDirectoryButNotItsOutput) {
  absl::StatusOr<Job> done = coordinator_->Submit(Request("done"));
  absl::StatusOr<Job> queued = coordinator_->Submit(Request("queued"));
  ASSERT_TRUE(done.ok() && queued.ok());
  ASSERT_TRUE(coordinator_->Cancel(done->id(), false).ok());  // queued: CANCELLED at once
  const std::string work = dir_ + "/var/jobs/" + done->id() + "/attempt-1";
  const std::string output = dir_ + "/out/done";
  std::filesystem::create_directories(work);
  std::filesystem::create_directories(output);
  std::ofstream(work + "/mpirun.log") << "log";
  std::ofstream(output + "/model.safetensors") << "weights";

  EXPECT_EQ(coordinator_->Delete(queued->id()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(coordinator_->Delete("j-unknown").status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<Job> deleted = coordinator_->Delete(done->id());
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->state(), distill::v1::CANCELLED);
  EXPECT_EQ(deleted->spec().name(), "done");
  EXPECT_EQ(coordinator_->Get(done->id()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(real_->ListEvents(done->id(), 0, 10)->empty());
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/var/jobs/" + done->id()));
  EXPECT_TRUE(std::filesystem::exists(output + "/model.safetensors"));
  EXPECT_EQ(coordinator_->Delete(done->id()).status().code(), absl::StatusCode::kNotFound);
  std::vector<JobRecord> left = Reopened();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].job.id(), queued->id());
}

// Note [Retention]: a pass deletes what ended before now - retention, up to
// its limit; zero retention keeps everything.
TEST_F(CoordinatorTest, DeleteExpiredDeletesJobsFinishedLongerAgoThanTheRetention) {
  std::vector<std::string> ids;
  for (const char* name : {"a", "b", "c"}) {
    absl::StatusOr<Job> job = coordinator_->Submit(Request(name));
    ASSERT_TRUE(job.ok());
    ids.push_back(job->id());
  }
  ASSERT_TRUE(coordinator_->Cancel(ids[0], false).ok());
  ASSERT_TRUE(coordinator_->Cancel(ids[1], false).ok());
  const absl::Time now = absl::Now();
  EXPECT_EQ(coordinator_->DeleteExpired(now, 100), 0);  // the default keeps 30 days
  EXPECT_EQ(coordinator_->DeleteExpired(now + absl::Hours(24 * 31), 1), 1);
  EXPECT_EQ(coordinator_->DeleteExpired(now + absl::Hours(24 * 31), 100), 1);
  EXPECT_EQ(Reopened().size(), 1u);  // the queued job stays
  EXPECT_TRUE(coordinator_->Get(ids[2]).ok());

  CoordinatorOptions forever;
  forever.state_dir = dir_ + "/var";
  forever.retention = absl::ZeroDuration();
  Coordinator keeper(forever, store_.get(), scheduler_.get(), &launcher_, &metrics_);
  EXPECT_EQ(keeper.DeleteExpired(now + absl::Hours(24 * 365), 100), 0);
}

// Note [Retention]: a work directory whose job is not stored (a crash after
// a deletion's commit) is removed by the first pass after a start.
TEST_F(CoordinatorTest, AStartRemovesWorkDirectoriesOfDeletedJobs) {
  absl::StatusOr<Job> kept = coordinator_->Submit(Request("kept"));
  ASSERT_TRUE(kept.ok());
  ASSERT_TRUE(coordinator_->Cancel(kept->id(), false).ok());
  const std::string jobs = dir_ + "/var/jobs/";
  std::filesystem::create_directories(jobs + kept->id() + "/attempt-1");
  std::filesystem::create_directories(jobs + "j000000000bad/attempt-1");
  ASSERT_TRUE(coordinator_->Start().ok());
  for (int i = 0; i < 600 && std::filesystem::exists(jobs + "j000000000bad"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  coordinator_->Stop();
  EXPECT_FALSE(std::filesystem::exists(jobs + "j000000000bad"));
  EXPECT_TRUE(std::filesystem::exists(jobs + kept->id() + "/attempt-1"));
}

}  // namespace
}  // namespace distill::coordinator
