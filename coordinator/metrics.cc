#include "coordinator/metrics.h"

#include "absl/strings/ascii.h"
#include "prometheus/text_serializer.h"

namespace distill::coordinator {
namespace {

using distill::v1::FailureReason;
using distill::v1::JobState;

std::string Lower(const std::string& s) { return absl::AsciiStrToLower(s); }

}  // namespace

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      jobs_(prometheus::BuildGauge()
                .Name("distill_jobs")
                .Help("Jobs by state.")
                .Register(*registry_)),
      queue_depth_(prometheus::BuildGauge()
                       .Name("distill_queue_depth")
                       .Help("Jobs waiting for slots (QUEUED).")
                       .Register(*registry_)),
      submissions_(prometheus::BuildCounter()
                       .Name("distill_job_submissions_total")
                       .Help("Jobs accepted by SubmitJob (idempotent retries not counted).")
                       .Register(*registry_)),
      failures_(prometheus::BuildCounter()
                    .Name("distill_job_failures_total")
                    .Help("Jobs that ended FAILED, by reason.")
                    .Register(*registry_)),
      retries_(prometheus::BuildCounter()
                   .Name("distill_job_retries_total")
                   .Help("Attempts retried after a failure, by reason.")
                   .Register(*registry_)),
      tokens_per_second_(prometheus::BuildGauge()
                             .Name("distill_job_tokens_per_second")
                             .Help("Training throughput of a running job.")
                             .Register(*registry_)),
      step_seconds_(prometheus::BuildGauge()
                        .Name("distill_job_step_seconds")
                        .Help("Wall seconds per optimizer step of a running job.")
                        .Register(*registry_)),
      loss_(prometheus::BuildGauge()
                .Name("distill_job_loss")
                .Help("Latest training loss of a running job, by component (total, ce, kd, eval, "
                      "feature_*).")
                .Register(*registry_)),
      stream_bytes_per_token_(
          prometheus::BuildGauge()
              .Name("distill_job_stream_bytes_per_token")
              .Help("Teacher-to-student stream bytes per target token of a running job.")
              .Register(*registry_)) {
  SetJobCounts({});
  submissions_.Add({});
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

void Metrics::OnFailure(FailureReason reason) {
  failures_.Add({{"reason", Lower(distill::v1::FailureReason_Name(reason))}}).Increment();
}

void Metrics::OnRetry(FailureReason reason) {
  retries_.Add({{"reason", Lower(distill::v1::FailureReason_Name(reason))}}).Increment();
}

void Metrics::OnProgress(const std::string& job_id, const distill::v1::Progress& p) {
  absl::MutexLock lock(&mu_);
  JobSeries& s = series_[job_id];
  if (!s.tokens_per_second) {
    s.tokens_per_second = &tokens_per_second_.Add({{"job", job_id}});
    s.step_seconds = &step_seconds_.Add({{"job", job_id}});
    s.stream_bytes_per_token = &stream_bytes_per_token_.Add({{"job", job_id}});
  }
  s.tokens_per_second->Set(p.tokens_per_second());
  s.step_seconds->Set(p.step_seconds());
  s.stream_bytes_per_token->Set(p.stream_bytes_per_token());
  auto set_loss = [&](const std::string& component, double v) {
    prometheus::Gauge*& g = s.loss[component];
    if (!g) g = &loss_.Add({{"job", job_id}, {"component", component}});
    g->Set(v);
  };
  set_loss("total", p.loss());
  set_loss("ce", p.ce_loss());
  set_loss("kd", p.kd_loss());
  if (p.eval_loss() > 0) set_loss("eval", p.eval_loss());
  for (const auto& [name, v] : p.feature_losses()) set_loss("feature_" + name, v);
}

void Metrics::ForgetJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = series_.find(job_id);
  if (it == series_.end()) return;
  JobSeries& s = it->second;
  tokens_per_second_.Remove(s.tokens_per_second);
  step_seconds_.Remove(s.step_seconds);
  stream_bytes_per_token_.Remove(s.stream_bytes_per_token);
  for (const auto& [component, g] : s.loss) loss_.Remove(g);
  series_.erase(it);
}

std::string Metrics::Text() const {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(registry_->Collect());
}

}  // namespace distill::coordinator
