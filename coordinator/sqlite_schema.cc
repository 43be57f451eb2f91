#include "coordinator/sqlite_schema.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"

namespace distill::coordinator {
namespace {

// Version 1. end_ms and parent_id are copies of Job fields that retention
// queries (ExpiredJobs) need without parsing every job.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL UNIQUE,
  state INTEGER NOT NULL,
  request_id TEXT NOT NULL,
  job BLOB NOT NULL,
  launch_pid INTEGER NOT NULL DEFAULT 0,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  cancel_force INTEGER NOT NULL DEFAULT 0,
  not_before_ms INTEGER NOT NULL DEFAULT 0,
  last_event INTEGER NOT NULL DEFAULT 0,
  end_ms INTEGER NOT NULL DEFAULT 0,
  parent_id TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_request_id ON jobs(request_id) WHERE request_id != '';
CREATE INDEX IF NOT EXISTS jobs_state_seq ON jobs(state, seq);
CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs(end_ms) WHERE end_ms > 0 AND parent_id = '';
CREATE TABLE IF NOT EXISTS events (
  job_id TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  event BLOB NOT NULL,
  PRIMARY KEY (job_id, sequence)
);
)sql";

absl::Status Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    return absl::InternalError(absl::StrCat("job store schema: ", msg));
  }
  return absl::OkStatus();
}

// Runs `sql` (one statement) and returns its first column of its first row
// as an integer (0 without a row).
absl::StatusOr<int64_t> QueryInt(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK)
    return absl::InternalError(absl::StrCat("job store schema: ", sqlite3_errmsg(db)));
  const int rc = sqlite3_step(stmt);
  const int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
  sqlite3_finalize(stmt);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return absl::InternalError(absl::StrCat("job store schema: ", sqlite3_errmsg(db)));
  return v;
}

// Version 0 with jobs: the two columns, filled from each stored job.
absl::Status MigrateFromV0(sqlite3* db) {
  RETURN_IF_ERROR(Exec(db, "ALTER TABLE jobs ADD COLUMN end_ms INTEGER NOT NULL DEFAULT 0"));
  RETURN_IF_ERROR(Exec(db, "ALTER TABLE jobs ADD COLUMN parent_id TEXT NOT NULL DEFAULT ''"));
  sqlite3_stmt* read = nullptr;
  sqlite3_stmt* write = nullptr;
  absl::Status st;
  if (sqlite3_prepare_v2(db, "SELECT id, job FROM jobs", -1, &read, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v2(db, "UPDATE jobs SET end_ms = ?1, parent_id = ?2 WHERE id = ?3", -1,
                         &write, nullptr) != SQLITE_OK) {
    st = absl::InternalError(absl::StrCat("job store schema: ", sqlite3_errmsg(db)));
  }
  while (st.ok() && sqlite3_step(read) == SQLITE_ROW) {
    distill::v1::Job job;
    if (!job.ParseFromArray(sqlite3_column_blob(read, 1), sqlite3_column_bytes(read, 1))) {
      st = absl::DataLossError(absl::StrCat("stored job ", reinterpret_cast<const char*>(
                                                               sqlite3_column_text(read, 0)),
                                            " does not parse"));
      break;
    }
    sqlite3_bind_int64(write, 1, StoredEndMs(job));
    sqlite3_bind_text(write, 2, job.parent_id().data(), static_cast<int>(job.parent_id().size()),
                      SQLITE_TRANSIENT);
    sqlite3_bind_text(write, 3, job.id().data(), static_cast<int>(job.id().size()),
                      SQLITE_TRANSIENT);
    if (sqlite3_step(write) != SQLITE_DONE)
      st = absl::InternalError(absl::StrCat("job store schema: ", sqlite3_errmsg(db)));
    sqlite3_reset(write);
  }
  sqlite3_finalize(read);
  sqlite3_finalize(write);
  return st;
}

absl::Status PrepareInTransaction(sqlite3* db) {
  ASSIGN_OR_RETURN(const int64_t version, QueryInt(db, "PRAGMA user_version"));
  if (version > kSchemaVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("the job store has schema version ", version, ", written by a newer "
                     "coordinator; this one knows versions up to ", kSchemaVersion));
  }
  if (version == kSchemaVersion) return absl::OkStatus();
  ASSIGN_OR_RETURN(const int64_t old_jobs,
                   QueryInt(db, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND "
                                "name = 'jobs'"));
  if (old_jobs > 0) RETURN_IF_ERROR(MigrateFromV0(db));
  RETURN_IF_ERROR(Exec(db, kSchema));
  return Exec(db, absl::StrCat("PRAGMA user_version = ", kSchemaVersion));
}

}  // namespace

int64_t StoredEndMs(const distill::v1::Job& job) {
  const distill::v1::JobState s = job.state();
  if (s != distill::v1::SUCCEEDED && s != distill::v1::FAILED && s != distill::v1::CANCELLED)
    return 0;
  return google::protobuf::util::TimeUtil::TimestampToMilliseconds(job.end_time());
}

absl::Status PrepareSchema(sqlite3* db) {
  RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE"));
  absl::Status st = PrepareInTransaction(db);
  if (st.ok()) st = Exec(db, "COMMIT");
  if (!st.ok()) Exec(db, "ROLLBACK").IgnoreError();
  return st;
}

}  // namespace distill::coordinator
