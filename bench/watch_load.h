// The WatchJob part of coordinator_load: W jobs that run (their "worker"
// sleeps) and report progress, N WatchJob streams spread over them, all open
// while the submitters run; afterwards the jobs are cancelled and every
// stream must have seen exactly its job's events, in order, ending with the
// terminal one. Also samples the server's threads and RSS from
// /proc/PID/status. Clients use gRPC's callback API (no thread per stream).
#ifndef DISTILL_BENCH_WATCH_LOAD_H_
#define DISTILL_BENCH_WATCH_LOAD_H_

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "distill/v1/coordinator.grpc.pb.h"

namespace distill::bench {

// Waits for n Done() calls.
class Countdown {
 public:
  explicit Countdown(int n) : n_(n) {}
  void Done();
  void Wait();
  // Wait(), at most `seconds`; whether the count reached 0.
  bool WaitFor(int seconds);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_;
};

struct WatchOptions {
  int watchers = 0;      // concurrent WatchJob streams; 0 = no watch load
  int jobs = 10;         // watched jobs (each needs a free slot: they run)
  int channels = 0;      // connections the streams share; 0 = one per job
  int report_ms = 100;   // each watched job reports progress this often
  std::string token;     // bearer token, if the coordinator wants one
  std::string spec_dir;  // where the jobs' (never read) files would be
};

// The server's /proc/PID/status, sampled every 50 ms on a thread of its own.
class ServerSampler {
 public:
  explicit ServerSampler(int pid) : pid_(pid) {}
  ~ServerSampler() { Stop(); }
  // One reading now: threads and RSS (KiB); false when unreadable.
  bool Read(int64_t* threads, int64_t* rss_kib) const;
  void Start();
  void Stop();
  int64_t max_threads() const { return max_threads_; }
  int64_t max_rss_kib() const { return max_rss_kib_; }

 private:
  const int pid_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> max_threads_{0}, max_rss_kib_{0};
  std::thread thread_;
};

class WatchLoad {
 public:
  WatchLoad(WatchOptions o, const std::string& address);
  ~WatchLoad();

  // Submits the jobs and waits until they run; then opens the streams and
  // waits until each has its first event. Returns an error message or "".
  std::string Open();
  // Progress reports from every job's rank 0 until FinishAndCheck().
  void StartReports();
  // Stops the reports, cancels the jobs, waits for every stream to end and
  // checks what each saw against its job's full event list; prints a summary.
  // Whether everything matched.
  bool FinishAndCheck();
  int jobs_submitted() const { return static_cast<int>(job_ids_.size()); }

  class Watcher;

 private:
  std::string SubmitAndStart();
  void ReportLoop();

  const WatchOptions o_;
  std::unique_ptr<distill::v1::Coordinator::Stub> control_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<distill::v1::Coordinator::Stub>> stubs_;
  std::vector<std::string> job_ids_;
  std::vector<int> attempts_;
  std::vector<std::unique_ptr<Watcher>> watchers_;
  std::unique_ptr<Countdown> first_, done_;
  std::atomic<bool> stop_reports_{false};
  std::thread reporter_;
  int64_t reports_ = 0;
};

}  // namespace distill::bench

#endif  // DISTILL_BENCH_WATCH_LOAD_H_
