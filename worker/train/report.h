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
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace distill::worker {

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
  // The loss split (distill jobs; finetune jobs report ce_loss == loss).
  bool distill = false;     // a distill job: kd_loss, feature_losses, teacher_s, stream bytes apply
  double ce_loss = 0.0;     // cross-entropy part (unweighted mean)
  double kd_loss = 0.0;     // soft loss (with T^2 when t2_scale), 0 for finetune
  std::map<std::string, double> feature_losses;  // per feature pair ("s3_t6"), unweighted
  double step_s = 0.0;           // wall seconds per step over the steps since the previous record
  double teacher_s = 0.0;        // of which in the teacher forward (dedicated teacher ranks: waiting for it), per step
  double allreduce_s = 0.0;      // of which in gradient/loss all-reduce not hidden by backward, per step
  double compute_s = 0.0;        // the rest: the student's own compute, per step
  int ranks = 1;                 // data-parallel student ranks
  // teacher -> student bytes per target token (colocated teacher: the size of
  // the teacher output handed to the loss, what a dedicated teacher would send)
  double stream_bytes_per_token = 0.0;
  int64_t peak_rss_bytes = 0;    // peak resident memory of this process
};

struct EvalRecord {
  int64_t step = 0;
  double loss = 0.0;
  double ppl = 0.0;
  int64_t tokens = 0;
  // Distill jobs: the student against the teacher on the same targets.
  bool has_teacher = false;
  double kl = 0.0;              // mean KL(p_teacher || p_student) at T = 1, nats
  double top1_agreement = 0.0;  // fraction of targets where both argmaxes agree
  double teacher_loss = 0.0;    // the teacher's own cross-entropy (constant over a run)
  double teacher_ppl = 0.0;
};

class ReportSink {
 public:
  virtual ~ReportSink() = default;
  virtual void OnStep(const StepRecord& r) = 0;
  virtual void OnEval(const EvalRecord& r) = 0;
  virtual void OnMessage(const std::string& text) = 0;  // checkpoints, resume, ...
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
// "step 40/200 | loss 2.3456 | lr 3.00e-04 | 12.3k tok/s | eta 1m05s"; distill
// jobs add the split after the loss, "(ce 2.71 kd 1.95 feat 0.31)", and the
// teacher's share of the step time, "teacher 41%".
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
