// `distillctl report ID --out DIR`: the results of a sweep (or of one job) as
// files: children.csv (one row per training child), summary.csv (children
// grouped by their swept values except train.seed: n, mean and 95% Student t
// interval), report.md (both tables, the spec, the plots) and PNG plots drawn
// by gnuplot from data files and a script left in DIR. Reads the jobs and
// their event logs through a CoordinatorClient; a job not finished is
// reported with its state and its metrics so far. Single-threaded.
#ifndef DISTILL_COORDINATOR_CTL_REPORT_H_
#define DISTILL_COORDINATOR_CTL_REPORT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coordinator/ctl/client.h"
#include "distill/v1/coordinator.pb.h"

namespace distill::coordinator::ctl {

// One point of a child's training loss curve (a progress event).
struct CurvePoint {
  int64_t step = 0;
  double loss = 0.0;
  double ce = 0.0;  // cross-entropy part
  double kd = 0.0;  // distillation part (0 for a finetune)
};

// A training child's results, from its job and its event log.
struct RunMetrics {
  std::string id;
  distill::v1::JobState state = distill::v1::JOB_STATE_UNSPECIFIED;
  bool distill = false;  // a distill job: the teacher metrics mean something
  // Swept field (dotted path) -> its value as JSON ("0.5", "\"lora\"").
  std::map<std::string, std::string> values;
  int64_t step = 0;  // the last reported step
  int64_t total_steps = 0;
  std::vector<CurvePoint> curve;  // by step; the latest report of a step wins
  // The latest eval (absent: none yet). ppl = exp(eval loss); kl,
  // top1_agreement and teacher_loss: against the teacher (distill only).
  std::optional<double> eval_loss, ppl, kl, top1_agreement, teacher_loss;
  int64_t eval_step = 0;
  // Training throughput: the mean over the progress reports after the first
  // (the first includes start-up; one report: that one) and the last one.
  double tokens_per_s_mean = 0.0;
  double tokens_per_s_final = 0.0;
  int64_t peak_memory_bytes = 0;  // max memory_bytes over the reports
  int64_t trainable_params = 0;
  int64_t tokens = 0;  // training tokens processed
};

// The metrics of `job` from its events (WatchJob from the start); pure.
RunMetrics MetricsFromEvents(const distill::v1::Job& job,
                             const std::vector<distill::v1::JobEvent>& events);

// Mean of `xs` with its 95% interval mean -/+ t(0.975, n - 1) s / sqrt(n)
// (s: the sample standard deviation); no interval for n < 2.
struct Interval {
  int n = 0;
  double mean = 0.0;
  std::optional<double> low, high;
};
Interval MeanInterval(const std::vector<double>& xs);

// The quantile t(p, dof) of Student's t distribution (Boost.Math; NaN in a
// build without it, and MeanInterval then gives no interval).
double StudentTQuantile(double p, int dof);

// A swept value as a person reads it: a JSON string unquoted, else the JSON.
std::string DisplayValue(const std::string& json);

// The fields the summary groups by: the swept fields but train.seed.
std::vector<std::string> GroupFields(const std::vector<std::string>& fields);

// Runs with the same values of the group fields; `key` holds those values
// (JSON, "" where a run lacks the field). Groups and their runs keep the
// order of `runs`; the pointers point into it.
struct RunGroup {
  std::vector<std::string> key;
  std::vector<const RunMetrics*> runs;
};
std::vector<RunGroup> GroupRuns(const std::vector<RunMetrics>& runs,
                                const std::vector<std::string>& group_fields);

// MeanInterval of a metric (by its CSV name, e.g. "eval_loss") over the runs
// of `group` that have it.
Interval GroupInterval(const RunGroup& group, const std::string& metric);

struct ReportOptions {
  std::string out_dir;              // created if missing; files in it are replaced
  std::string gnuplot = "gnuplot";  // the program (searched on PATH unless it has a '/')
};

// Writes the report of the jobs `ids` (a sweep: its training children; any
// other job: one row) into options.out_dir and prints a line per file to
// `out`. With several ids their runs share the tables and plots, grouped by
// a first field `job` (the job's name, or its id where names clash) besides
// the swept fields, e.g. a KD sweep beside its cross-entropy baseline.
// Errors: the server's (NOT_FOUND for an unknown id), FailedPrecondition
// naming DIR when it cannot be written, or naming gnuplot when that is
// missing or fails.
absl::Status WriteReport(const std::vector<std::string>& ids, const ReportOptions& options,
                         CoordinatorClient& client, std::ostream& out);

}  // namespace distill::coordinator::ctl

#endif  // DISTILL_COORDINATOR_CTL_REPORT_H_
