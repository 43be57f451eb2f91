// SqliteJobStore: JobStore in one SQLite file in WAL mode (the embedded
// default). Jobs and events are rows holding the serialized protos next to
// the few columns that queries need (sqlite_schema.h: Note [Store schema]
// versions the tables and migrates a file written by an older coordinator).
//
// Durability (--sync): a write returns after its transaction committed to
// the WAL. kNormal (synchronous=NORMAL, the default): the commit is in the OS
// page cache, so it survives a crash (kill -9) of the coordinator process;
// the WAL is fsynced only at checkpoints, so a power loss or kernel crash may
// roll back the last commits (never corrupting the file). kFull
// (synchronous=FULL): the WAL is fsynced at every commit, so an answered
// submission survives a power loss too; the group commit (Note [Group
// commit]) pays one fsync per batch, not per job (bench: docs/benchmarks.md).
//
// Threads: thread-safe. Writes go through one connection behind a mutex;
// reads use a small pool of reader connections (WAL readers see every
// commit made before their statement started and never wait for a writer).
// Statements are prepared once per connection and reused.
#ifndef DISTILL_COORDINATOR_SQLITE_JOB_STORE_H_
#define DISTILL_COORDINATOR_SQLITE_JOB_STORE_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/job_store.h"

namespace distill::coordinator {

class SqliteJobStore : public JobStore {
 public:
  enum class Sync { kNormal, kFull };
  // Opens (creating if needed) the database at `path` and its schema.
  static absl::StatusOr<std::unique_ptr<SqliteJobStore>> Open(const std::string& path,
                                                              Sync sync = Sync::kNormal);
  // The synchronous setting in effect (PRAGMA synchronous: 1 NORMAL, 2 FULL).
  absl::StatusOr<int> SynchronousPragma();
  ~SqliteJobStore() override;

  absl::StatusOr<std::vector<CreatedJob>> CreateJobs(const std::vector<NewJob>& jobs) override;
  absl::StatusOr<JobRecord> GetJob(const std::string& id) override;
  absl::StatusOr<int64_t> UpdateJob(const JobRecord& record,
                                    const std::optional<EventInfo>& event) override;
  absl::StatusOr<std::vector<JobRecord>> ListJobs(distill::v1::JobState state, int64_t before_seq,
                                                  int limit) override;
  absl::StatusOr<std::vector<SerializedJob>> ListSerializedJobs(distill::v1::JobState state,
                                                                int64_t before_seq, int limit,
                                                                size_t max_bytes,
                                                                bool* more) override;
  absl::StatusOr<std::vector<JobRecord>> JobsInStates(
      const std::vector<distill::v1::JobState>& states) override;
  absl::StatusOr<std::map<distill::v1::JobState, int>> CountJobs() override;
  absl::StatusOr<std::vector<std::string>> ExpiredJobs(int64_t ended_before_ms,
                                                       int limit) override;
  absl::StatusOr<std::map<distill::v1::JobState, int>> DeleteJobs(
      const std::vector<std::string>& ids) override;
  absl::StatusOr<std::vector<distill::v1::JobEvent>> ListEvents(const std::string& id,
                                                                int64_t after_sequence,
                                                                int limit) override;

  // The journal mode in effect ("wal"), for tests.
  absl::StatusOr<std::string> JournalMode();
  // SQLite's EXPLAIN QUERY PLAN of the request-id lookup that every
  // submission runs ("SEARCH jobs USING INDEX jobs_request_id ..."), for tests.
  absl::StatusOr<std::string> RequestIdLookupPlan();

 private:
  class Connection;  // one sqlite3 handle and its prepared statements
  // At most this many reader connections; more concurrent reads wait. Reads
  // are CPU-bound (page cache), so more than a few buys nothing.
  static constexpr int kMaxReaders = 4;

  SqliteJobStore(std::string path, std::unique_ptr<Connection> writer);
  // One job of CreateJobs(), inside its transaction.
  absl::StatusOr<CreatedJob> CreateJobLocked(const NewJob& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Inserts one new record (assigning seq) with its first event.
  absl::StatusOr<JobRecord> InsertJobLocked(const JobRecord& record, const EventInfo& event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<int64_t> AppendEventLocked(const JobRecord& record, const EventInfo& event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WriteJobLocked(const JobRecord& record, bool insert)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs fn(Connection&) on a pooled reader connection.
  template <typename Fn>
  auto WithReader(Fn fn) -> decltype(fn(std::declval<Connection&>()));

  const std::string path_;
  absl::Mutex mu_;  // serializes writes
  std::unique_ptr<Connection> writer_ ABSL_GUARDED_BY(mu_);

  absl::Mutex pool_mu_;
  absl::CondVar pool_cv_;  // a reader was returned
  std::vector<std::unique_ptr<Connection>> readers_ ABSL_GUARDED_BY(pool_mu_);  // idle ones
  int open_readers_ ABSL_GUARDED_BY(pool_mu_) = 0;
};

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_SQLITE_JOB_STORE_H_
