// WorkerMetrics: the per-job, per-rank series of docs/metrics.md ("Worker
// series"), kept in a Prometheus registry from the Progress that ranks report.
// The coordinator feeds it every rank's reports; a worker started with
// --metrics-listen feeds it its own. One definition, so both expose the same
// names and labels. Thread-safe.
//
// Counters grow by the difference between a rank's successive RankTotals
// (which only grow within a process). A report from a new attempt, or totals
// that went down (a restarted process), start the rank over from zero. Job
// gauges (losses, eval, lr, ETA) come from rank 0, whose values are already
// the students' means.
#ifndef DISTILL_COMMON_WORKER_METRICS_H_
#define DISTILL_COMMON_WORKER_METRICS_H_

#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "distill/v1/coordinator.pb.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace distill::common {

// The upper bounds (seconds) of distill_step_duration_seconds' buckets;
// RankTotals.step_duration_counts has one count per bound plus one above.
const std::vector<double>& StepDurationBuckets();

// Adds one step of `seconds` to `totals`' duration histogram and sum.
void AddStepDuration(double seconds, distill::v1::RankTotals* totals);

class WorkerMetrics {
 public:
  // The families are added to `registry`, which must outlive this object.
  explicit WorkerMetrics(prometheus::Registry& registry);

  // A report of `rank` of `job_id`'s attempt `attempt`.
  void Observe(const std::string& job_id, int rank, int attempt, const distill::v1::Progress& p);
  // Drops every series of the job (it ended).
  void Forget(const std::string& job_id);

 private:
  using Labels = std::map<std::string, std::string>;
  struct RankState {
    int attempt = 0;
    distill::v1::RankTotals last;  // totals already counted
  };
  // The series a job created, each once, to remove them on Forget.
  struct Owned {
    std::set<std::pair<const void*, const void*>> keys;  // (family, metric)
    std::vector<std::function<void()>> removers;
  };
  // `family`'s series with `labels`, recorded as `job_id`'s.
  template <typename T>
  T& Series(const std::string& job_id, prometheus::Family<T>& family, const Labels& labels)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    T& m = family.Add(labels);
    Owned& owned = owned_[job_id];
    if (owned.keys.insert({&family, &m}).second) owned.removers.push_back([&family, &m] { family.Remove(&m); });
    return m;
  }

  void CountRank(const std::string& job_id, const Labels& labels, RankState& state, int attempt,
                 const distill::v1::Progress& p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetRankGauges(const std::string& job_id, const Labels& labels,
                     const distill::v1::Progress& p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetJobGauges(const std::string& job_id, const distill::v1::Progress& p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  prometheus::Family<prometheus::Counter>& tokens_;
  prometheus::Family<prometheus::Counter>& steps_;
  prometheus::Family<prometheus::Histogram>& step_duration_;
  prometheus::Family<prometheus::Counter>& phase_seconds_;
  prometheus::Family<prometheus::Counter>& stream_bytes_;
  prometheus::Family<prometheus::Gauge>& loss_;
  prometheus::Family<prometheus::Gauge>& eval_loss_;
  prometheus::Family<prometheus::Gauge>& eval_kl_;
  prometheus::Family<prometheus::Gauge>& eval_top1_;
  prometheus::Family<prometheus::Gauge>& lr_;
  prometheus::Family<prometheus::Gauge>& grad_norm_;
  prometheus::Family<prometheus::Gauge>& eta_;
  prometheus::Family<prometheus::Gauge>& progress_;
  prometheus::Family<prometheus::Gauge>& mfu_;
  prometheus::Family<prometheus::Gauge>& gpu_memory_;
  prometheus::Family<prometheus::Gauge>& host_memory_;

  absl::Mutex mu_;
  std::map<std::pair<std::string, int>, RankState> ranks_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Owned> owned_ ABSL_GUARDED_BY(mu_);  // job -> its series
};

}  // namespace distill::common

#endif  // DISTILL_COMMON_WORKER_METRICS_H_
