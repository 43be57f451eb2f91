#include "coordinator/metrics.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/plan.h"
#include "common/version.h"
#include "prometheus/text_serializer.h"

namespace distill::coordinator {
namespace {

using distill::v1::FailureReason;
using distill::v1::JobState;

std::string Lower(const std::string& s) { return absl::AsciiStrToLower(s); }

template <typename T>
prometheus::Family<T>& Add(prometheus::Registry& r, const char* name, const char* help) {
  return prometheus::detail::Builder<T>().Name(name).Help(help).Register(r);
}

// Latency buckets (seconds): an RPC takes about a millisecond, a store
// commit an fsync; slow ones are what a dashboard must show.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBounds = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return kBounds;
}

// distill_job_info's labels: name, type (distill / finetune), method (lora / full).
std::map<std::string, std::string> InfoLabels(const distill::v1::Job& job) {
  const common::JobPlan plan = common::MakePlan(job.spec());
  return {{"job_id", job.id()},
          {"name", job.spec().name()},
          {"type", Lower(distill::v1::JobType_Name(plan.type))},
          {"method", plan.student.lora ? "lora" : "full"}};
}

}  // namespace

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      workers_(*registry_),
      jobs_(Add<prometheus::Gauge>(*registry_, "distill_jobs", "Jobs by state.")),
      queue_depth_(Add<prometheus::Gauge>(*registry_, "distill_queue_depth", "Jobs waiting for slots (QUEUED).")),
      submissions_(Add<prometheus::Counter>(*registry_, "distill_job_submissions_total",
                                            "Jobs accepted by SubmitJob (idempotent retries not counted).")),
      started_(Add<prometheus::Counter>(*registry_, "distill_jobs_started_total",
                                        "Attempts launched (first launches and retries).")),
      finished_(Add<prometheus::Counter>(*registry_, "distill_jobs_finished_total",
                                         "Jobs that reached a terminal state, by state.")),
      failures_(Add<prometheus::Counter>(*registry_, "distill_job_failures_total",
                                         "Jobs that ended FAILED, by reason.")),
      retries_(Add<prometheus::Counter>(*registry_, "distill_job_retries_total",
                                        "Attempts retried after a failure, by reason.")),
      build_info_(Add<prometheus::Gauge>(*registry_, "distill_build_info",
                                         "The coordinator's build (value 1): version, LibTorch, CUDA.")),
      job_info_(Add<prometheus::Gauge>(*registry_, "distill_job_info",
                                       "One per running job (value 1): name, type, method.")),
      last_report_(Add<prometheus::Gauge>(*registry_, "distill_rank_last_report_timestamp_seconds",
                                          "Unix time of the rank's latest report or heartbeat.")),
      rpc_duration_(Add<prometheus::Histogram>(*registry_, "distill_rpc_duration_seconds",
                                               "Server-side latency of each Coordinator RPC, by method.")),
      commit_duration_(Add<prometheus::Histogram>(*registry_, "distill_store_commit_duration_seconds",
                                                  "Time of each job-store commit.")) {
  SetJobCounts({});
  submissions_.Add({});
  started_.Add({});
  for (const char* state : {"succeeded", "failed", "cancelled"}) finished_.Add({{"state", state}});
  build_info_
      .Add({{"version", common::kVersion}, {"torch", common::kTorchVersion}, {"cuda", common::kCudaDescription}})
      .Set(1);
  commit_duration_.Add({}, LatencyBuckets());
}

void Metrics::SetJobCounts(const std::map<JobState, int>& counts) {
  int queued = 0;
  for (int s = distill::v1::QUEUED; s <= distill::v1::CANCELLED; ++s) {
    auto it = counts.find(static_cast<JobState>(s));
    const int n = it == counts.end() ? 0 : it->second;
    jobs_.Add({{"state", Lower(distill::v1::JobState_Name(static_cast<JobState>(s)))}}).Set(n);
    if (s == distill::v1::QUEUED) queued = n;
  }
  queue_depth_.Add({}).Set(queued);
}

void Metrics::OnSubmit() { submissions_.Add({}).Increment(); }

void Metrics::OnStart(const distill::v1::Job& job, bool launched) {
  if (launched) started_.Add({}).Increment();
  absl::MutexLock lock(&mu_);
  JobSeries& s = series_[job.id()];
  if (s.info == nullptr) s.info = &job_info_.Add(InfoLabels(job));
  s.info->Set(1);
}

void Metrics::OnFinish(JobState state) { finished_.Add({{"state", Lower(distill::v1::JobState_Name(state))}}).Increment(); }

void Metrics::OnFailure(FailureReason reason) {
  failures_.Add({{"reason", Lower(distill::v1::FailureReason_Name(reason))}}).Increment();
}

void Metrics::OnRetry(FailureReason reason) {
  retries_.Add({{"reason", Lower(distill::v1::FailureReason_Name(reason))}}).Increment();
}

void Metrics::OnReport(const distill::v1::ProgressReport& report, double unix_seconds) {
  {
    absl::MutexLock lock(&mu_);
    prometheus::Gauge*& g = series_[report.job_id()].last_report[report.rank()];
    if (g == nullptr) {
      g = &last_report_.Add({{"job_id", report.job_id()}, {"rank", absl::StrCat(report.rank())}});
    }
    g->Set(unix_seconds);
  }
  if (report.has_progress()) {
    workers_.Observe(report.job_id(), report.rank(), report.attempt(), report.progress());
  }
}

void Metrics::ForgetJob(const std::string& job_id) {
  workers_.Forget(job_id);
  absl::MutexLock lock(&mu_);
  auto it = series_.find(job_id);
  if (it == series_.end()) return;
  if (it->second.info != nullptr) job_info_.Remove(it->second.info);
  for (const auto& [rank, g] : it->second.last_report) last_report_.Remove(g);
  series_.erase(it);
}

void Metrics::ObserveRpc(const std::string& method, double seconds) {
  rpc_duration_.Add({{"method", method}}, LatencyBuckets()).Observe(seconds);
}

void Metrics::ObserveCommit(double seconds) { commit_duration_.Add({}, LatencyBuckets()).Observe(seconds); }

std::string Metrics::Text() const {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(registry_->Collect());
}

}  // namespace distill::coordinator
