// QueueIndex: the queued jobs in Scheduler::Order (priority descending, then
// seq ascending) with cheap queue positions, so that answering an RPC never
// sorts the queue. One sorted vector of seqs per priority: submissions come
// in seq order (an append), starts take a head, and a position costs
// O(priorities + log n). Not thread-safe (the Coordinator guards it).
#ifndef DISTILL_COORDINATOR_QUEUE_INDEX_H_
#define DISTILL_COORDINATOR_QUEUE_INDEX_H_

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <vector>

namespace distill::coordinator {

class QueueIndex {
 public:
  // Adds a job; a no-op when it is already there.
  void Insert(int priority, int64_t seq) {
    std::vector<int64_t>& seqs = by_priority_[priority];
    auto it = std::lower_bound(seqs.begin(), seqs.end(), seq);
    if (it == seqs.end() || *it != seq) seqs.insert(it, seq);
  }
  // Removes a job; a no-op when it is not there.
  void Erase(int priority, int64_t seq) {
    auto bucket = by_priority_.find(priority);
    if (bucket == by_priority_.end()) return;
    std::vector<int64_t>& seqs = bucket->second;
    auto it = std::lower_bound(seqs.begin(), seqs.end(), seq);
    if (it != seqs.end() && *it == seq) seqs.erase(it);
    if (seqs.empty()) by_priority_.erase(bucket);
  }
  // 1-based place of (priority, seq) in the order: 1 + the jobs ahead of
  // it, whether or not it is in the index itself.
  int Position(int priority, int64_t seq) const {
    int64_t ahead = 0;
    for (const auto& [p, seqs] : by_priority_) {
      if (p < priority) break;
      if (p > priority) {
        ahead += static_cast<int64_t>(seqs.size());
      } else {
        ahead += std::lower_bound(seqs.begin(), seqs.end(), seq) - seqs.begin();
      }
    }
    return static_cast<int>(ahead) + 1;
  }
  size_t size() const {
    size_t n = 0;
    for (const auto& [p, seqs] : by_priority_) n += seqs.size();
    return n;
  }

 private:
  std::map<int, std::vector<int64_t>, std::greater<int>> by_priority_;
};

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_QUEUE_INDEX_H_
