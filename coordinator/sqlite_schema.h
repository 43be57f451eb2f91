// The SQLite job store's schema and its migrations (used by
// sqlite_job_store.cc alone; kept apart so that each file reads on its own).
//
// Note [Store schema]: PRAGMA user_version is the schema's version. 0 is a
// new file, or one written before versions existed (its jobs table lacks
// end_ms and parent_id); PrepareSchema() brings either to kSchemaVersion in
// one transaction (a crash leaves the old schema, tried again at the next
// start) and refuses a file of a newer version. Events are never rewritten:
// old rows keep whole jobs, which readers reduce (Note [Small events] in
// job_store.h). Not thread-safe: call it once, from Open().
#ifndef DISTILL_COORDINATOR_SQLITE_SCHEMA_H_
#define DISTILL_COORDINATOR_SQLITE_SCHEMA_H_

#include <sqlite3.h>

#include <cstdint>

#include "absl/status/status.h"
#include "distill/v1/coordinator.pb.h"

namespace distill::coordinator {

inline constexpr int kSchemaVersion = 1;

// Creates the schema on a new file or migrates an older one to
// kSchemaVersion. FailedPrecondition for a file of a newer version,
// Internal for SQLite errors.
absl::Status PrepareSchema(sqlite3* db);

// The jobs.end_ms column of `job`: its end_time in unix ms when it is
// finished (SUCCEEDED, FAILED, CANCELLED), else 0.
int64_t StoredEndMs(const distill::v1::Job& job);

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_SQLITE_SCHEMA_H_
