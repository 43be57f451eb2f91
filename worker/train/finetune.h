// Finetune's objective: next-token cross-entropy of the student, evaluated
// as loss and perplexity (EvaluateLm). Its step records carry `ce_loss`
// (equal to the loss). RunFinetune (trainer.h) trains with it.
#ifndef DISTILL_WORKER_TRAIN_FINETUNE_H_
#define DISTILL_WORKER_TRAIN_FINETUNE_H_

#include <string>

#include "worker/train/objective.h"

namespace distill::worker {

class CrossEntropyObjective : public TrainObjective {
 public:
  std::string job_type() const override { return "finetune"; }
  absl::Status Prepare(LlamaForCausalLM& student, const torch::Device& device, bool bf16) override;
  absl::StatusOr<LossParts> Loss(LlamaForCausalLM& student, const TokenBatch& batch) override;
  void AddStepFields(const StepValues& values, StepRecord* record) const override;
  absl::StatusOr<EvalRecord> Evaluate(LlamaForCausalLM& student, const SequenceData& data, int64_t batch,
                                      int64_t max_rows, int64_t step, EvalShard shard) override;

 private:
  bool bf16_ = false;
};

}  // namespace distill::worker

#endif  // DISTILL_WORKER_TRAIN_FINETUNE_H_
