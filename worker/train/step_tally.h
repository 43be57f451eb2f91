// What a training step reports (loss, lr, gradient norm, the objective's
// values), tallied over its micro-batches and averaged
// over the data-parallel students (Note [Data-parallel step] in trainer.cc),
// and the combination of the students' eval shards. Used by the Trainer on
// the training thread.
#ifndef DISTILL_WORKER_TRAIN_STEP_TALLY_H_
#define DISTILL_WORKER_TRAIN_STEP_TALLY_H_

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "worker/comm/communicator.h"
#include "worker/train/objective.h"
#include "worker/train/report.h"

namespace distill::worker {

class StepTally {
 public:
  // The loss is summed on `device` (one host sync per step, in Finish).
  explicit StepTally(const torch::Device& device);
  // One micro-batch's loss.
  void Add(const LossParts& parts);
  // Ends the step on this rank: its mean loss over `micro_batches`.
  void Finish(int64_t micro_batches);
  // Averages the loss, the wait and the objective's values over `students`
  // (one small all-reduce; every rank gives the same value names).
  absl::Status AverageOver(Communicator& students);

  // The step's update, once made.
  void SetUpdate(double lr, double grad_norm) {
    lr_ = lr;
    grad_norm_ = grad_norm;
  }

  double loss() const { return loss_; }
  double lr() const { return lr_; }
  double grad_norm() const { return grad_norm_; }  // before clipping
  double wait_s() const { return wait_s_; }  // the students' mean after AverageOver
  double rank_wait_s() const { return rank_wait_s_; }  // this rank's own, never averaged
  // The objective's values (AddStepFields), with targets per micro-batch.
  StepValues values(int64_t micro_batch_targets) const;

 private:
  torch::Tensor loss_sum_;  // float64 on the device
  double loss_ = 0.0;
  double wait_s_ = 0.0;
  double rank_wait_s_ = 0.0;
  double lr_ = 0.0, grad_norm_ = 0.0;
  std::map<std::string, double> sums_;
  int64_t micro_batches_ = 0;
};

// Combines the ranks' eval shards into one record: the loss and every scalar
// of `r->fields` become means weighted by the ranks' target counts. A world
// of one is left as it is (its shard is the whole eval set).
absl::Status CombineEval(Communicator& students, EvalRecord* r);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_TRAIN_STEP_TALLY_H_
