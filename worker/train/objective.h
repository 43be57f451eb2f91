// What differs between job types: the TrainObjective the training loop
// (trainer.h) calls. The loop owns the student (built from the spec's model/init
// or student block, LoRA applied), data, AdamW, schedule, accumulation,
// clipping, checkpoints and output; the objective owns the loss, evaluation,
// any parameters it trains besides the student, and its own fields of the
// progress records (Note [Objective fields] in report.h). Finetune's objective
// is next-token cross-entropy (finetune.h); distill's is in worker/distill/.
// Called on the training thread only.
#ifndef DISTILL_WORKER_TRAIN_OBJECTIVE_H_
#define DISTILL_WORKER_TRAIN_OBJECTIVE_H_

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/data/sequence_data.h"
#include "worker/model/llama.h"
#include "worker/train/eval.h"
#include "worker/train/optimizer.h"
#include "worker/train/report.h"

namespace distill::worker {

// One micro-batch's loss. `total` is the scalar to backpropagate; the rest is
// for reporting.
struct LossParts {
  torch::Tensor total;
  // Named values for the objective's record fields (a loss split, bytes...):
  // summed over the step's micro-batches, averaged over the ranks, and handed
  // to AddStepFields. Every rank must give the same names.
  std::map<std::string, double> values;
  // Wall seconds of this micro-batch spent outside the student's compute
  // (distill: the teacher's forward, or waiting for dedicated teacher ranks).
  double wait_s = 0.0;
};

// A step's LossParts::values as AddStepFields gets them.
struct StepValues {
  std::map<std::string, double> sums;  // summed over micro-batches, averaged over ranks
  int64_t micro_batches = 0;           // of the step on this rank
  int64_t micro_batch_targets = 0;     // targets of one micro-batch on this rank
};

class TrainObjective {
 public:
  virtual ~TrainObjective() = default;
  // "finetune" or "distill": recorded in checkpoints.
  virtual std::string job_type() const = 0;
  // Once, after the student is built and moved to `device`, before data,
  // optimizer and resume. Spec errors found here name the field.
  virtual absl::Status Prepare(LlamaForCausalLM& student, const torch::Device& device, bool bf16) = 0;
  // Trained with the student (optimizer and checkpoints), never exported.
  virtual std::vector<NamedParam> ExtraParams() { return {}; }
  // One micro-batch on the device (eval.h TokenBatch: targets outside the
  // responses of instruction data count in no average, positions of packed
  // rows go to every forward).
  virtual absl::StatusOr<LossParts> Loss(LlamaForCausalLM& student, const TokenBatch& batch) = 0;
  // Adds the objective's fields to a step record whose generic fields are
  // set, from the step's `values` (Note [Objective fields]).
  virtual void AddStepFields(const StepValues& values, StepRecord* record) const = 0;
  // Evaluation over this rank's `shard` of `data` (EvaluateLm's row
  // contract); `step` is copied. Its fields' scalars are per-target means: the
  // loop combines the shards (weighted by tokens) and then calls FinishEval.
  virtual absl::StatusOr<EvalRecord> Evaluate(LlamaForCausalLM& student, const SequenceData& data, int64_t batch,
                                              int64_t max_rows, int64_t step, EvalShard shard) = 0;
  // Completes a combined eval record: what is not a mean (a perplexity), the
  // console piece.
  virtual void FinishEval(EvalRecord* record) const {}
  // Micro-batches the loop hands to Enqueue before their Loss (a teacher on
  // other ranks computes them meanwhile); 0 = none.
  virtual int Lookahead() const { return 0; }
  // A micro-batch whose Loss comes later, in order.
  virtual absl::Status Enqueue(const TokenBatch& batch) { return absl::OkStatus(); }
  // Appended to the "training ..." start line.
  virtual std::string Describe() const { return ""; }
};

}  // namespace distill::worker

#endif  // DISTILL_WORKER_TRAIN_OBJECTIVE_H_
