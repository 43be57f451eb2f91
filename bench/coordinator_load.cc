// coordinator_load: many concurrent gRPC clients submitting and listing jobs
// against a running distill-coordinator. Reports throughput and p50/p99/max
// latency per RPC, fails (exit 1) on any RPC error or on a job missing from
// ListJobs afterwards. bench/run_coordinator_load.sh starts a coordinator
// whose single slot is held by a sleeping job, so the submitted jobs only
// queue and nothing is launched. The clients are closed loops on gRPC's
// callback API (no thread per client), so the load client's own CPU stays
// small next to the server's on a shared machine.
//
//   coordinator_load --coordinator ADDR [--clients 100] [--submits 10]
//                    [--lists 10] [--page-size 50] [--token T] [--spec-dir DIR]
//                    [--trace FILE]  (one line per call: rpc client start_ms latency_ms)
//                    [--server-pid PID]  (its threads and RSS from /proc/PID/status)
//                    [--watchers N --watch-jobs W [--watch-channels C] [--report-ms MS]]
// With --watchers, W jobs are started first (each needs a free slot) and N
// WatchJob streams stay open on them during the load, while each job's rank 0
// reports progress every MS ms (bench/watch_load.h); the run then also fails
// when a stream missed an event or saw one out of order.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/watch_load.h"
#include "distill/v1/coordinator.grpc.pb.h"
#include "google/protobuf/arena.h"

namespace {
namespace v1 = distill::v1;
using Clock = std::chrono::steady_clock;
using distill::bench::Countdown;

struct Options {
  std::string coordinator = "127.0.0.1:50051";
  int clients = 100;              // concurrent clients, each with its own channel (connection)
  int submits = 10;               // SubmitJob calls per client
  int lists = 10;                 // ListJobs calls per client (first page)
  int page_size = 50;             // ListJobs page size
  std::string token;              // bearer token, if the coordinator wants one
  std::string spec_dir = "/tmp";  // where the (never launched) jobs' files would be
  double p99_target_ms = 50;      // reported as met / missed
  std::string trace;              // file for one line per call: rpc client start_ms latency_ms
  int server_pid = 0;             // > 0: report this process's threads and RSS
  // WatchJob streams open during the load (none by default).
  distill::bench::WatchOptions watch;
};

struct Latencies {
  std::vector<double> ms;
  std::vector<Clock::time_point> starts;  // of each call in ms, for --trace
  int errors = 0;
  std::string first_error;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i =
      std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(v.size())));
  return v[i];
}

v1::JobSpec LoadSpec(const Options& o, int client, int i) {
  v1::JobSpec spec;
  spec.set_type(v1::FINETUNE);
  spec.set_name(absl::StrCat("load-", client, "-", i));
  spec.set_init(o.spec_dir + "/config.json");
  spec.mutable_data()->add_train(o.spec_dir + "/train.bin");
  spec.mutable_data()->set_seq_len(16);
  spec.mutable_train()->set_steps(1);
  spec.set_output(absl::StrCat(o.spec_dir, "/out/", client, "-", i));
  return spec;
}

void AddAuth(const Options& o, grpc::ClientContext* c) {
  if (!o.token.empty()) c->AddMetadata("authorization", "Bearer " + o.token);
  c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
}

void Record(Latencies& l, Clock::time_point start, const grpc::Status& s) {
  l.ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  l.starts.push_back(start);
  if (!s.ok()) {
    if (l.errors++ == 0) l.first_error = absl::StrCat(s.error_code(), ": ", s.error_message());
  }
}

// One closed-loop client: issues its next call from the completion of the
// previous one (gRPC's callback API), so 100 clients need no 100 threads and
// no polling; a latency is the time from issuing a call to its completion.
// Calls interleave SubmitJob and ListJobs, as a crowd of users would.
class LoadClient {
 public:
  LoadClient(const Options& o, int client, v1::Coordinator::Stub* stub, Latencies* submit,
             Latencies* list)
      : o_(o), client_(client), stub_(stub), submit_(submit), list_(list) {}

  void Start(Countdown* done) {
    done_ = done;
    Next();
  }

 private:
  void Next() {
    const int k = s_ + l_;
    if (k >= o_.submits + o_.lists) {
      done_->Done();
      return;
    }
    const bool do_submit = l_ >= o_.lists || (s_ < o_.submits && (k % 2 == 0));
    ctx_ = std::make_unique<grpc::ClientContext>();
    AddAuth(o_, ctx_.get());
    // The last call's messages go at once (gRPC is done with them); the
    // next ones, and all that parsing the answer allocates, live on the arena.
    arena_.Reset();
    if (do_submit) {
      auto* req = google::protobuf::Arena::CreateMessage<v1::SubmitJobRequest>(&arena_);
      *req->mutable_spec() = LoadSpec(o_, client_, s_);
      req->set_request_id(absl::StrCat("load-", client_, "-", s_));
      req->set_priority(s_ % 3);
      auto* job = google::protobuf::Arena::CreateMessage<v1::Job>(&arena_);
      start_ = Clock::now();
      stub_->async()->SubmitJob(ctx_.get(), req, job, [this](grpc::Status s) {
        Record(*submit_, start_, s);
        ++s_;
        Next();
      });
    } else {
      auto* req = google::protobuf::Arena::CreateMessage<v1::ListJobsRequest>(&arena_);
      req->set_page_size(o_.page_size);
      auto* resp = google::protobuf::Arena::CreateMessage<v1::ListJobsResponse>(&arena_);
      start_ = Clock::now();
      stub_->async()->ListJobs(ctx_.get(), req, resp, [this](grpc::Status s) {
        Record(*list_, start_, s);
        ++l_;
        Next();
      });
    }
  }

  const Options& o_;
  const int client_;
  v1::Coordinator::Stub* const stub_;
  Latencies* const submit_;
  Latencies* const list_;
  Countdown* done_ = nullptr;
  int s_ = 0, l_ = 0;  // calls completed
  std::unique_ptr<grpc::ClientContext> ctx_;
  Clock::time_point start_;
  google::protobuf::Arena arena_;  // the current call's messages
};

// Counts every job the coordinator lists (all pages).
int64_t CountJobs(const Options& o, v1::Coordinator::Stub& stub, std::string* error) {
  int64_t n = 0;
  v1::ListJobsRequest req;
  req.set_page_size(1000);
  for (;;) {
    grpc::ClientContext c;
    AddAuth(o, &c);
    v1::ListJobsResponse resp;
    grpc::Status s = stub.ListJobs(&c, req, &resp);
    if (!s.ok()) {
      *error = s.error_message();
      return -1;
    }
    n += resp.jobs_size();
    if (resp.next_page_token().empty()) return n;
    req.set_page_token(resp.next_page_token());
  }
}

bool ParseFlags(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) {
      std::cerr << "coordinator_load: " << a << " needs a value\n";
      return false;
    }
    const std::string v = argv[++i];
    bool ok = true;
    if (a == "--coordinator") {
      o.coordinator = v;
    } else if (a == "--clients") {
      ok = absl::SimpleAtoi(v, &o.clients);
    } else if (a == "--submits") {
      ok = absl::SimpleAtoi(v, &o.submits);
    } else if (a == "--lists") {
      ok = absl::SimpleAtoi(v, &o.lists);
    } else if (a == "--page-size") {
      ok = absl::SimpleAtoi(v, &o.page_size);
    } else if (a == "--token") {
      o.token = v;
    } else if (a == "--spec-dir") {
      o.spec_dir = v;
    } else if (a == "--trace") {
      o.trace = v;
    } else if (a == "--server-pid") {
      ok = absl::SimpleAtoi(v, &o.server_pid);
    } else if (a == "--watchers") {
      ok = absl::SimpleAtoi(v, &o.watch.watchers);
    } else if (a == "--watch-jobs") {
      ok = absl::SimpleAtoi(v, &o.watch.jobs) && o.watch.jobs > 0;
    } else if (a == "--watch-channels") {
      ok = absl::SimpleAtoi(v, &o.watch.channels);
    } else if (a == "--report-ms") {
      ok = absl::SimpleAtoi(v, &o.watch.report_ms) && o.watch.report_ms > 0;
    } else if (a == "--p99-target-ms") {
      ok = absl::SimpleAtod(v, &o.p99_target_ms);
    } else {
      std::cerr << "coordinator_load: unknown flag " << a << "\n";
      return false;
    }
    if (!ok) {
      std::cerr << "coordinator_load: bad value for " << a << ": " << v << "\n";
      return false;
    }
  }
  return true;
}

void PrintServer(const char* when, const distill::bench::ServerSampler& sampler) {
  int64_t threads = 0, rss_kib = 0;
  if (sampler.Read(&threads, &rss_kib)) {
    std::cout << absl::StrFormat("server %s: %d threads, RSS %.1f MiB\n", when, threads,
                                 rss_kib / 1024.0);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!ParseFlags(argc, argv, o)) return 2;

  auto control = v1::Coordinator::NewStub(
      grpc::CreateChannel(o.coordinator, grpc::InsecureChannelCredentials()));
  std::string error;
  const int64_t before = CountJobs(o, *control, &error);
  if (before < 0) {
    std::cerr << "coordinator_load: cannot list jobs: " << error << "\n";
    return 1;
  }
  o.watch.token = o.token;
  o.watch.spec_dir = o.spec_dir;
  std::unique_ptr<distill::bench::ServerSampler> sampler;
  if (o.server_pid > 0) {
    sampler = std::make_unique<distill::bench::ServerSampler>(o.server_pid);
    PrintServer("before the load", *sampler);
  }
  std::unique_ptr<distill::bench::WatchLoad> watch;
  if (o.watch.watchers > 0) {
    watch = std::make_unique<distill::bench::WatchLoad>(o.watch, o.coordinator);
    if (std::string e = watch->Open(); !e.empty()) {
      std::cerr << "coordinator_load: watchers: " << e << "\n";
      return 1;
    }
    if (sampler)
      PrintServer(absl::StrCat("with ", o.watch.watchers, " streams open").c_str(), *sampler);
  }

  // One channel per client: separate connections, as separate users have.
  // Connect them all before the clock starts so the numbers are per call.
  std::vector<std::unique_ptr<v1::Coordinator::Stub>> stubs;
  for (int c = 0; c < o.clients; ++c) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // no connection sharing between channels
    auto ch = grpc::CreateCustomChannel(o.coordinator, grpc::InsecureChannelCredentials(), args);
    ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10));
    stubs.push_back(v1::Coordinator::NewStub(ch));
  }

  std::vector<Latencies> submit(o.clients), list(o.clients);
  std::vector<std::unique_ptr<LoadClient>> clients;
  for (int c = 0; c < o.clients; ++c) {
    clients.push_back(std::make_unique<LoadClient>(o, c, stubs[c].get(), &submit[c], &list[c]));
  }
  Countdown done(o.clients);
  if (sampler) sampler->Start();
  if (watch) watch->StartReports();
  const auto t0 = Clock::now();
  for (auto& c : clients) c->Start(&done);
  done.Wait();
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  if (sampler) {
    sampler->Stop();
    std::cout << absl::StrFormat("server during the load: max %d threads, max RSS %.1f MiB\n",
                                 sampler->max_threads(), sampler->max_rss_kib() / 1024.0);
  }
  const bool watch_ok = !watch || watch->FinishAndCheck();

  int errors = 0;
  auto summarize = [&](const char* name, const std::vector<Latencies>& per_client) {
    Latencies all;
    for (const auto& l : per_client) {
      all.ms.insert(all.ms.end(), l.ms.begin(), l.ms.end());
      if (l.errors > 0 && all.first_error.empty()) all.first_error = l.first_error;
      all.errors += l.errors;
    }
    errors += all.errors;
    std::cout << absl::StrFormat(
        "%-9s %6d calls  %3d errors  %8.1f calls/s  p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms\n",
        name, all.ms.size(), all.errors, all.ms.size() / wall, Percentile(all.ms, 50),
        Percentile(all.ms, 99),
        all.ms.empty() ? 0.0 : *std::max_element(all.ms.begin(), all.ms.end()));
    if (all.errors > 0) std::cout << "  first error: " << all.first_error << "\n";
    return Percentile(all.ms, 99);
  };
  std::cout << absl::StrFormat(
      "%d clients x (%d SubmitJob + %d ListJobs page_size %d), %.2f s wall, %.1f calls/s total\n",
      o.clients, o.submits, o.lists, o.page_size, wall, o.clients * (o.submits + o.lists) / wall);
  const double submit_p99 = summarize("SubmitJob", submit);
  summarize("ListJobs", list);

  if (!o.trace.empty()) {
    std::ofstream out(o.trace);
    for (const auto& [name, per_client] : {std::pair{"SubmitJob", &submit}, {"ListJobs", &list}}) {
      for (int c = 0; c < o.clients; ++c) {
        const Latencies& l = (*per_client)[c];
        for (size_t i = 0; i < l.ms.size(); ++i) {
          out << absl::StrFormat(
              "%s %d %.3f %.3f\n", name, c,
              std::chrono::duration<double, std::milli>(l.starts[i] - t0).count(), l.ms[i]);
        }
      }
    }
  }

  const int64_t after = CountJobs(o, *control, &error);
  const int64_t want =
      before + static_cast<int64_t>(o.clients) * o.submits + (watch ? watch->jobs_submitted() : 0);
  std::cout << absl::StrFormat("jobs listed: %d before, %d after, %d expected\n", before, after,
                               want);
  std::cout << absl::StrFormat("p99 SubmitJob %.2f ms vs target %.0f ms: %s\n", submit_p99,
                               o.p99_target_ms, submit_p99 <= o.p99_target_ms ? "met" : "MISSED");
  if (errors > 0 || after != want || !watch_ok) {
    std::cout << "FAIL: " << errors << " errors, " << (want - after) << " jobs missing"
              << (watch_ok ? "" : ", WatchJob streams incomplete") << "\n";
    return 1;
  }
  return 0;
}
