#include "common/worker_metrics.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace distill::common {
namespace {

using distill::v1::Progress;
using distill::v1::RankTotals;

template <typename T>
prometheus::Family<T>& Add(prometheus::Registry& r, const char* name, const char* help) {
  return prometheus::detail::Builder<T>().Name(name).Help(help).Register(r);
}

// Whether `now` continues `before` (the same process's totals grew or stayed).
bool Continues(const RankTotals& before, const RankTotals& now) {
  if (now.steps() < before.steps() || now.tokens() < before.tokens() ||
      now.compute_seconds() < before.compute_seconds() ||
      now.teacher_wait_seconds() < before.teacher_wait_seconds() ||
      now.allreduce_seconds() < before.allreduce_seconds() ||
      now.stream_bytes() < before.stream_bytes() ||
      now.step_duration_counts_size() < before.step_duration_counts_size()) {
    return false;
  }
  for (int i = 0; i < before.step_duration_counts_size(); ++i) {
    if (now.step_duration_counts(i) < before.step_duration_counts(i)) return false;
  }
  return true;
}

}  // namespace

const std::vector<double>& StepDurationBuckets() {
  static const std::vector<double> kBounds = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                              2.5,  5,     10,   25,  60,   150, 600};
  return kBounds;
}

void AddStepDuration(double seconds, RankTotals* totals) {
  const std::vector<double>& bounds = StepDurationBuckets();
  while (totals->step_duration_counts_size() < static_cast<int>(bounds.size()) + 1) {
    totals->add_step_duration_counts(0);
  }
  const auto bucket = std::lower_bound(bounds.begin(), bounds.end(), seconds) - bounds.begin();
  totals->set_step_duration_counts(static_cast<int>(bucket),
                                   totals->step_duration_counts(static_cast<int>(bucket)) + 1);
  totals->set_step_duration_sum(totals->step_duration_sum() + seconds);
}

WorkerMetrics::WorkerMetrics(prometheus::Registry& r)
    : tokens_(Add<prometheus::Counter>(r, "distill_tokens_total",
                                       "Training tokens this rank has processed (this attempt).")),
      steps_(Add<prometheus::Counter>(r, "distill_steps_total", "Optimizer steps this rank has finished.")),
      step_duration_(Add<prometheus::Histogram>(r, "distill_step_duration_seconds",
                                                "Wall time of each optimizer step.")),
      phase_seconds_(Add<prometheus::Counter>(
          r, "distill_step_phase_seconds_total",
          "Step wall time by phase: compute, teacher_wait, allreduce (they sum to the step time).")),
      stream_bytes_(Add<prometheus::Counter>(r, "distill_teacher_stream_bytes_total",
                                             "Teacher logits and features received by this student rank.")),
      loss_(Add<prometheus::Gauge>(r, "distill_loss",
                                   "Latest training loss (mean over the ranks) by component: total, ce, "
                                   "kd, feature_<pair>.")),
      eval_loss_(Add<prometheus::Gauge>(r, "distill_eval_loss", "Latest eval cross-entropy.")),
      eval_kl_(Add<prometheus::Gauge>(r, "distill_eval_kl", "Latest eval KL(teacher || student) at T = 1.")),
      eval_top1_(Add<prometheus::Gauge>(r, "distill_eval_top1_agreement",
                                        "Latest eval top-1 agreement with the teacher, 0..1.")),
      lr_(Add<prometheus::Gauge>(r, "distill_learning_rate", "Learning rate of the latest step.")),
      grad_norm_(Add<prometheus::Gauge>(r, "distill_grad_norm",
                                        "Gradient norm of the latest step, before clipping.")),
      eta_(Add<prometheus::Gauge>(r, "distill_eta_seconds", "Estimated seconds to the job's last step.")),
      progress_(Add<prometheus::Gauge>(r, "distill_job_progress_ratio", "step / total_steps, 0..1.")),
      mfu_(Add<prometheus::Gauge>(r, "distill_mfu_ratio",
                                  "Model FLOPs utilisation of the rank, 0..1 (docs/metrics.md).")),
      gpu_memory_(Add<prometheus::Gauge>(r, "distill_gpu_memory_peak_bytes",
                                         "Peak bytes allocated by LibTorch's CUDA caching allocator.")),
      host_memory_(Add<prometheus::Gauge>(r, "distill_host_memory_peak_bytes",
                                          "Peak resident memory (RSS) of the rank's process.")) {}

void WorkerMetrics::Observe(const std::string& job_id, int rank, int attempt, const Progress& p) {
  // A rank that has not stepped yet (a teacher rank never does) has no series.
  if (p.step() == 0 && p.rank_totals().steps() == 0 && p.eval_step() == 0) return;
  absl::MutexLock lock(&mu_);
  const Labels labels = {{"job_id", job_id}, {"rank", absl::StrCat(rank)}};
  CountRank(job_id, labels, ranks_[{job_id, rank}], attempt, p);
  SetRankGauges(job_id, labels, p);
  if (rank == 0) SetJobGauges(job_id, p);
}

void WorkerMetrics::CountRank(const std::string& job_id, const Labels& labels, RankState& state,
                              int attempt, const Progress& p) {
  const RankTotals& now = p.rank_totals();
  if (state.attempt != attempt || !Continues(state.last, now)) {
    state.attempt = attempt;
    state.last = RankTotals();
  }
  const RankTotals& was = state.last;
  Series(job_id, tokens_, labels).Increment(static_cast<double>(now.tokens() - was.tokens()));
  Series(job_id, steps_, labels).Increment(static_cast<double>(now.steps() - was.steps()));
  const std::pair<const char*, double> phases[] = {
      {"compute", now.compute_seconds() - was.compute_seconds()},
      {"teacher_wait", now.teacher_wait_seconds() - was.teacher_wait_seconds()},
      {"allreduce", now.allreduce_seconds() - was.allreduce_seconds()}};
  for (const auto& [phase, seconds] : phases) {
    Labels l = labels;
    l["phase"] = phase;
    Series(job_id, phase_seconds_, l).Increment(seconds);
  }
  if (now.stream_bytes() > 0) {
    Series(job_id, stream_bytes_, labels).Increment(now.stream_bytes() - was.stream_bytes());
  }
  const size_t buckets = StepDurationBuckets().size() + 1;
  std::vector<double> increments(buckets, 0.0);
  for (size_t i = 0; i < buckets && i < static_cast<size_t>(now.step_duration_counts_size()); ++i) {
    const int j = static_cast<int>(i);
    const int64_t before = j < was.step_duration_counts_size() ? was.step_duration_counts(j) : 0;
    increments[i] = static_cast<double>(now.step_duration_counts(j) - before);
  }
  prometheus::Histogram& h = step_duration_.Add(labels, StepDurationBuckets());
  Owned& owned = owned_[job_id];
  if (owned.keys.insert({&step_duration_, &h}).second) {
    owned.removers.push_back([this, &h] { step_duration_.Remove(&h); });
  }
  h.ObserveMultiple(increments, now.step_duration_sum() - was.step_duration_sum());
  state.last = now;
}

void WorkerMetrics::SetRankGauges(const std::string& job_id, const Labels& labels, const Progress& p) {
  if (p.memory_bytes() > 0) Series(job_id, host_memory_, labels).Set(static_cast<double>(p.memory_bytes()));
  if (p.gpu_memory_peak_bytes() > 0) {
    Series(job_id, gpu_memory_, labels).Set(static_cast<double>(p.gpu_memory_peak_bytes()));
  }
  if (p.mfu() > 0) Series(job_id, mfu_, labels).Set(p.mfu());
}

void WorkerMetrics::SetJobGauges(const std::string& job_id, const Progress& p) {
  const Labels job = {{"job_id", job_id}};
  if (p.step() > 0) {
    auto loss = [&](const std::string& component, double value) {
      Series(job_id, loss_, {{"job_id", job_id}, {"component", component}}).Set(value);
    };
    loss("total", p.loss());
    loss("ce", p.ce_loss());
    if (p.kd_loss() != 0 || !p.feature_losses().empty()) loss("kd", p.kd_loss());
    for (const auto& [pair, value] : p.feature_losses()) loss(absl::StrCat("feature_", pair), value);
    Series(job_id, lr_, job).Set(p.lr());
    Series(job_id, grad_norm_, job).Set(p.grad_norm());
    Series(job_id, eta_, job).Set(p.eta_seconds());
  }
  if (p.total_steps() > 0) {
    Series(job_id, progress_, job).Set(static_cast<double>(p.step()) / static_cast<double>(p.total_steps()));
  }
  if (p.eval_step() > 0) {
    Series(job_id, eval_loss_, job).Set(p.eval_loss());
    if (p.eval_kl() != 0 || p.eval_top1_agreement() != 0) {
      Series(job_id, eval_kl_, job).Set(p.eval_kl());
      Series(job_id, eval_top1_, job).Set(p.eval_top1_agreement());
    }
  }
}

void WorkerMetrics::Forget(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = owned_.find(job_id);
  if (it != owned_.end()) {
    for (auto& remove : it->second.removers) remove();
    owned_.erase(it);
  }
  for (auto r = ranks_.begin(); r != ranks_.end();) {
    r = r->first.first == job_id ? ranks_.erase(r) : std::next(r);
  }
}

}  // namespace distill::common
