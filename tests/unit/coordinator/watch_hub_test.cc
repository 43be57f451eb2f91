// WatchJob streams (WatchHub, Note [Watch fan-out]) against a real server on
// loopback: many streams at once on few threads, each seeing every event of
// its job in order; the --max-watchers cap; a cancelled stream frees its
// place. The jobs only queue (the one slot is held by a job that sleeps), so
// their events are "submitted" and, once cancelled, the terminal one.
#include "coordinator/watch_hub.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "coordinator/server.h"
#include "distill/v1/coordinator.grpc.pb.h"

namespace distill::coordinator {
namespace {

using distill::v1::Job;
using distill::v1::JobEvent;

// Every job runs until SIGTERM.
constexpr char kWorkerScript[] =
    "#!/bin/sh\ntrap 'exit 130' TERM\nwhile true; do sleep 0.05; done\n";

// The threads of this process (/proc/self/status).
int Threads() {
  std::ifstream in("/proc/self/status");
  std::string key;
  int n = -1;
  while (in >> key) {
    if (key == "Threads:" && (in >> n)) return n;
  }
  return n;
}

// Counts down to zero; Wait() gives up after a minute (a failed test, not a hang).
class Latch {
 public:
  explicit Latch(int n) : n_(n) {}
  void Done() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--n_ == 0) cv_.notify_all();
  }
  bool Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(60), [&] { return n_ <= 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_;
};

// One client stream on gRPC's callback API (no client thread per stream).
class Watcher : public grpc::ClientReadReactor<JobEvent> {
 public:
  Watcher(distill::v1::Coordinator::Stub* stub, const std::string& id, Latch* first, Latch* done)
      : first_(first), done_(done) {
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    request_.set_id(id);
    stub->async()->WatchJob(&ctx_, &request_, this);
    StartRead(&event_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    sequences.push_back(event_.sequence());
    if (sequences.size() == 1) {
      got_event = true;
      first_->Done();
    }
    StartRead(&event_);
  }
  void OnDone(const grpc::Status& s) override {
    status = s;
    if (sequences.empty()) first_->Done();
    done_->Done();
  }
  void Cancel() { ctx_.TryCancel(); }

  std::vector<int64_t> sequences;  // read after `done`
  grpc::Status status;
  std::atomic<bool> got_event{false};  // read after `first`

 private:
  Latch* const first_;
  Latch* const done_;
  grpc::ClientContext ctx_;
  distill::v1::WatchJobRequest request_;
  JobEvent event_;
};

class WatchHubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/distill_watch_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::ofstream(dir_ + "/worker.sh") << kWorkerScript;
    chmod((dir_ + "/worker.sh").c_str(), 0755);
  }
  void TearDown() override {
    // No script outlives the test: the server leaves running jobs alone.
    for (const std::string& id : ids_) Cancel(id);
    for (const std::string& id : ids_) WaitEnded(id);
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  void StartServer(int max_watchers) {
    ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.metrics_listen = "";
    o.state_dir = dir_ + "/var";
    o.slots = 1;
    o.mpirun.worker_bin = dir_ + "/worker.sh";
    o.coordinator.tick = absl::Milliseconds(50);
    o.service.max_watchers = max_watchers;
    auto s = Server::Start(std::move(o));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    stub_ = distill::v1::Coordinator::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials()));
  }
  std::string Submit(const std::string& name) {
    distill::v1::SubmitJobRequest r;
    auto* s = r.mutable_spec();
    s->set_type(distill::v1::FINETUNE);
    s->set_name(name);
    s->set_init(dir_ + "/config.json");
    s->mutable_data()->add_train(dir_ + "/train.bin");
    s->set_output(dir_ + "/out/" + name);
    grpc::ClientContext ctx;
    Job job;
    grpc::Status st = stub_->SubmitJob(&ctx, r, &job);
    EXPECT_TRUE(st.ok()) << st.error_message();
    ids_.push_back(job.id());
    return job.id();
  }
  void Cancel(const std::string& id) {
    grpc::ClientContext ctx;
    distill::v1::CancelJobRequest r;
    r.set_id(id);
    r.set_force(true);
    Job job;
    stub_->CancelJob(&ctx, r, &job);
  }
  void WaitEnded(const std::string& id) {
    for (int i = 0; i < 400; ++i) {
      grpc::ClientContext ctx;
      distill::v1::GetJobRequest r;
      r.set_id(id);
      Job job;
      if (stub_->GetJob(&ctx, r, &job).ok() && IsTerminal(job.state())) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "job " << id << " did not end";
  }
  // A blocking watch from `after` to the end: the sequences and the status.
  std::vector<int64_t> WatchAll(const std::string& id, grpc::Status* st) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    distill::v1::WatchJobRequest r;
    r.set_id(id);
    auto reader = stub_->WatchJob(&ctx, r);
    std::vector<int64_t> seqs;
    JobEvent e;
    while (reader->Read(&e)) seqs.push_back(e.sequence());
    *st = reader->Finish();
    return seqs;
  }

  std::string dir_;
  std::vector<std::string> ids_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<distill::v1::Coordinator::Stub> stub_;
};

TEST_F(WatchHubTest, ManyWatchesNeedNoThreadEachAndSeeEveryEventInOrder) {
  constexpr int kJobs = 5, kWatches = 200;
  StartServer(1000);
  for (int j = 0; j < kJobs; ++j) Submit("job" + std::to_string(j));  // 1 runs, 4 queue
  const int threads_before = Threads();
  Latch first(kWatches), done(kWatches);
  std::vector<std::unique_ptr<Watcher>> watchers;
  for (int w = 0; w < kWatches; ++w)
    watchers.push_back(std::make_unique<Watcher>(stub_.get(), ids_[w % kJobs], &first, &done));
  ASSERT_TRUE(first.Wait()) << "not every stream got its first event";
  // The old thread-per-stream server needed kWatches more threads here; the
  // bound leaves room for gRPC's own pools on either side of the connection.
  EXPECT_LT(Threads() - threads_before, 60) << "threads before: " << threads_before;

  for (const std::string& id : ids_) Cancel(id);
  ASSERT_TRUE(done.Wait()) << "not every stream ended after its job's terminal event";
  for (int j = 0; j < kJobs; ++j) {
    grpc::Status st;
    const std::vector<int64_t> want = WatchAll(ids_[j], &st);  // resumes from 0 after the end
    ASSERT_TRUE(st.ok()) << st.error_message();
    ASSERT_GE(want.size(), 2u);  // submitted ... CANCELLED
    for (int w = j; w < kWatches; w += kJobs) {
      EXPECT_TRUE(watchers[w]->status.ok()) << watchers[w]->status.error_message();
      EXPECT_EQ(watchers[w]->sequences, want) << "watch " << w << " of job " << ids_[j];
    }
  }
}

TEST_F(WatchHubTest, WatchesBeyondTheCapAreResourceExhausted) {
  StartServer(2);
  Submit("holds-the-slot");
  const std::string queued = Submit("queued");
  Latch first(2), done(2);
  Watcher a(stub_.get(), queued, &first, &done), b(stub_.get(), queued, &first, &done);
  ASSERT_TRUE(first.Wait());
  grpc::Status st;
  EXPECT_TRUE(WatchAll(queued, &st).empty());
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();

  Cancel(queued);
  ASSERT_TRUE(done.Wait());
  EXPECT_TRUE(a.status.ok()) << a.status.error_message();
  EXPECT_EQ(a.sequences, b.sequences);
  EXPECT_EQ(a.sequences, (std::vector<int64_t>{1, 2}));  // submitted, CANCELLED
}

TEST_F(WatchHubTest, ACancelledWatchFreesItsPlace) {
  StartServer(1);
  Submit("holds-the-slot");
  const std::string queued = Submit("queued");
  Latch first(1), done(1);
  Watcher a(stub_.get(), queued, &first, &done);
  ASSERT_TRUE(first.Wait());
  a.Cancel();
  ASSERT_TRUE(done.Wait());
  EXPECT_EQ(a.status.error_code(), grpc::StatusCode::CANCELLED);
  // The server lets go of the stream soon after the client does; until then
  // a new watch is refused.
  struct Probe {
    Latch first{1}, done{1};
    std::unique_ptr<Watcher> watcher;
  };
  std::unique_ptr<Probe> p;
  for (int i = 0; i < 600; ++i) {
    p = std::make_unique<Probe>();
    p->watcher = std::make_unique<Watcher>(stub_.get(), queued, &p->first, &p->done);
    ASSERT_TRUE(p->first.Wait());
    if (p->watcher->got_event) break;
    ASSERT_TRUE(p->done.Wait());
    ASSERT_EQ(p->watcher->status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << p->watcher->status.error_message();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(p->watcher->got_event) << "the cancelled stream kept its place";
  Cancel(queued);
  ASSERT_TRUE(p->done.Wait());
  EXPECT_TRUE(p->watcher->status.ok()) << p->watcher->status.error_message();
}

}  // namespace
}  // namespace distill::coordinator
