#include "worker/train/finetune.h"

#include "common/status_macros.h"
#include "worker/train/autocast.h"

namespace distill::worker {

absl::Status CrossEntropyObjective::Prepare(LlamaForCausalLM&, const torch::Device&, bool bf16) {
  bf16_ = bf16;
  return absl::OkStatus();
}

absl::StatusOr<LossParts> CrossEntropyObjective::Loss(LlamaForCausalLM& student, const TokenBatch& batch) {
  AutocastGuard autocast(bf16_);
  LossParts parts;
  parts.total = CausalLmLoss(student->forward(batch.inputs, batch.positions), batch.targets);
  return parts;
}

void CrossEntropyObjective::AddStepFields(const StepValues&, StepRecord* record) const {
  record->fields.scalars["ce_loss"] = record->loss;  // the whole loss is cross-entropy
}

absl::StatusOr<EvalRecord> CrossEntropyObjective::Evaluate(LlamaForCausalLM& student,
                                                           const SequenceData& data, int64_t batch,
                                                           int64_t max_rows, int64_t step, EvalShard shard) {
  AutocastGuard autocast(bf16_);
  const torch::Device device = student->LmHeadWeight().device();
  ASSIGN_OR_RETURN(EvalResult r,
                   EvaluateLm(student, data, batch, max_rows, device, shard));
  EvalRecord rec;
  rec.step = step;
  rec.loss = r.loss;
  rec.ppl = r.ppl;
  rec.tokens = r.tokens;
  return rec;
}

}  // namespace distill::worker
