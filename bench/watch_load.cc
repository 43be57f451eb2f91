#include "bench/watch_load.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace distill::bench {
namespace {
namespace v1 = distill::v1;

void AddAuth(const std::string& token, grpc::ClientContext* c, int seconds) {
  if (!token.empty()) c->AddMetadata("authorization", "Bearer " + token);
  c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

bool IsTerminalEvent(const v1::JobEvent& e) {
  const v1::JobState s = e.job().state();
  return e.kind() == v1::JobEvent::STATE_CHANGED &&
         (s == v1::SUCCEEDED || s == v1::FAILED || s == v1::CANCELLED);
}

}  // namespace

void Countdown::Done() {
  std::lock_guard<std::mutex> lock(mu_);
  if (--n_ == 0) cv_.notify_all();
}

void Countdown::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return n_ <= 0; });
}

bool Countdown::WaitFor(int seconds) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, std::chrono::seconds(seconds), [&] { return n_ <= 0; });
}

bool ServerSampler::Read(int64_t* threads, int64_t* rss_kib) const {
  std::ifstream in(absl::StrCat("/proc/", pid_, "/status"));
  std::string line;
  bool got_threads = false, got_rss = false;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string key;
    fields >> key;
    if (key == "Threads:") got_threads = static_cast<bool>(fields >> *threads);
    if (key == "VmRSS:") got_rss = static_cast<bool>(fields >> *rss_kib);
  }
  return got_threads && got_rss;
}

void ServerSampler::Start() {
  thread_ = std::thread([this] {
    while (!stop_) {
      int64_t threads = 0, rss = 0;
      if (Read(&threads, &rss)) {
        max_threads_ = std::max<int64_t>(max_threads_, threads);
        max_rss_kib_ = std::max<int64_t>(max_rss_kib_, rss);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
}

void ServerSampler::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

// One WatchJob stream: keeps the sequence numbers it received.
class WatchLoad::Watcher : public grpc::ClientReadReactor<v1::JobEvent> {
 public:
  Watcher(v1::Coordinator::Stub* stub, const std::string& token, std::string job_id,
          Countdown* first, Countdown* done)
      : job_id_(std::move(job_id)), first_(first), done_(done) {
    AddAuth(token, &ctx_, 3600);
    request_.set_id(job_id_);
    stub->async()->WatchJob(&ctx_, &request_, this);
    StartRead(&event_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    if (sequences_.empty()) first_->Done();
    sequences_.push_back(event_.sequence());
    terminal_ = IsTerminalEvent(event_);
    StartRead(&event_);
  }
  void OnDone(const grpc::Status& s) override {
    status_ = s;
    if (sequences_.empty()) first_->Done();  // so that Open() does not wait for it
    done_->Done();
  }

  const std::string job_id_;
  std::vector<int64_t> sequences_;
  bool terminal_ = false;  // the last event was the terminal one
  grpc::Status status_;

 private:
  Countdown* const first_;
  Countdown* const done_;
  grpc::ClientContext ctx_;
  v1::WatchJobRequest request_;
  v1::JobEvent event_;
};

WatchLoad::WatchLoad(WatchOptions o, const std::string& address) : o_(std::move(o)) {
  control_ =
      v1::Coordinator::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  const int channels = o_.channels > 0 ? o_.channels : o_.jobs;
  for (int c = 0; c < channels; ++c) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection of its own
    channels_.push_back(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
    stubs_.push_back(v1::Coordinator::NewStub(channels_.back()));
  }
}

WatchLoad::~WatchLoad() {
  stop_reports_ = true;
  if (reporter_.joinable()) reporter_.join();
}

std::string WatchLoad::SubmitAndStart() {
  for (int j = 0; j < o_.jobs; ++j) {
    v1::SubmitJobRequest req;
    v1::JobSpec* spec = req.mutable_spec();
    spec->set_type(v1::FINETUNE);
    spec->set_name(absl::StrCat("watched-", j));
    spec->set_init(o_.spec_dir + "/config.json");
    spec->mutable_data()->add_train(o_.spec_dir + "/train.bin");
    spec->mutable_data()->set_seq_len(16);
    spec->set_output(absl::StrCat(o_.spec_dir, "/out/watched-", j));
    req.set_priority(10);  // ahead of anything queued
    grpc::ClientContext c;
    AddAuth(o_.token, &c, 30);
    v1::Job job;
    grpc::Status s = control_->SubmitJob(&c, req, &job);
    if (!s.ok()) return absl::StrCat("SubmitJob: ", s.error_message());
    job_ids_.push_back(job.id());
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (const std::string& id : job_ids_) {
    for (;;) {
      grpc::ClientContext c;
      AddAuth(o_.token, &c, 30);
      v1::GetJobRequest req;
      req.set_id(id);
      v1::Job job;
      grpc::Status s = control_->GetJob(&c, req, &job);
      if (!s.ok()) return absl::StrCat("GetJob: ", s.error_message());
      if (job.state() == v1::STARTING || job.state() == v1::RUNNING) {
        attempts_.push_back(job.attempt());
        break;
      }
      if (std::chrono::steady_clock::now() > deadline)
        return absl::StrCat("job ", id, " did not start (", v1::JobState_Name(job.state()),
                            "): the coordinator needs a free slot per watched job");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return "";
}

std::string WatchLoad::Open() {
  if (std::string error = SubmitAndStart(); !error.empty()) return error;
  first_ = std::make_unique<Countdown>(o_.watchers);
  done_ = std::make_unique<Countdown>(o_.watchers);
  for (int w = 0; w < o_.watchers; ++w) {
    watchers_.push_back(std::make_unique<Watcher>(stubs_[w % stubs_.size()].get(), o_.token,
                                                  job_ids_[w % job_ids_.size()], first_.get(),
                                                  done_.get()));
  }
  if (!first_->WaitFor(120)) return "not every stream got its first event within 120 s";
  return "";
}

void WatchLoad::StartReports() {
  reporter_ = std::thread([this] { ReportLoop(); });
}

// Each job's rank 0 on a ReportProgress stream of its own, as a real rank.
void WatchLoad::ReportLoop() {
  struct Stream {
    grpc::ClientContext ctx;
    v1::ReportProgressResponse response;
    std::unique_ptr<grpc::ClientWriter<v1::ProgressReport>> writer;
  };
  std::vector<std::unique_ptr<Stream>> streams;
  for (size_t j = 0; j < job_ids_.size(); ++j) {
    auto s = std::make_unique<Stream>();
    AddAuth(o_.token, &s->ctx, 3600);
    s->writer = control_->ReportProgress(&s->ctx, &s->response);
    streams.push_back(std::move(s));
  }
  for (int64_t step = 1; !stop_reports_; ++step) {
    for (size_t j = 0; j < job_ids_.size(); ++j) {
      v1::ProgressReport r;
      r.set_job_id(job_ids_[j]);
      r.set_rank(0);
      r.set_attempt(attempts_[j]);
      r.mutable_progress()->set_step(step);
      r.mutable_progress()->set_total_steps(1000000);
      r.mutable_progress()->set_loss(1.0f / static_cast<float>(step));
      if (streams[j]->writer->Write(r)) ++reports_;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(o_.report_ms));
  }
  for (auto& s : streams) {
    s->writer->WritesDone();
    s->writer->Finish();
  }
}

bool WatchLoad::FinishAndCheck() {
  stop_reports_ = true;
  if (reporter_.joinable()) reporter_.join();
  for (const std::string& id : job_ids_) {
    grpc::ClientContext c;
    AddAuth(o_.token, &c, 30);
    v1::CancelJobRequest req;
    req.set_id(id);
    v1::Job job;
    if (grpc::Status s = control_->CancelJob(&c, req, &job); !s.ok())
      std::cout << "CancelJob " << id << ": " << s.error_message() << "\n";
  }
  if (!done_->WaitFor(120)) {
    std::cout << "FAIL: not every WatchJob stream ended within 120 s of the cancels\n";
    return false;
  }
  // Each job's whole event list, read afresh once it has ended.
  std::map<std::string, std::vector<int64_t>> want;
  for (const std::string& id : job_ids_) {
    grpc::ClientContext c;
    AddAuth(o_.token, &c, 60);
    v1::WatchJobRequest req;
    req.set_id(id);
    auto reader = control_->WatchJob(&c, req);
    v1::JobEvent e;
    while (reader->Read(&e)) want[id].push_back(e.sequence());
    reader->Finish();
  }
  int bad = 0;
  size_t received = 0, min_events = SIZE_MAX, max_events = 0;
  std::string first_bad;
  for (const auto& w : watchers_) {
    received += w->sequences_.size();
    min_events = std::min(min_events, want[w->job_id_].size());
    max_events = std::max(max_events, want[w->job_id_].size());
    if (w->status_.ok() && w->terminal_ && w->sequences_ == want[w->job_id_]) continue;
    if (bad++ == 0) {
      first_bad = absl::StrFormat("job %s: status %d %s, %d events of %d, terminal %d", w->job_id_,
                                  w->status_.error_code(), w->status_.error_message(),
                                  w->sequences_.size(), want[w->job_id_].size(), w->terminal_);
    }
  }
  std::cout << absl::StrFormat(
      "WatchJob: %d streams on %d jobs over %d connections, %d progress reports; %d events "
      "received (%d-%d per job); %d streams incomplete or out of order\n",
      watchers_.size(), job_ids_.size(), stubs_.size(), reports_, received, min_events, max_events,
      bad);
  if (bad > 0) std::cout << "  first: " << first_bad << "\n";
  return bad == 0;
}

}  // namespace distill::bench
