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

// A stored job still serialized (distill.v1.Job wire format), with the
// columns a listing needs: lets ListJobs answer without parsing every job.
struct SerializedJob {
  int64_t seq = 0;
  distill::v1::JobState state = distill::v1::JOB_STATE_UNSPECIFIED;
  std::string job;
};

// Note [Small events]: an event stores what changed, not the whole job, so
// the log grows by a few hundred bytes per event whatever the spec's size
// (a job's spec may be 1 MiB: Note [Input bounds] in common/spec.h) and a
// WatchJob stream stays small. EventJob() is what an event keeps of the job:
// for STATE_CHANGED every field but the spec, of which only name and type
// (what a watcher prints); for PROGRESS id, state, attempt, progress,
// update_time and spec.type. Stores apply it when they write an event and
// to every event they read (events written before kept whole jobs), so the
// API's JobEvent.job is the same for old and new events.
distill::v1::Job EventJob(const distill::v1::Job& job, distill::v1::JobEvent::Kind kind);
// EventJob() in place (for an event read back).
void ReduceEventJob(distill::v1::JobEvent::Kind kind, distill::v1::Job* job);

// What happened, for the event log.
struct EventInfo {
  distill::v1::JobEvent::Kind kind = distill::v1::JobEvent::STATE_CHANGED;
  std::string message;
};

// One job for CreateJobs(): the record (job.id set by the caller) and its
// first event; for a sweep also its children, written with it or not at all
// (each with the same first event).
struct NewJob {
  JobRecord record;
  EventInfo event;
  std::vector<JobRecord> children = {};
};

// What CreateJobs() did with one NewJob: the stored record (new, or the
// existing job of the same request id when `created` is false) or the error
// of that job alone (AlreadyExists for a duplicate id, Internal).
struct CreatedJob {
  absl::StatusOr<JobRecord> record = absl::UnknownError("not written");
  bool created = false;
  std::vector<JobRecord> children;  // as stored (with seq), when created
};

class JobStore {
 public:
  virtual ~JobStore() = default;

  // Inserts new jobs, each with its first event, in one transaction (group
  // commit), in order, assigning `seq`. Each job is idempotent on a non-empty
  // `job.request_id`: when a job with that request id exists (stored before
  // or earlier in the same batch), its result is that job, unchanged, with
  // created = false. A job that fails leaves no trace and fails alone; the
  // others still commit; a sweep and its children are one job here. A
  // non-OK return (the transaction could not begin or
  // commit) means that none of the batch was written; jobs stored before are
  // untouched. Returns one result per job, in order.
  virtual absl::StatusOr<std::vector<CreatedJob>> CreateJobs(const std::vector<NewJob>& jobs) = 0;

  // CreateJobs() of one job: its record, or its error; *created (optional)
  // as CreatedJob::created.
  absl::StatusOr<JobRecord> CreateJob(const JobRecord& record, const EventInfo& event,
                                      bool* created) {
    absl::StatusOr<std::vector<CreatedJob>> r = CreateJobs({NewJob{record, event}});
    if (!r.ok()) return r.status();
    if (created) *created = (*r)[0].created;
    return std::move((*r)[0].record);
  }

  virtual absl::StatusOr<JobRecord> GetJob(const std::string& id) = 0;

  // Replaces the stored record of `record.job.id` and, when `event` is set,
  // appends an event (EventJob() of the job as written) in the same
  // transaction. Returns the event's sequence number (0 without an event).
  virtual absl::StatusOr<int64_t> UpdateJob(const JobRecord& record,
                                            const std::optional<EventInfo>& event) = 0;

  // Jobs newest first (by seq), optionally in one state, with seq < before_seq
  // when before_seq > 0; at most `limit`.
  virtual absl::StatusOr<std::vector<JobRecord>> ListJobs(distill::v1::JobState state,
                                                          int64_t before_seq, int limit) = 0;

  // ListJobs() without parsing: the same jobs in the same order, serialized,
  // also ending before a job that would bring their bytes (SerializedJob::job)
  // over `max_bytes` (0 = no bound); the first job always comes. *more
  // (optional) tells whether jobs of the listing follow the last returned.
  virtual absl::StatusOr<std::vector<SerializedJob>> ListSerializedJobs(
      distill::v1::JobState state, int64_t before_seq, int limit, size_t max_bytes,
      bool* more) = 0;

  // Every job in one of `states`, oldest first.
  virtual absl::StatusOr<std::vector<JobRecord>> JobsInStates(
      const std::vector<distill::v1::JobState>& states) = 0;

  // How many jobs are in each state.
  virtual absl::StatusOr<std::map<distill::v1::JobState, int>> CountJobs() = 0;

  // The ids of finished jobs (SUCCEEDED, FAILED, CANCELLED) that ended before
  // `ended_before_ms` (unix ms) and belong to no sweep (a sweep's children go
  // with it), the earliest ended first, at most `limit`.
  virtual absl::StatusOr<std::vector<std::string>> ExpiredJobs(int64_t ended_before_ms,
                                                               int limit) = 0;

  // Deletes the jobs with these ids and their events, in one transaction:
  // all of them or, on an error (Internal), none; ids not stored are skipped.
  // Returns how many jobs it deleted in each state.
  virtual absl::StatusOr<std::map<distill::v1::JobState, int>> DeleteJobs(
      const std::vector<std::string>& ids) = 0;

  // A job's events with sequence > after_sequence, oldest first, at most limit.
  virtual absl::StatusOr<std::vector<distill::v1::JobEvent>> ListEvents(const std::string& id,
                                                                        int64_t after_sequence,
                                                                        int limit) = 0;
};

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_JOB_STORE_H_
