// JobStore: the coordinator's durable state, one record per job plus a per-job
// log of events (state changes and progress) that WatchJob replays.
//
// The store is the source of truth: the coordinator writes every state change
// here before acting on it (Note [Write before act] in coordinator.h), so a
// restarted coordinator rebuilds its view from the store alone.
// Implementations are thread-safe. Errors: NotFound for unknown ids,
// AlreadyExists for a duplicate id, Internal for storage failures.
#ifndef DISTILL_COORDINATOR_JOB_STORE_H_
#define DISTILL_COORDINATOR_JOB_STORE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "distill/v1/coordinator.pb.h"

namespace distill::coordinator {

// A job as stored: the API resource plus the coordinator's private
// bookkeeping, which never leaves the server.
struct JobRecord {
  distill::v1::Job job;
  // Creation order, assigned by the store (FIFO and listing order).
  int64_t seq = 0;
  // Process group leader of the current attempt's launch (0 = none).
  int64_t launch_pid = 0;
  // A user asked to cancel; the job ends CANCELLED once its processes exit.
  bool cancel_requested = false;
  bool cancel_force = false;
  // A retry waits for its backoff: not schedulable before this (unix ms).
  int64_t not_before_ms = 0;
};

// What happened, for the event log.
struct EventInfo {
  distill::v1::JobEvent::Kind kind = distill::v1::JobEvent::STATE_CHANGED;
  std::string message;
};

class JobStore {
 public:
  virtual ~JobStore() = default;

  // Inserts a new job (job.id set by the caller) with its first event and
  // returns it with `seq` assigned. When `job.request_id` is non-empty and a
  // job with that request id exists, returns the existing job unchanged and
  // sets *created to false.
  virtual absl::StatusOr<JobRecord> CreateJob(const JobRecord& record, const EventInfo& event,
                                              bool* created) = 0;

  virtual absl::StatusOr<JobRecord> GetJob(const std::string& id) = 0;

  // Replaces the stored record of `record.job.id` and, when `event` is set,
  // appends an event (the job as written) in the same transaction. Returns
  // the event's sequence number (0 without an event).
  virtual absl::StatusOr<int64_t> UpdateJob(const JobRecord& record,
                                            const std::optional<EventInfo>& event) = 0;

  // Jobs newest first (by seq), optionally in one state, with seq < before_seq
  // when before_seq > 0; at most `limit`.
  virtual absl::StatusOr<std::vector<JobRecord>> ListJobs(distill::v1::JobState state,
                                                          int64_t before_seq, int limit) = 0;

  // Every job in one of `states`, oldest first.
  virtual absl::StatusOr<std::vector<JobRecord>> JobsInStates(
      const std::vector<distill::v1::JobState>& states) = 0;

  // How many jobs are in each state.
  virtual absl::StatusOr<std::map<distill::v1::JobState, int>> CountJobs() = 0;

  // A job's events with sequence > after_sequence, oldest first, at most limit.
  virtual absl::StatusOr<std::vector<distill::v1::JobEvent>> ListEvents(const std::string& id,
                                                                        int64_t after_sequence,
                                                                        int limit) = 0;
};

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_JOB_STORE_H_
