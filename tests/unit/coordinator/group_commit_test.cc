// GroupCommitter with a fake commit function: every job gets exactly its own
// result, in order; concurrent submissions share batches; a failing batch
// fails only its own jobs; the destructor commits what is still queued.
#include "coordinator/group_commit.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace distill::coordinator {
namespace {

using Result = GroupCommitter::Result;

NewJob Named(const std::string& name) {
  NewJob j;
  j.record.job.mutable_spec()->set_name(name);
  return j;
}

// Records what each batch held; "fail*" jobs fail alone; a batch with a
// "batch_fails*" job fails whole.
class FakeCommit {
 public:
  std::vector<Result> operator()(std::vector<NewJob>& batch) {
    std::lock_guard<std::mutex> lock(mu_);
    batch_sizes_.push_back(static_cast<int>(batch.size()));
    std::vector<Result> out;
    bool whole = false;
    for (const NewJob& j : batch) whole |= j.record.job.spec().name().rfind("batch_fails", 0) == 0;
    for (NewJob& j : batch) {
      const std::string& name = j.record.job.spec().name();
      if (whole) {
        out.push_back(absl::UnavailableError("store unavailable"));
      } else if (name.rfind("fail", 0) == 0) {
        out.push_back(absl::AlreadyExistsError("duplicate " + name));
      } else {
        distill::v1::Job job = j.record.job;
        job.set_id("id-" + name);
        committed_.insert(name);
        out.push_back(job);
      }
    }
    return out;
  }
  std::vector<int> batch_sizes() {
    std::lock_guard<std::mutex> lock(mu_);
    return batch_sizes_;
  }
  std::set<std::string> committed() {
    std::lock_guard<std::mutex> lock(mu_);
    return committed_;
  }

 private:
  std::mutex mu_;
  std::vector<int> batch_sizes_;
  std::set<std::string> committed_;
};

TEST(GroupCommitterTest, EachJobGetsItsOwnResult) {
  FakeCommit fake;
  GroupCommitter gc([&](std::vector<NewJob>& b) { return fake(b); });
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Result> got(3, absl::UnknownError("none"));
  int done = 0;
  const std::vector<std::string> names = {"a", "fail_b", "c"};
  for (int i = 0; i < 3; ++i) {
    gc.Add(Named(names[i]), [&, i](Result r) {
      std::lock_guard<std::mutex> lock(mu);
      got[i] = std::move(r);
      ++done;
      cv.notify_all();
    });
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done == 3; });
  ASSERT_TRUE(got[0].ok()) << got[0].status();
  EXPECT_EQ(got[0]->id(), "id-a");
  EXPECT_EQ(got[1].status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(got[1].status().message(), "duplicate fail_b");
  ASSERT_TRUE(got[2].ok()) << got[2].status();
  EXPECT_EQ(got[2]->id(), "id-c");
}

// Many threads submitting at once: every job is answered once, with its own
// job, and the writer groups them (fewer batches than jobs).
TEST(GroupCommitterTest, ConcurrentSubmissionsShareBatches) {
  FakeCommit fake;
  std::atomic<int> in_commit{0};
  GroupCommitter gc(
      [&](std::vector<NewJob>& b) {
        EXPECT_EQ(in_commit.fetch_add(1), 0);  // one batch at a time
        // A slow commit, so that submissions pile up behind it.
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        auto r = fake(b);
        in_commit.fetch_sub(1);
        return r;
      },
      /*max_batch=*/16);
  constexpr int kThreads = 8, kPerThread = 25;
  std::atomic<int> answered{0}, mismatched{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string name = "t" + std::to_string(t) + "-" + std::to_string(i);
        gc.Add(Named(name), [&, name](Result r) {
          if (!r.ok() || r->id() != "id-" + name) mismatched.fetch_add(1);
          answered.fetch_add(1);
        });
      }
    });
  }
  for (auto& t : threads) t.join();
  while (answered.load() < kThreads * kPerThread) std::this_thread::yield();
  EXPECT_EQ(mismatched.load(), 0);
  EXPECT_EQ(fake.committed().size(), static_cast<size_t>(kThreads * kPerThread));
  const std::vector<int> sizes = fake.batch_sizes();
  int total = 0;
  for (int s : sizes) {
    EXPECT_LE(s, 16);
    total += s;
  }
  EXPECT_EQ(total, kThreads * kPerThread);
  EXPECT_LT(sizes.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(gc.batches(), static_cast<int64_t>(sizes.size()));
}

// A batch that fails as a whole answers each of its jobs with the error; the
// next batch commits as usual.
TEST(GroupCommitterTest, FailedBatchFailsOnlyItsJobs) {
  FakeCommit fake;
  std::mutex release_mu;
  std::condition_variable release_cv;
  bool entered = false, released = false;
  GroupCommitter gc([&](std::vector<NewJob>& b) {
    if (b[0].record.job.spec().name() == "first") {
      // Hold the writer so that the next three land in one batch.
      std::unique_lock<std::mutex> lock(release_mu);
      entered = true;
      release_cv.notify_all();
      release_cv.wait(lock, [&] { return released; });
    }
    return fake(b);
  });
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, Result> got;
  auto record = [&](const std::string& name) {
    return [&, name](Result r) {
      std::lock_guard<std::mutex> lock(mu);
      got.emplace(name, std::move(r));
      cv.notify_all();
    };
  };
  gc.Add(Named("first"), record("first"));
  {
    std::unique_lock<std::mutex> lock(release_mu);
    release_cv.wait(lock, [&] { return entered; });
  }
  for (const char* n : {"x", "batch_fails", "y"}) gc.Add(Named(n), record(n));
  {
    std::lock_guard<std::mutex> lock(release_mu);
    released = true;
  }
  release_cv.notify_all();
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return got.size() == 4; });
  }
  gc.Add(Named("after"), record("after"));
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return got.size() == 5; });
  EXPECT_TRUE(got.at("first").ok());
  for (const char* n : {"x", "batch_fails", "y"}) {
    EXPECT_EQ(got.at(n).status().code(), absl::StatusCode::kUnavailable) << n;
  }
  EXPECT_TRUE(got.at("after").ok());
  EXPECT_EQ(fake.committed(), (std::set<std::string>{"first", "after"}));
}

TEST(GroupCommitterTest, DestructorCommitsWhatIsQueued) {
  FakeCommit fake;
  std::atomic<int> answered{0};
  {
    GroupCommitter gc([&](std::vector<NewJob>& b) { return fake(b); }, /*max_batch=*/3);
    for (int i = 0; i < 10; ++i) {
      gc.Add(Named("j" + std::to_string(i)), [&](Result r) {
        EXPECT_TRUE(r.ok());
        answered.fetch_add(1);
      });
    }
  }
  EXPECT_EQ(answered.load(), 10);
  EXPECT_EQ(fake.committed().size(), 10u);
}

}  // namespace
}  // namespace distill::coordinator
