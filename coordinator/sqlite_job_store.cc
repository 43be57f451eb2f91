#include "coordinator/sqlite_job_store.h"

#include <sqlite3.h>

#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "coordinator/sqlite_schema.h"
#include "google/protobuf/util/time_util.h"

namespace distill::coordinator {
namespace {

using distill::v1::Job;
using distill::v1::JobEvent;
using distill::v1::JobState;

constexpr char kJobColumns[] =
    "job, seq, launch_pid, cancel_requested, cancel_force, not_before_ms";

// One use of a cached prepared statement: reset (ending its read
// transaction) and unbound on destruction, so the next use starts clean.
class Stmt {
 public:
  Stmt(sqlite3* db, absl::StatusOr<sqlite3_stmt*> stmt) : db_(db) {
    if (stmt.ok()) {
      stmt_ = *stmt;
    } else {
      status_ = stmt.status();
    }
  }
  ~Stmt() {
    if (stmt_ == nullptr) return;
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  const absl::Status& status() const { return status_; }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void BindBlob(int i, const std::string& v) {
    sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  // Returns true for a row, false when done; errors as Internal.
  absl::StatusOr<bool> Step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return absl::InternalError(absl::StrCat("sqlite step: ", sqlite3_errmsg(db_)));
  }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }
  int Bytes(int col) { return sqlite3_column_bytes(stmt_, col); }
  std::string Blob(int col) {
    const void* p = sqlite3_column_blob(stmt_, col);
    int n = sqlite3_column_bytes(stmt_, col);
    return p ? std::string(static_cast<const char*>(p), n) : std::string();
  }
  // Parses a blob column in place (no copy of the bytes).
  bool ParseBlob(int col, google::protobuf::MessageLite* m) {
    const void* p = sqlite3_column_blob(stmt_, col);
    int n = sqlite3_column_bytes(stmt_, col);
    return m->ParseFromArray(p, n);
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  absl::Status status_;
};

absl::StatusOr<JobRecord> ReadRecord(Stmt& s) {
  JobRecord r;
  if (!s.ParseBlob(0, &r.job)) return absl::DataLossError("stored job does not parse");
  r.seq = s.Int(1);
  r.launch_pid = s.Int(2);
  r.cancel_requested = s.Int(3) != 0;
  r.cancel_force = s.Int(4) != 0;
  r.not_before_ms = s.Int(5);
  return r;
}

absl::StatusOr<std::vector<JobRecord>> ReadRecords(Stmt& s) {
  std::vector<JobRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    ASSIGN_OR_RETURN(JobRecord r, ReadRecord(s));
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace

// One sqlite3 handle and its statements, each prepared on first use and kept
// (SQLITE_PREPARE_PERSISTENT) until the connection closes. Not thread-safe:
// the store hands a connection to one thread at a time.
class SqliteJobStore::Connection {
 public:
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const std::string& path) {
    sqlite3* db = nullptr;
    // NOMUTEX: the store's own locking already keeps a connection on one
    // thread at a time.
    int rc =
        sqlite3_open_v2(path.c_str(), &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
      sqlite3_close(db);
      return absl::UnavailableError(absl::StrCat("cannot open job store ", path, ": ", msg));
    }
    sqlite3_busy_timeout(db, 5000);
    return std::unique_ptr<Connection>(new Connection(db));
  }
  ~Connection() {
    for (auto& [sql, stmt] : stmts_) sqlite3_finalize(stmt);
    sqlite3_close(db_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  sqlite3* db() const { return db_; }
  // A statement for `sql` (prepared once); use it through one Stmt at a time.
  Stmt Get(const std::string& sql) {
    auto it = stmts_.find(sql);
    if (it != stmts_.end()) return Stmt(db_, it->second);
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) !=
        SQLITE_OK) {
      return Stmt(db_, absl::InternalError(absl::StrCat("sqlite prepare: ", sqlite3_errmsg(db_))));
    }
    stmts_.emplace(sql, stmt);
    return Stmt(db_, stmt);
  }
  // Runs a cached statement that returns no rows.
  absl::Status Run(const std::string& sql) {
    Stmt s = Get(sql);
    RETURN_IF_ERROR(s.status());
    return s.Step().status();
  }
  absl::Status Exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "unknown error";
      sqlite3_free(err);
      return absl::InternalError(absl::StrCat("sqlite: ", msg));
    }
    return absl::OkStatus();
  }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::map<std::string, sqlite3_stmt*> stmts_;
};

namespace {

// Commits on Commit(), rolls back otherwise. BEGIN IMMEDIATE takes the write
// lock up front, so a transaction never fails half-way on a lock upgrade.
template <typename Conn>
class Transaction {
 public:
  explicit Transaction(Conn& c) : c_(c) {
    Stmt begin = c_.Get("BEGIN IMMEDIATE");
    status_ = begin.status();
    if (status_.ok()) status_ = begin.Step().status();
  }
  ~Transaction() {
    if (status_.ok() && !done_) {
      Stmt rollback = c_.Get("ROLLBACK");
      if (rollback.status().ok()) rollback.Step().IgnoreError();
    }
  }
  const absl::Status& status() const { return status_; }
  absl::Status Commit() {
    done_ = true;
    Stmt commit = c_.Get("COMMIT");
    RETURN_IF_ERROR(commit.status());
    absl::Status st = commit.Step().status();
    if (!st.ok()) return absl::InternalError(absl::StrCat("sqlite commit: ", st.message()));
    return absl::OkStatus();
  }

 private:
  Conn& c_;
  absl::Status status_;
  bool done_ = false;
};

}  // namespace

SqliteJobStore::SqliteJobStore(std::string path, std::unique_ptr<Connection> writer)
    : path_(std::move(path)), writer_(std::move(writer)) {}

SqliteJobStore::~SqliteJobStore() = default;

absl::StatusOr<std::unique_ptr<SqliteJobStore>> SqliteJobStore::Open(const std::string& path,
                                                                    Sync sync) {
  ASSIGN_OR_RETURN(std::unique_ptr<Connection> writer, Connection::Open(path));
  RETURN_IF_ERROR(writer->Exec("PRAGMA journal_mode=WAL"));
  RETURN_IF_ERROR(writer->Exec(sync == Sync::kFull ? "PRAGMA synchronous=FULL"
                                                   : "PRAGMA synchronous=NORMAL"));
  RETURN_IF_ERROR(PrepareSchema(writer->db()));  // Note [Store schema]
  return std::unique_ptr<SqliteJobStore>(new SqliteJobStore(path, std::move(writer)));
}

template <typename Fn>
auto SqliteJobStore::WithReader(Fn fn) -> decltype(fn(std::declval<Connection&>())) {
  std::unique_ptr<Connection> c;
  {
    absl::MutexLock lock(&pool_mu_);
    while (readers_.empty() && open_readers_ >= kMaxReaders) pool_cv_.Wait(&pool_mu_);
    if (!readers_.empty()) {
      c = std::move(readers_.back());
      readers_.pop_back();
    } else {
      ++open_readers_;
    }
  }
  if (!c) {
    absl::StatusOr<std::unique_ptr<Connection>> opened = Connection::Open(path_);
    if (!opened.ok()) {
      {
        absl::MutexLock lock(&pool_mu_);
        --open_readers_;
      }
      pool_cv_.Signal();
      return opened.status();
    }
    c = std::move(*opened);
  }
  auto result = fn(*c);
  {
    absl::MutexLock lock(&pool_mu_);
    readers_.push_back(std::move(c));
  }
  pool_cv_.Signal();
  return result;
}

namespace {

// The `!= ''` lets SQLite use the partial index jobs_request_id (it cannot
// know that ?1 is non-empty); without it every submission scans the table.
std::string RequestIdLookupSql() {
  return absl::StrCat("SELECT ", kJobColumns,
                      " FROM jobs WHERE request_id = ?1 AND request_id != ''");
}

}  // namespace

absl::StatusOr<std::string> SqliteJobStore::RequestIdLookupPlan() {
  absl::MutexLock lock(&mu_);
  Stmt s = writer_->Get("EXPLAIN QUERY PLAN " + RequestIdLookupSql());
  RETURN_IF_ERROR(s.status());
  std::string plan;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    if (!plan.empty()) plan += "; ";
    plan += s.Blob(3);  // the "detail" column
  }
  return plan;
}

absl::StatusOr<std::string> SqliteJobStore::JournalMode() {
  absl::MutexLock lock(&mu_);
  Stmt s = writer_->Get("PRAGMA journal_mode");
  RETURN_IF_ERROR(s.status());
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return absl::InternalError("no journal mode");
  return s.Blob(0);
}

absl::StatusOr<int> SqliteJobStore::SynchronousPragma() {
  absl::MutexLock lock(&mu_);
  Stmt s = writer_->Get("PRAGMA synchronous");
  RETURN_IF_ERROR(s.status());
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return absl::InternalError("no synchronous setting");
  return static_cast<int>(s.Int(0));
}

absl::Status SqliteJobStore::WriteJobLocked(const JobRecord& r, bool insert) {
  // Both statements take the same numbered parameters; the UPDATE mentions
  // ?2 (seq), ?8 (request_id) and ?11 (parent_id), which never change, only
  // to bind them.
  Stmt s = writer_->Get(
      insert ? "INSERT INTO jobs (job, seq, launch_pid, cancel_requested, cancel_force, "
               "not_before_ms, state, request_id, id, end_ms, parent_id) "
               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
             : "UPDATE jobs SET job = ?1, launch_pid = ?3, cancel_requested = ?4, "
               "cancel_force = ?5, not_before_ms = ?6, state = ?7, end_ms = ?10 "
               "WHERE id = ?9 AND ?2 = ?2 AND ?8 = ?8 AND ?11 = ?11");
  RETURN_IF_ERROR(s.status());
  s.BindBlob(1, r.job.SerializeAsString());
  s.Bind(2, r.seq);
  s.Bind(3, r.launch_pid);
  s.Bind(4, r.cancel_requested ? 1 : 0);
  s.Bind(5, r.cancel_force ? 1 : 0);
  s.Bind(6, r.not_before_ms);
  s.Bind(7, static_cast<int64_t>(r.job.state()));
  s.Bind(8, r.job.request_id());
  s.Bind(9, r.job.id());
  s.Bind(10, StoredEndMs(r.job));
  s.Bind(11, r.job.parent_id());
  RETURN_IF_ERROR(s.Step().status());
  if (!insert && sqlite3_changes(writer_->db()) == 0)
    return absl::NotFoundError(absl::StrCat("job ", r.job.id(), " not found"));
  return absl::OkStatus();
}

absl::StatusOr<int64_t> SqliteJobStore::AppendEventLocked(const JobRecord& r,
                                                          const EventInfo& info) {
  int64_t seq = 0;
  {
    Stmt bump = writer_->Get(
        "UPDATE jobs SET last_event = last_event + 1 WHERE id = ?1 RETURNING last_event");
    RETURN_IF_ERROR(bump.status());
    bump.Bind(1, r.job.id());
    ASSIGN_OR_RETURN(bool row, bump.Step());
    if (!row) return absl::NotFoundError(absl::StrCat("job ", r.job.id(), " not found"));
    seq = bump.Int(0);
    RETURN_IF_ERROR(bump.Step().status());
  }
  JobEvent e;
  e.set_sequence(seq);
  e.set_kind(info.kind);
  *e.mutable_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
  *e.mutable_job() = EventJob(r.job, info.kind);  // Note [Small events]
  e.set_message(info.message);
  Stmt ins = writer_->Get("INSERT INTO events (job_id, sequence, event) VALUES (?1, ?2, ?3)");
  RETURN_IF_ERROR(ins.status());
  ins.Bind(1, r.job.id());
  ins.Bind(2, seq);
  ins.BindBlob(3, e.SerializeAsString());
  RETURN_IF_ERROR(ins.Step().status());
  return seq;
}

absl::StatusOr<CreatedJob> SqliteJobStore::CreateJobLocked(const NewJob& nj) {
  const JobRecord& record = nj.record;
  CreatedJob out;
  if (!record.job.request_id().empty()) {
    Stmt s = writer_->Get(RequestIdLookupSql());
    RETURN_IF_ERROR(s.status());
    s.Bind(1, record.job.request_id());
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) {
      out.record = ReadRecord(s);
      return out;
    }
  }
  ASSIGN_OR_RETURN(JobRecord r, InsertJobLocked(record, nj.event));
  for (const JobRecord& child : nj.children) {
    ASSIGN_OR_RETURN(JobRecord c, InsertJobLocked(child, nj.event));
    out.children.push_back(std::move(c));
  }
  out.record = std::move(r);
  out.created = true;
  return out;
}

absl::StatusOr<JobRecord> SqliteJobStore::InsertJobLocked(const JobRecord& record,
                                                          const EventInfo& event) {
  JobRecord r = record;
  {
    Stmt s = writer_->Get("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs");
    RETURN_IF_ERROR(s.status());
    RETURN_IF_ERROR(s.Step().status());
    r.seq = s.Int(0);
  }
  absl::Status st = WriteJobLocked(r, /*insert=*/true);
  if (!st.ok()) {
    if (absl::StrContains(st.message(), "UNIQUE")) {
      return absl::AlreadyExistsError(absl::StrCat("job ", r.job.id(), " already exists"));
    }
    return st;
  }
  RETURN_IF_ERROR(AppendEventLocked(r, event).status());
  return r;
}

absl::StatusOr<std::vector<CreatedJob>> SqliteJobStore::CreateJobs(
    const std::vector<NewJob>& jobs) {
  absl::MutexLock lock(&mu_);
  Transaction<Connection> tx(*writer_);
  RETURN_IF_ERROR(tx.status());
  std::vector<CreatedJob> out(jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) {
    // A savepoint per job: a job that fails half-way is undone alone.
    RETURN_IF_ERROR(writer_->Run("SAVEPOINT job"));
    absl::StatusOr<CreatedJob> r = CreateJobLocked(jobs[i]);
    if (r.ok()) {
      out[i] = std::move(*r);
    } else {
      out[i].record = r.status();
      RETURN_IF_ERROR(writer_->Run("ROLLBACK TO job"));
    }
    RETURN_IF_ERROR(writer_->Run("RELEASE job"));
  }
  RETURN_IF_ERROR(tx.Commit());
  return out;
}

absl::StatusOr<JobRecord> SqliteJobStore::GetJob(const std::string& id) {
  return WithReader([&](Connection& c) -> absl::StatusOr<JobRecord> {
    Stmt s = c.Get(absl::StrCat("SELECT ", kJobColumns, " FROM jobs WHERE id = ?1"));
    RETURN_IF_ERROR(s.status());
    s.Bind(1, id);
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return absl::NotFoundError(absl::StrCat("job '", id, "' not found"));
    return ReadRecord(s);
  });
}

absl::StatusOr<int64_t> SqliteJobStore::UpdateJob(const JobRecord& record,
                                                  const std::optional<EventInfo>& event) {
  absl::MutexLock lock(&mu_);
  Transaction<Connection> tx(*writer_);
  RETURN_IF_ERROR(tx.status());
  RETURN_IF_ERROR(WriteJobLocked(record, /*insert=*/false));
  int64_t seq = 0;
  if (event) {
    ASSIGN_OR_RETURN(seq, AppendEventLocked(record, *event));
  }
  RETURN_IF_ERROR(tx.Commit());
  return seq;
}

namespace {

// The listing query; the columns are `select`.
std::string ListQuery(const char* select) {
  return absl::StrCat("SELECT ", select,
                      " FROM jobs WHERE (?1 = 0 OR state = ?1) AND (?2 <= 0 OR seq < ?2) "
                      "ORDER BY seq DESC LIMIT ?3");
}

void BindList(Stmt& s, JobState state, int64_t before_seq, int limit) {
  s.Bind(1, static_cast<int64_t>(state));
  s.Bind(2, before_seq);
  s.Bind(3, static_cast<int64_t>(limit));
}

}  // namespace

absl::StatusOr<std::vector<JobRecord>> SqliteJobStore::ListJobs(JobState state, int64_t before_seq,
                                                                int limit) {
  return WithReader([&](Connection& c) -> absl::StatusOr<std::vector<JobRecord>> {
    Stmt s = c.Get(ListQuery(kJobColumns));
    RETURN_IF_ERROR(s.status());
    BindList(s, state, before_seq, limit);
    return ReadRecords(s);
  });
}

absl::StatusOr<std::vector<SerializedJob>> SqliteJobStore::ListSerializedJobs(
    JobState state, int64_t before_seq, int limit, size_t max_bytes, bool* more) {
  return WithReader([&](Connection& c) -> absl::StatusOr<std::vector<SerializedJob>> {
    Stmt s = c.Get(ListQuery("job, seq, state"));
    RETURN_IF_ERROR(s.status());
    BindList(s, state, before_seq, limit + 1);  // one more tells whether more follow
    std::vector<SerializedJob> out;
    size_t bytes = 0;
    bool followed = false;
    while (true) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      const size_t size = static_cast<size_t>(s.Bytes(0));
      if (static_cast<int>(out.size()) == limit ||
          (max_bytes > 0 && !out.empty() && bytes + size > max_bytes)) {
        followed = true;
        break;
      }
      bytes += size;
      SerializedJob j;
      j.job = s.Blob(0);
      j.seq = s.Int(1);
      j.state = static_cast<JobState>(s.Int(2));
      out.push_back(std::move(j));
    }
    if (more != nullptr) *more = followed;
    return out;
  });
}

absl::StatusOr<std::vector<std::string>> SqliteJobStore::ExpiredJobs(int64_t ended_before_ms,
                                                                     int limit) {
  return WithReader([&](Connection& c) -> absl::StatusOr<std::vector<std::string>> {
    // The conditions of the partial index jobs_expiry, so that it is used.
    Stmt s = c.Get(
        "SELECT id FROM jobs WHERE end_ms > 0 AND parent_id = '' AND end_ms < ?1 "
        "AND state IN (4, 5, 6) ORDER BY end_ms ASC LIMIT ?2");
    RETURN_IF_ERROR(s.status());
    s.Bind(1, ended_before_ms);
    s.Bind(2, static_cast<int64_t>(limit));
    std::vector<std::string> ids;
    while (true) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      ids.push_back(s.Blob(0));
    }
    return ids;
  });
}

absl::StatusOr<std::map<JobState, int>> SqliteJobStore::DeleteJobs(
    const std::vector<std::string>& ids) {
  absl::MutexLock lock(&mu_);
  Transaction<Connection> tx(*writer_);
  RETURN_IF_ERROR(tx.status());
  std::map<JobState, int> deleted;
  for (const std::string& id : ids) {
    {
      Stmt job = writer_->Get("DELETE FROM jobs WHERE id = ?1 RETURNING state");
      RETURN_IF_ERROR(job.status());
      job.Bind(1, id);
      ASSIGN_OR_RETURN(bool row, job.Step());
      if (!row) continue;  // not stored
      deleted[static_cast<JobState>(job.Int(0))]++;
      RETURN_IF_ERROR(job.Step().status());
    }
    Stmt events = writer_->Get("DELETE FROM events WHERE job_id = ?1");
    RETURN_IF_ERROR(events.status());
    events.Bind(1, id);
    RETURN_IF_ERROR(events.Step().status());
  }
  RETURN_IF_ERROR(tx.Commit());
  return deleted;
}

absl::StatusOr<std::vector<JobRecord>> SqliteJobStore::JobsInStates(
    const std::vector<JobState>& states) {
  std::vector<std::string> nums;
  for (JobState st : states) nums.push_back(absl::StrCat(static_cast<int>(st)));
  return WithReader([&](Connection& c) -> absl::StatusOr<std::vector<JobRecord>> {
    Stmt s = c.Get(absl::StrCat("SELECT ", kJobColumns, " FROM jobs WHERE state IN (",
                                absl::StrJoin(nums, ","), ") ORDER BY seq ASC"));
    RETURN_IF_ERROR(s.status());
    return ReadRecords(s);
  });
}

absl::StatusOr<std::map<JobState, int>> SqliteJobStore::CountJobs() {
  return WithReader([&](Connection& c) -> absl::StatusOr<std::map<JobState, int>> {
    Stmt s = c.Get("SELECT state, COUNT(*) FROM jobs GROUP BY state");
    RETURN_IF_ERROR(s.status());
    std::map<JobState, int> counts;
    while (true) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      counts[static_cast<JobState>(s.Int(0))] = static_cast<int>(s.Int(1));
    }
    return counts;
  });
}

absl::StatusOr<std::vector<JobEvent>> SqliteJobStore::ListEvents(const std::string& id,
                                                                 int64_t after_sequence,
                                                                 int limit) {
  return WithReader([&](Connection& c) -> absl::StatusOr<std::vector<JobEvent>> {
    Stmt s = c.Get(
        "SELECT event FROM events WHERE job_id = ?1 AND sequence > ?2 ORDER BY sequence ASC "
        "LIMIT ?3");
    RETURN_IF_ERROR(s.status());
    s.Bind(1, id);
    s.Bind(2, after_sequence);
    s.Bind(3, static_cast<int64_t>(limit));
    std::vector<JobEvent> out;
    while (true) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      JobEvent e;
      if (!s.ParseBlob(0, &e)) return absl::DataLossError("stored event does not parse");
      ReduceEventJob(e.kind(), e.mutable_job());  // a row written before Note [Small events]
      out.push_back(std::move(e));
    }
    return out;
  });
}

}  // namespace distill::coordinator
