// Where training progress goes. A ReportSink receives every progress and eval
// record of a run; backends: a JSON-lines file (metrics.jsonl), the console
// progress line, and (with the coordinator) a gRPC stream. Sinks are called
// from the training thread only.
#ifndef DISTILL_WORKER_TRAIN_REPORT_H_
#define DISTILL_WORKER_TRAIN_REPORT_H_

#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "distill/v1/coordinator.pb.h"

namespace distill::worker {

// Note [Objective fields]: the training loop fills a record's generic fields;
// the objective adds its own (TrainObjective::AddStepFields / FinishEval), so
// train/ names none of them. The sinks write them without knowing them:
// `scalars` and `groups` as keys of the JSON record (and the gRPC reporter
// reads the Progress fields of the same names), the console pieces where the
// progress line has room for them. A distill objective adds its loss split,
// teacher share and stream bytes, and its eval KL and agreement.
struct ObjectiveFields {
  std::map<std::string, double> scalars;  // "kd_loss" -> 1.95: JSON keys beside the generic ones
  // "feature_losses" -> {"s3_t6": 0.31}: JSON objects of named values
  std::map<std::string, std::map<std::string, double>> groups;
  // Console pieces, each empty or starting with a space:
  std::string console_after_loss;  // after "loss 2.3456" (eval: after "ppl 9.876")
  std::string console_time_share;  // step line, after "compute 57%": " teacher 41%"
  std::string console_time_tail;   // step line, after the time shares: " | 420 B/tok"

  // The scalar `name`, 0 if the objective did not add it.
  double Scalar(const std::string& name) const;
};

struct StepRecord {
  int64_t step = 0;         // 1-based optimizer step just finished
  int64_t total_steps = 0;
  double loss = 0.0;        // mean training loss of the step
  double lr = 0.0;
  double grad_norm = 0.0;   // before clipping
  double tokens_per_s = 0.0;  // over the steps since the previous record
  int64_t tokens = 0;       // training tokens consumed so far
  double elapsed_s = 0.0;   // wall time of this run so far
  double eta_s = 0.0;       // estimated time to the last step
  double step_s = 0.0;           // wall seconds per step over the steps since the previous record
  double wait_s = 0.0;           // of which the objective waited outside the student (LossParts::wait_s), per step
  double allreduce_s = 0.0;      // of which in gradient/loss all-reduce not hidden by backward, per step
  double compute_s = 0.0;        // the rest: the student's own compute, per step
  int ranks = 1;                 // data-parallel student ranks
  int64_t peak_rss_bytes = 0;    // peak resident memory of this process
  int64_t trainable_params = 0;  // parameters the optimizer updates
  ObjectiveFields fields;        // the objective's (Note [Objective fields])
  // This rank's own totals since its process started: the counters of
  // docs/metrics.md (steps, tokens, the step split, stream bytes, the step
  // duration histogram).
  distill::v1::RankTotals totals;
  double mfu = 0.0;  // this rank's model FLOPs utilisation, 0..1; 0: the device's peak is unknown
  int64_t gpu_memory_peak_bytes = 0;  // LibTorch's CUDA allocator peak on this rank's device
};

struct EvalRecord {
  int64_t step = 0;
  double loss = 0.0;
  double ppl = 0.0;
  int64_t tokens = 0;
  // The objective's. Data-parallel ranks' scalars are combined as means
  // weighted by `tokens` before TrainObjective::FinishEval.
  ObjectiveFields fields;
};

// A record as the Progress the coordinator and the metrics read: the
// generic fields, and the objective's by the names metrics.jsonl gives them
// (Note [Objective fields]). Each sets only its own fields of `p`.
void SetStepProgress(const StepRecord& r, distill::v1::Progress* p);
void SetEvalProgress(const EvalRecord& r, distill::v1::Progress* p);

class ReportSink {
 public:
  virtual ~ReportSink() = default;
  virtual void OnStep(const StepRecord& r) = 0;
  virtual void OnEval(const EvalRecord& r) = 0;
  virtual void OnMessage(const std::string& text) = 0;  // checkpoints, resume, ...
  // Every step (OnStep only every log_every): the steps completed so far;
  // cheap. The coordinator's liveness (Note [Liveness by progress]).
  virtual void OnStepDone(int64_t /*step*/) {}
};

// Every sink of a list at once (none: reports go nowhere).
class Fanout : public ReportSink {
 public:
  Fanout() = default;
  explicit Fanout(std::vector<ReportSink*> sinks) : sinks_(std::move(sinks)) {}
  void OnStep(const StepRecord& r) override {
    for (auto* s : sinks_) s->OnStep(r);
  }
  void OnEval(const EvalRecord& r) override {
    for (auto* s : sinks_) s->OnEval(r);
  }
  void OnMessage(const std::string& text) override {
    for (auto* s : sinks_) s->OnMessage(text);
  }
  void OnStepDone(int64_t step) override {
    for (auto* s : sinks_) s->OnStepDone(step);
  }

 private:
  std::vector<ReportSink*> sinks_;
};

// Appends one JSON object per record to a file. Records of steps after
// `truncate_after_step` already in the file (from an interrupted run that is
// being resumed) are dropped first, so the file holds one trace.
class JsonLinesSink : public ReportSink {
 public:
  static absl::StatusOr<std::unique_ptr<JsonLinesSink>> Open(const std::string& path,
                                                             int64_t truncate_after_step);
  void OnStep(const StepRecord& r) override;
  void OnEval(const EvalRecord& r) override;
  void OnMessage(const std::string& text) override;

 private:
  explicit JsonLinesSink(std::ofstream out) : out_(std::move(out)) {}
  std::ofstream out_;
};

// The human-readable progress line on stdout:
// "step 40/200 | loss 2.3456 | lr 3.00e-04 | 12.3k tok/s | eta 1m05s", with
// the objective's pieces (Note [Objective fields]; distill: the split after
// the loss, "(ce 2.710 kd 1.950 feat 0.310)", and the teacher's share of the
// step time, "teacher 41%"). The shares of the step time are shown with
// several ranks or when the objective adds one.
class ConsoleSink : public ReportSink {
 public:
  void OnStep(const StepRecord& r) override;
  void OnEval(const EvalRecord& r) override;
  void OnMessage(const std::string& text) override;
};

// Formats seconds as "1h02m", "3m05s" or "12s".
std::string FormatDuration(double seconds);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_TRAIN_REPORT_H_
