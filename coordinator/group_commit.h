// GroupCommitter: group commit of job submissions. Add() queues one job and
// returns at once; a writer thread of its own takes everything queued (at most
// max_batch jobs), hands the batch to `commit`, which writes it in one store
// transaction, and then calls each job's `done` with that job's own result,
// in Add() order. No waiting for a batch to fill: a batch is whatever queued
// while the previous one committed, so one lone submission commits at once
// and a crowd shares the cost of a transaction.
//
// Threads: Add() is thread-safe and never blocks on the store. `commit` and
// every `done` run on the writer thread; `done` should be quick (it delays
// the next batch) and may call Add(). The destructor commits what is still
// queued, then joins the thread.
#ifndef DISTILL_COORDINATOR_GROUP_COMMIT_H_
#define DISTILL_COORDINATOR_GROUP_COMMIT_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/job_store.h"
#include "distill/v1/coordinator.pb.h"

namespace distill::coordinator {

class GroupCommitter {
 public:
  using Result = absl::StatusOr<distill::v1::Job>;
  // Writes the batch (jobs may be completed in place, e.g. their ids) and
  // returns one result per job, in order.
  using CommitFn = std::function<std::vector<Result>(std::vector<NewJob>& batch)>;
  using DoneFn = std::function<void(Result)>;

  // Large enough to take all the submissions of a few hundred clients in one
  // transaction; a bound keeps one commit (and what waits for it) short.
  static constexpr int kDefaultMaxBatch = 128;

  explicit GroupCommitter(CommitFn commit, int max_batch = kDefaultMaxBatch);
  ~GroupCommitter();
  GroupCommitter(const GroupCommitter&) = delete;
  GroupCommitter& operator=(const GroupCommitter&) = delete;

  // Queues `job`; `done` gets its result once the batch that holds it is
  // committed (or has failed).
  void Add(NewJob job, DoneFn done) ABSL_LOCKS_EXCLUDED(mu_);

  // Batches committed so far (for tests).
  int64_t batches() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Pending {
    NewJob job;
    DoneFn done;
  };
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);

  const CommitFn commit_;
  const int max_batch_;
  absl::Mutex mu_;
  absl::CondVar cv_;                                 // pending_ grew, or stop_
  std::deque<Pending> pending_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int64_t batches_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread writer_;
};

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_GROUP_COMMIT_H_
