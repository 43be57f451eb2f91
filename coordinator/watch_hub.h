// WatchHub: the WatchJob streams, on gRPC's callback API with no thread per
// stream (Note [Watch fan-out]). Owns one thread that reads the store for the
// streams whose job changed; the streams themselves are small reactors run by
// gRPC's callback threads. Hooks itself into the coordinator's event listener
// for its lifetime. Thread-safe; destroy it only after the gRPC server has
// shut down (every stream has ended).
//
// Note [Watch fan-out]: a WatchJob stream is a reactor (WatchHub::Watch), not
// a thread. After each event it writes, the coordinator calls OnJobEvent(id)
// under its lock (Coordinator::SetEventListener): that only marks the job's
// watches dirty and queues the idle ones for the hub's thread. The thread
// reads each queued watch's next events off every lock (at most kWatchBatch,
// one store read per job and cursor, shared by the watches at that cursor)
// and starts the first write; the reactor then writes one event at a time
// from gRPC's callback threads and queues itself again when its batch is sent
// and the job changed meanwhile (or the batch was full). A watch is registered
// before its first read, so an event written in between marks it dirty and
// is never missed. The stream ends after the job's terminal STATE_CHANGED
// event. At most max_watchers streams are open (RESOURCE_EXHAUSTED beyond),
// each holding a cursor and a shared batch, so memory stays bounded.
#ifndef DISTILL_COORDINATOR_WATCH_HUB_H_
#define DISTILL_COORDINATOR_WATCH_HUB_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/coordinator.h"
#include "coordinator/metrics.h"

namespace distill::coordinator {

// Events one stream reads (and holds) at a time.
inline constexpr int kWatchBatch = 32;

class WatchHub {
 public:
  // `metrics` (may be null) gets each stream's whole life as the WatchJob
  // RPC's duration. The coordinator must outlive the hub.
  WatchHub(Coordinator* coordinator, int max_watchers, Metrics* metrics);
  ~WatchHub();
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // The reactor of one WatchJob call that started at `start` (authorized):
  // the job's events after request.after_sequence() up to its terminal
  // event (then OK), NOT_FOUND for an unknown job, CANCELLED when the client
  // goes away. ResourceExhausted when max_watchers streams are open.
  absl::StatusOr<grpc::ServerWriteReactor<distill::v1::JobEvent>*> Open(
      const distill::v1::WatchJobRequest& request, absl::Time start) ABSL_LOCKS_EXCLUDED(mu_);

  class Watch;

 private:
  // The coordinator's listener: job `id` got an event. Never blocks.
  void OnJobEvent(const std::string& id) ABSL_LOCKS_EXCLUDED(mu_);
  // `w` needs a store read on the hub's thread.
  void Enqueue(std::shared_ptr<Watch> w) ABSL_LOCKS_EXCLUDED(mu_);
  // From the watch's OnDone: forgets it.
  void Remove(Watch* w) ABSL_LOCKS_EXCLUDED(mu_);
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);

  Coordinator* const coordinator_;
  const int max_watchers_;
  Metrics* const metrics_;

  absl::Mutex mu_;
  absl::CondVar ready_cv_;  // ready_ grew, or stop_
  // The open watches by job id; they are owned here until their OnDone.
  std::map<std::string, std::vector<std::shared_ptr<Watch>>> by_job_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;
  // Watches waiting for a store read, each at most once.
  std::deque<std::shared_ptr<Watch>> ready_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_WATCH_HUB_H_
