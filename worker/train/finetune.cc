#include "worker/train/finetune.h"

#include "common/status_macros.h"
#include "worker/train/autocast.h"

namespace distill::worker {

absl::Status CrossEntropyObjective::Prepare(LlamaForCausalLM&, const torch::Device&, bool bf16) {
  bf16_ = bf16;
  return absl::OkStatus();
}

absl::StatusOr<LossParts> CrossEntropyObjective::Loss(LlamaForCausalLM& student,
                                                      const torch::Tensor& inputs,
                                                      const torch::Tensor& targets) {
  AutocastGuard autocast(bf16_);
  LossParts parts;
  parts.total = CausalLmLoss(student->forward(inputs), targets);
  return parts;
}

void CrossEntropyObjective::AddStepFields(const StepValues&, StepRecord* record) const {
  record->fields.scalars["ce_loss"] = record->loss;  // the whole loss is cross-entropy
}

absl::StatusOr<EvalRecord> CrossEntropyObjective::Evaluate(LlamaForCausalLM& student,
                                                           const TokenDataset& data,
                                                           int64_t seq_len, int64_t batch,
                                                           int64_t max_windows, int64_t step,
                                                           EvalShard shard) {
  AutocastGuard autocast(bf16_);
  const torch::Device device = student->LmHeadWeight().device();
  ASSIGN_OR_RETURN(EvalResult r,
                   EvaluateLm(student, data, seq_len, batch, max_windows, device, shard));
  EvalRecord rec;
  rec.step = step;
  rec.loss = r.loss;
  rec.ppl = r.ppl;
  rec.tokens = r.tokens;
  return rec;
}

}  // namespace distill::worker
