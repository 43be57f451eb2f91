#include "coordinator/group_commit.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace distill::coordinator {

GroupCommitter::GroupCommitter(CommitFn commit, int max_batch)
    : commit_(std::move(commit)), max_batch_(max_batch < 1 ? 1 : max_batch) {
  writer_ = std::thread([this] { Loop(); });
}

GroupCommitter::~GroupCommitter() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  writer_.join();
}

void GroupCommitter::Add(NewJob job, DoneFn done) {
  {
    absl::MutexLock lock(&mu_);
    pending_.push_back({std::move(job), std::move(done)});
  }
  cv_.Signal();
}

int64_t GroupCommitter::batches() {
  absl::MutexLock lock(&mu_);
  return batches_;
}

void GroupCommitter::Loop() {
  mu_.Lock();
  while (true) {
    while (!stop_ && pending_.empty()) cv_.Wait(&mu_);
    if (pending_.empty()) break;  // stopping, and everything is committed
    std::vector<NewJob> jobs;
    std::vector<DoneFn> dones;
    const size_t n = std::min(pending_.size(), static_cast<size_t>(max_batch_));
    jobs.reserve(n);
    dones.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      jobs.push_back(std::move(pending_.front().job));
      dones.push_back(std::move(pending_.front().done));
      pending_.pop_front();
    }
    mu_.Unlock();
    std::vector<Result> results = commit_(jobs);
    mu_.Lock();
    ++batches_;
    mu_.Unlock();
    for (size_t i = 0; i < dones.size(); ++i) {
      dones[i](i < results.size()
                   ? std::move(results[i])
                   : Result(absl::InternalError(absl::StrCat("group commit: no result for job ", i,
                                                             " of a batch of ", n))));
    }
    mu_.Lock();
  }
  mu_.Unlock();
}

}  // namespace distill::coordinator
