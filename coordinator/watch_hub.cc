#include "coordinator/watch_hub.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "coordinator/grpc_status.h"

namespace distill::coordinator {
namespace {

using distill::v1::JobEvent;
using Batch = std::vector<JobEvent>;

bool IsTerminalEvent(const JobEvent& e) {
  return e.kind() == JobEvent::STATE_CHANGED && IsTerminal(e.job().state());
}

// One pass of the hub's thread reads each (job, cursor) once: the watches of
// a job mostly share a cursor, so a change costs one store read per job.
class ReadCache {
 public:
  explicit ReadCache(Coordinator* coordinator) : coordinator_(coordinator) {}
  absl::StatusOr<std::shared_ptr<const Batch>> Events(const std::string& id, int64_t after) {
    auto [it, added] = reads_.try_emplace({id, after}, nullptr);
    if (added) {
      absl::StatusOr<Batch> events = coordinator_->Events(id, after, kWatchBatch);
      if (!events.ok()) {
        reads_.erase(it);
        return events.status();
      }
      it->second = std::make_shared<const Batch>(std::move(*events));
    }
    return it->second;
  }

 private:
  Coordinator* const coordinator_;
  std::map<std::pair<std::string, int64_t>, std::shared_ptr<const Batch>> reads_;
};

}  // namespace

// One WatchJob stream. Its phase says who may act on the call next: the
// hub's thread (kReading), the write in flight's OnWriteDone (kWriting), or
// OnJobEvent / OnCancel (kIdle); so at most one write is in flight and
// Finish() is called once. Each decision is taken under mu_ and carried out
// (a Step) after it is released. Owned by the hub's by_job_ until OnDone.
class WatchHub::Watch : public grpc::ServerWriteReactor<JobEvent>,
                        public std::enable_shared_from_this<Watch> {
 public:
  Watch(WatchHub* hub, std::string id, int64_t after, absl::Time start)
      : hub_(hub), id_(std::move(id)), start_(start), after_(after) {}

  const std::string& id() const { return id_; }
  absl::Time start() const { return start_; }

  // The job got an event: whether the watch was idle and must be queued.
  bool MarkDirty() ABSL_LOCKS_EXCLUDED(mu_);
  // The hub's thread, for a queued watch (phase kReading): Begin() for every
  // watch of a pass before any store read, so that an event written after
  // it marks the watch dirty again; then Read().
  struct Cursor {
    bool cancelled = false;
    bool first = false;  // the job is not known to exist yet
    int64_t after = 0;
  };
  Cursor Begin() ABSL_LOCKS_EXCLUDED(mu_);
  void Read(const Cursor& cursor, Coordinator& coordinator, ReadCache& cache)
      ABSL_LOCKS_EXCLUDED(mu_);

  void OnWriteDone(bool ok) override ABSL_LOCKS_EXCLUDED(mu_);
  void OnCancel() override ABSL_LOCKS_EXCLUDED(mu_);
  void OnDone() override { hub_->Remove(this); }  // may delete this

 private:
  enum class Phase { kReading, kWriting, kIdle, kFinished };
  // What to do once mu_ is released.
  struct Step {
    enum { kNothing, kWrite, kFinish, kQueue } what = kNothing;
    const JobEvent* event = nullptr;
    grpc::Status status;
  };
  static Step Finished(grpc::Status status) { return {Step::kFinish, nullptr, std::move(status)}; }
  void Do(const Step& step);
  // Ends the call now (in phase kReading).
  void FinishWith(grpc::Status status) ABSL_LOCKS_EXCLUDED(mu_);
  // Takes a non-empty batch read at the cursor and starts writing it.
  Step TakeLocked(std::shared_ptr<const Batch> batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Nothing new at the cursor: idle, or queued again if the job changed.
  Step NothingNewLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  WatchHub* const hub_;
  const std::string id_;
  const absl::Time start_;

  absl::Mutex mu_;
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kReading;  // queued by Open()
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;             // an event since Begin()
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;         // OnCancel ran
  bool checked_ ABSL_GUARDED_BY(mu_) = false;           // the job is known to exist
  int64_t after_ ABSL_GUARDED_BY(mu_);                  // the last sequence taken into batch_
  // The events being sent, shared with the watches read at the same cursor:
  // batch_[next_, end_), end_ just past the terminal event if there is one.
  std::shared_ptr<const Batch> batch_ ABSL_GUARDED_BY(mu_);
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  size_t end_ ABSL_GUARDED_BY(mu_) = 0;
  bool batch_full_ ABSL_GUARDED_BY(mu_) = false;  // more may follow at once
};

namespace {
grpc::Status Cancelled() { return grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled"); }
grpc::Status ClientGone() { return grpc::Status(grpc::StatusCode::CANCELLED, "client went away"); }
}  // namespace

bool WatchHub::Watch::MarkDirty() {
  absl::MutexLock lock(&mu_);
  dirty_ = true;
  if (phase_ != Phase::kIdle) return false;
  phase_ = Phase::kReading;
  return true;
}

WatchHub::Watch::Cursor WatchHub::Watch::Begin() {
  absl::MutexLock lock(&mu_);
  Cursor c;
  c.cancelled = cancelled_;
  c.first = !checked_;
  c.after = after_;
  dirty_ = false;
  checked_ = true;
  return c;
}

void WatchHub::Watch::Read(const Cursor& cursor, Coordinator& coordinator, ReadCache& cache) {
  if (cursor.cancelled) return FinishWith(Cancelled());
  if (cursor.first) {
    absl::StatusOr<distill::v1::Job> job = coordinator.Get(id_);
    if (!job.ok()) return FinishWith(ToGrpcStatus(job.status()));
  }
  absl::StatusOr<std::shared_ptr<const Batch>> batch = cache.Events(id_, cursor.after);
  if (!batch.ok()) return FinishWith(ToGrpcStatus(batch.status()));
  if ((*batch)->empty()) {
    // Resumed past the terminal event, or the job just ended: read again
    // after seeing it ended, so that its terminal event is not skipped.
    absl::StatusOr<distill::v1::Job> job = coordinator.Get(id_);
    if (!job.ok()) return FinishWith(ToGrpcStatus(job.status()));  // deleted meanwhile
    if (IsTerminal(job->state())) {
      absl::StatusOr<Batch> last = coordinator.Events(id_, cursor.after, kWatchBatch);
      if (!last.ok()) return FinishWith(ToGrpcStatus(last.status()));
      if (last->empty()) return FinishWith(grpc::Status::OK);
      *batch = std::make_shared<const Batch>(std::move(*last));
    }
  }
  Step step;
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_) {
      phase_ = Phase::kFinished;
      step = Finished(Cancelled());
    } else if ((*batch)->empty()) {
      batch_full_ = false;  // read on only if the job changed since Begin()
      step = NothingNewLocked();
    } else {
      step = TakeLocked(*std::move(batch));
    }
  }
  Do(step);
}

WatchHub::Watch::Step WatchHub::Watch::TakeLocked(std::shared_ptr<const Batch> batch) {
  const Batch& b = *batch;
  end_ = b.size();
  for (size_t i = 0; i < b.size(); ++i) {
    if (IsTerminalEvent(b[i])) {
      end_ = i + 1;
      break;
    }
  }
  batch_full_ = end_ == b.size() && b.size() >= static_cast<size_t>(kWatchBatch);
  after_ = b[end_ - 1].sequence();
  next_ = 0;
  batch_ = std::move(batch);
  phase_ = Phase::kWriting;
  return {Step::kWrite, &(*batch_)[0], grpc::Status::OK};
}

WatchHub::Watch::Step WatchHub::Watch::NothingNewLocked() {
  batch_.reset();
  if (dirty_ || batch_full_) {
    phase_ = Phase::kReading;
    return {Step::kQueue, nullptr, grpc::Status::OK};
  }
  phase_ = Phase::kIdle;
  return {};
}

void WatchHub::Watch::OnWriteDone(bool ok) {
  Step step;
  {
    absl::MutexLock lock(&mu_);
    if (!ok || cancelled_) {
      phase_ = Phase::kFinished;
      step = Finished(ok ? Cancelled() : ClientGone());
    } else if (IsTerminalEvent((*batch_)[next_])) {
      phase_ = Phase::kFinished;
      step = Finished(grpc::Status::OK);
    } else if (++next_ < end_) {
      step = {Step::kWrite, &(*batch_)[next_], grpc::Status::OK};
    } else {
      step = NothingNewLocked();  // the batch is sent: read on if anything is new
    }
  }
  Do(step);
}

void WatchHub::Watch::OnCancel() {
  Step step;
  {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    // Otherwise the hub's thread or the write in flight sees cancelled_.
    if (phase_ == Phase::kIdle) {
      phase_ = Phase::kFinished;
      step = Finished(Cancelled());
    }
  }
  Do(step);
}

void WatchHub::Watch::FinishWith(grpc::Status status) {
  {
    absl::MutexLock lock(&mu_);
    phase_ = Phase::kFinished;
  }
  Finish(std::move(status));
}

void WatchHub::Watch::Do(const Step& step) {
  switch (step.what) {
    case Step::kNothing:
      break;
    case Step::kWrite:
      StartWrite(step.event);
      break;
    case Step::kFinish:
      Finish(step.status);
      break;
    case Step::kQueue:
      hub_->Enqueue(shared_from_this());
      break;
  }
}

WatchHub::WatchHub(Coordinator* coordinator, int max_watchers, Metrics* metrics)
    : coordinator_(coordinator), max_watchers_(max_watchers), metrics_(metrics) {
  coordinator_->SetEventListener([this](const std::string& id) { OnJobEvent(id); });
  thread_ = std::thread([this] { Loop(); });
}

WatchHub::~WatchHub() {
  coordinator_->SetEventListener(nullptr);
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  ready_cv_.SignalAll();
  thread_.join();
}

absl::StatusOr<grpc::ServerWriteReactor<JobEvent>*> WatchHub::Open(
    const distill::v1::WatchJobRequest& request, absl::Time start) {
  auto w = std::make_shared<Watch>(this, request.id(),
                                   std::max<int64_t>(0, request.after_sequence()), start);
  absl::MutexLock lock(&mu_);
  if (open_ >= max_watchers_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the coordinator serves at most ", max_watchers_,
                     " WatchJob streams at once (--max-watchers); retry later"));
  }
  ++open_;
  // Registered before its first read (Note [Watch fan-out]).
  by_job_[w->id()].push_back(w);
  ready_.push_back(w);
  ready_cv_.Signal();
  return w.get();
}

void WatchHub::OnJobEvent(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = by_job_.find(id);
  if (it == by_job_.end()) return;
  bool queued = false;
  for (const std::shared_ptr<Watch>& w : it->second) {
    if (w->MarkDirty()) {
      ready_.push_back(w);
      queued = true;
    }
  }
  if (queued) ready_cv_.Signal();
}

void WatchHub::Enqueue(std::shared_ptr<Watch> w) {
  absl::MutexLock lock(&mu_);
  ready_.push_back(std::move(w));
  ready_cv_.Signal();
}

void WatchHub::Remove(Watch* w) {
  std::shared_ptr<Watch> last;  // released after mu_: it may delete *w
  {
    absl::MutexLock lock(&mu_);
    auto it = by_job_.find(w->id());
    if (it != by_job_.end()) {
      std::vector<std::shared_ptr<Watch>>& v = it->second;
      auto pos = std::find_if(v.begin(), v.end(), [w](const auto& p) { return p.get() == w; });
      if (pos != v.end()) {
        last = std::move(*pos);
        v.erase(pos);
        --open_;
      }
      if (v.empty()) by_job_.erase(it);
    }
  }
  if (metrics_ != nullptr)
    metrics_->ObserveRpc("WatchJob", absl::ToDoubleSeconds(absl::Now() - w->start()));
}

void WatchHub::Loop() {
  for (;;) {
    std::deque<std::shared_ptr<Watch>> pass;
    {
      absl::MutexLock lock(&mu_);
      while (!stop_ && ready_.empty()) ready_cv_.Wait(&mu_);
      if (stop_) return;
      pass.swap(ready_);
    }
    std::vector<Watch::Cursor> cursors;
    cursors.reserve(pass.size());
    for (const std::shared_ptr<Watch>& w : pass) cursors.push_back(w->Begin());
    ReadCache cache(coordinator_);
    for (size_t i = 0; i < pass.size(); ++i) pass[i]->Read(cursors[i], *coordinator_, cache);
  }
}

}  // namespace distill::coordinator
