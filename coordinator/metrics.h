// Metrics: the coordinator's Prometheus metrics (names distill_*, see
// metrics.cc for the list). Owns the registry that an Exposer serves on
// /metrics. Thread-safe.
#ifndef DISTILL_COORDINATOR_METRICS_H_
#define DISTILL_COORDINATOR_METRICS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "distill/v1/coordinator.pb.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace distill::coordinator {

class Metrics {
 public:
  Metrics();

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // Jobs per state (every state is exported, 0 included) and queue depth.
  void SetJobCounts(const std::map<distill::v1::JobState, int>& counts);
  void OnSubmit();
  void OnFailure(distill::v1::FailureReason reason);
  void OnRetry(distill::v1::FailureReason reason);
  // The latest progress of a running job.
  void OnProgress(const std::string& job_id, const distill::v1::Progress& p);
  // Drops a job's per-job series (when it ends).
  void ForgetJob(const std::string& job_id);

  // The exposition text, as /metrics serves it (for tests and logs).
  std::string Text() const;

 private:
  struct JobSeries {
    prometheus::Gauge* tokens_per_second = nullptr;
    prometheus::Gauge* step_seconds = nullptr;
    prometheus::Gauge* stream_bytes_per_token = nullptr;
    std::map<std::string, prometheus::Gauge*> loss;  // component -> gauge
  };

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Gauge>& jobs_;
  prometheus::Family<prometheus::Gauge>& queue_depth_;
  prometheus::Family<prometheus::Counter>& submissions_;
  prometheus::Family<prometheus::Counter>& failures_;
  prometheus::Family<prometheus::Counter>& retries_;
  prometheus::Family<prometheus::Gauge>& tokens_per_second_;
  prometheus::Family<prometheus::Gauge>& step_seconds_;
  prometheus::Family<prometheus::Gauge>& loss_;
  prometheus::Family<prometheus::Gauge>& stream_bytes_per_token_;

  absl::Mutex mu_;
  std::map<std::string, JobSeries> series_ ABSL_GUARDED_BY(mu_);
};

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_METRICS_H_
