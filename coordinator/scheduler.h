// Scheduler: which queued jobs start now, and on which slots. Pure logic over
// an inventory of hosts; no I/O except parsing a hosts file. Not thread-safe:
// the coordinator calls it under its own lock.
//
// Policy: gang allocation (all of a job's ranks or none), priority then FIFO.
// Note [No starvation]: the head of the queue (highest priority, oldest) that
// does not fit reserves the cluster: nothing behind it starts until it does,
// so a large job is never overtaken forever by a stream of small ones. The
// price is idle slots while running jobs drain (no backfill: without
// runtime estimates any backfill could delay the head).
#ifndef DISTILL_COORDINATOR_SCHEDULER_H_
#define DISTILL_COORDINATOR_SCHEDULER_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace distill::coordinator {

struct Host {
  std::string name;  // as mpirun knows it ("localhost" for this machine).
  int slots = 1;     // ranks it runs at once.
  int gpus = 0;      // informational for now.
};

// Slots of one job on one host.
struct HostSlots {
  std::string host;
  int slots = 0;
};
using Allocation = std::vector<HostSlots>;

// Parses a hosts file: one host per line, `NAME slots=N [gpus=G]`, `#`
// comments and blank lines ignored. InvalidArgument with "PATH:LINE: ..."
// for a malformed line, an unknown key, a duplicate host or no host at all.
absl::StatusOr<std::vector<Host>> ParseHostsFile(absl::string_view text, absl::string_view source);

// The inventory of this machine alone.
std::vector<Host> LocalInventory(int slots);

struct QueuedJob {
  std::string id;
  int ranks = 1;
  int priority = 0;
  int64_t seq = 0;       // submission order (FIFO within a priority).
  bool eligible = true;  // false while waiting out a retry backoff.
};

class Scheduler {
 public:
  explicit Scheduler(std::vector<Host> inventory);

  const std::vector<Host>& inventory() const { return inventory_; }
  int total_slots() const { return total_slots_; }

  // Marks slots used by a running (or adopted) job. FailedPrecondition when
  // they exceed what is free (e.g. an inventory shrunk across a restart);
  // the allocation is recorded anyway.
  absl::Status Reserve(const std::string& job_id, const Allocation& allocation);
  // Frees a job's slots; unknown ids are ignored.
  void Release(const std::string& job_id);

  // Queue order: priority descending, then seq ascending.
  static std::vector<QueuedJob> Order(std::vector<QueuedJob> queue);

  // Picks the jobs to start now from `queue` (any order) and reserves their
  // slots. Ineligible jobs are skipped without blocking others.
  std::vector<std::pair<std::string, Allocation>> Schedule(const std::vector<QueuedJob>& queue);

  int free_slots() const;

  // A host that failed (Note [Lost hosts]): no job is placed on it until
  // SetHostDown(host, false). Jobs running there keep their slots until
  // released. Unknown hosts are ignored.
  void SetHostDown(const std::string& host, bool down);
  bool IsHostDown(const std::string& host) const { return down_.count(host) > 0; }

 private:
  // Gang placement over the free slots of the hosts that are up: fewest
  // hosts first, then host order.
  bool Place(int ranks, Allocation* out) const;

  std::vector<Host> inventory_;
  int total_slots_ = 0;
  std::map<std::string, int> used_;  // host -> slots in use
  std::map<std::string, Allocation> jobs_;
  std::set<std::string> down_;  // hosts left out of placement
};

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_SCHEDULER_H_
