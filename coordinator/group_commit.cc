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
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  writer_.join();
}

void GroupCommitter::Add(NewJob job, DoneFn done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.push_back({std::move(job), std::move(done)});
  }
  cv_.notify_one();
}

int64_t GroupCommitter::batches() {
  std::lock_guard<std::mutex> lock(mu_);
  return batches_;
}

void GroupCommitter::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stop_ || !pending_.empty(); });
    if (pending_.empty()) return;  // stopping, and everything is committed
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
    lock.unlock();
    std::vector<Result> results = commit_(jobs);
    lock.lock();
    ++batches_;
    lock.unlock();
    for (size_t i = 0; i < dones.size(); ++i) {
      dones[i](i < results.size()
                   ? std::move(results[i])
                   : Result(absl::InternalError(absl::StrCat("group commit: no result for job ", i,
                                                             " of a batch of ", n))));
    }
    lock.lock();
  }
}

}  // namespace distill::coordinator
