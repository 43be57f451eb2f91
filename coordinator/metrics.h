// Metrics: the coordinator's Prometheus series (docs/metrics.md): its own
// (jobs by state, queue, submissions, starts, ends, failures, retries, RPC
// latency, store commits, build and job info) and every running job's worker
// series, from the progress reports of all its ranks (common::WorkerMetrics).
// Owns the registry that an Exposer serves on /metrics. Thread-safe.
#ifndef DISTILL_COORDINATOR_METRICS_H_
#define DISTILL_COORDINATOR_METRICS_H_

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/worker_metrics.h"
#include "distill/v1/coordinator.pb.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace distill::coordinator {

class Metrics {
 public:
  Metrics();

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // Jobs per state (every state is exported, 0 included) and queue depth.
  void SetJobCounts(const std::map<distill::v1::JobState, int>& counts);
  void OnSubmit();
  // An attempt was launched (or a running one adopted, `launched` false):
  // the job's distill_job_info appears.
  void OnStart(const distill::v1::Job& job, bool launched);
  // A job reached a terminal state.
  void OnFinish(distill::v1::JobState state);
  void OnFailure(distill::v1::FailureReason reason);
  void OnRetry(distill::v1::FailureReason reason);
  // A rank's report: its heartbeat time, and its progress when it has one.
  void OnReport(const distill::v1::ProgressReport& report, double unix_seconds);
  // Drops a job's per-job series (its attempt ended).
  void ForgetJob(const std::string& job_id);
  // Server-side duration of one RPC, by method name ("SubmitJob").
  void ObserveRpc(const std::string& method, double seconds);
  // Duration of one job-store commit.
  void ObserveCommit(double seconds);

  // The exposition text, as /metrics serves it (for tests and logs).
  std::string Text() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  common::WorkerMetrics workers_;
  prometheus::Family<prometheus::Gauge>& jobs_;
  prometheus::Family<prometheus::Gauge>& queue_depth_;
  prometheus::Family<prometheus::Counter>& submissions_;
  prometheus::Family<prometheus::Counter>& started_;
  prometheus::Family<prometheus::Counter>& finished_;
  prometheus::Family<prometheus::Counter>& failures_;
  prometheus::Family<prometheus::Counter>& retries_;
  prometheus::Family<prometheus::Gauge>& build_info_;
  prometheus::Family<prometheus::Gauge>& job_info_;
  prometheus::Family<prometheus::Gauge>& last_report_;
  prometheus::Family<prometheus::Histogram>& rpc_duration_;
  prometheus::Family<prometheus::Histogram>& commit_duration_;

  absl::Mutex mu_;
  // A running job's own series (info, heartbeat per rank), to drop them.
  struct JobSeries {
    prometheus::Gauge* info = nullptr;
    std::map<int, prometheus::Gauge*> last_report;  // rank -> gauge
  };
  std::map<std::string, JobSeries> series_ ABSL_GUARDED_BY(mu_);
};

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_METRICS_H_
