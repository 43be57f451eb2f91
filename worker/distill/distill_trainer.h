// `type: distill` jobs with a colocated teacher (teacher.ranks 0): the student
// trains exactly as in finetune (worker/train/trainer.h: full or LoRA, AdamW,
// schedule, accumulation, clipping, checkpoints with bit-identical resume),
// but on
//   KdLoss(student final hidden, student lm_head, targets, teacher output)
//     + sum_i weight_i * FeatureLoss(student layer s_i, teacher layer t_i)
// with the teacher's forward run in the same process for every micro-batch.
// Feature projections (one per pair whose widths differ) train with the
// student and sit in its checkpoints, but are not part of the exported model
// or adapter. Everything that needs the models (layer indices, top_k against
// the vocabulary, the shared vocabulary and tokenizer) is checked before
// training starts; errors name the spec field. With teacher.cache the teacher
// is the cache (cached_teacher.h): no teacher weights are loaded. Runs on the
// calling thread.
#ifndef DISTILL_WORKER_DISTILL_DISTILL_TRAINER_H_
#define DISTILL_WORKER_DISTILL_DISTILL_TRAINER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/plan.h"
#include "distill/v1/job.pb.h"
#include "worker/distill/feature_loss.h"
#include "worker/distill/kd_loss.h"
#include "worker/distill/teacher.h"
#include "worker/train/trainer.h"

namespace distill::worker {

// One feature pair of a defaults-filled spec.
struct FeaturePairPlan {
  int64_t student_layer = 0;
  int64_t teacher_layer = 0;
  distill::v1::FeatureLoss loss = distill::v1::FEATURE_LOSS_UNSPECIFIED;
  double weight = 0.0;
  std::string name;  // "s<student_layer>_t<teacher_layer>", the key in reports
};

// The feature pairs of `distill` (defaults-filled: common::WithDefaults) for
// a student of `student_layers` and a teacher of `teacher_layers` decoder
// layers: `features` as given, or with layer_map uniform one pair per
// student layer i (MSE, distill.feature_weight), mapped to the teacher layer
// at the same relative depth, round((i + 1) * T / S) - 1 (halves up). Layers
// out of range are InvalidArgument naming the field
// ("distill.features[1].student_layer: 7 out of range, the student has 4 layers").
absl::StatusOr<std::vector<FeaturePairPlan>> PlanFeaturePairs(
    const distill::v1::DistillSpec& distill, int64_t student_layers, int64_t teacher_layers);

// The plan's teacher run configuration capturing the teacher layers of
// `pairs`, normalised: what the students ask for and the stages compute.
TeacherRunConfig TeacherRunFor(const common::JobPlan& plan,
                               const std::vector<FeaturePairPlan>& pairs);

// The distillation objective for the shared training loop. Exposed so tests
// can run one micro-batch's loss against a reference. It asks its Teacher
// (teacher.h) for each micro-batch's output: with teacher.ranks 0 the
// colocated one, loaded in this process; otherwise the one
// `teacher_factory` builds (worker/runtime: a RemoteTeacher), and the
// objective asks the loop for the teacher's lookahead.
class DistillObjective : public TrainObjective {
 public:
  // `spec` is validated and defaults-filled and must outlive the objective.
  // `teacher_factory` is required when teacher.ranks > 0.
  explicit DistillObjective(const distill::v1::JobSpec& spec,
                            TeacherFactory teacher_factory = nullptr);
  ~DistillObjective() override;

  std::string job_type() const override { return "distill"; }
  // Loads the teacher, checks the spec against both models, builds the
  // projections (seeded from train.seed).
  absl::Status Prepare(LlamaForCausalLM& student, const torch::Device& device, bool bf16) override;
  // The projections' weights, "distill.projection.<pair name>.weight".
  std::vector<NamedParam> ExtraParams() override;
  // Values: kCe, kKd (unweighted), kStreamBytes (teacher output bytes), and
  // kFeaturePrefix + pair name (each unweighted); wait_s: the teacher's.
  // Every term counts the batch's counted targets only (instruction data:
  // the responses), teacher and student seeing the same packed rows.
  absl::StatusOr<LossParts> Loss(LlamaForCausalLM& student, const TokenBatch& batch) override;
  static constexpr const char* kCe = "ce";
  static constexpr const char* kKd = "kd";
  static constexpr const char* kStreamBytes = "stream_bytes";
  static inline const std::string kFeaturePrefix = "feature:";
  // ce_loss, kd_loss, teacher_s, stream_bytes_per_token and feature_losses
  // (per target token, per pair), and the console's split and teacher share.
  void AddStepFields(const StepValues& values, StepRecord* record) const override;
  // Student loss/ppl, and as fields KL(teacher || student) at T = 1, top-1
  // agreement and the teacher's own loss (EvaluateWithTeacher); FinishEval
  // adds the teacher's ppl and the console piece.
  absl::StatusOr<EvalRecord> Evaluate(LlamaForCausalLM& student, const SequenceData& data, int64_t batch,
                                      int64_t max_rows, int64_t step, EvalShard shard) override;
  void FinishEval(EvalRecord* record) const override;
  std::string Describe() const override;
  int Lookahead() const override;
  absl::Status Enqueue(const TokenBatch& batch) override;
  // Stops the teacher (Teacher::Stop: dedicated teacher ranks learn this
  // student is done). Call once the training loop has returned: finished,
  // stopped or cancelled. After any other error RunDistill skips it, since the
  // caller aborts every rank (a hung teacher would only delay the report).
  absl::Status Finish();

  Teacher& teacher() { return *teacher_; }  // after Prepare
  const std::vector<FeaturePairPlan>& pairs() const { return pairs_; }

 private:
  const distill::v1::JobSpec& spec_;
  const common::JobPlan plan_;
  TeacherFactory teacher_factory_;  // null: the colocated teacher
  bool bf16_ = false;
  std::unique_ptr<Teacher> teacher_;
  std::string cached_description_;  // CachedTeacher::Describe() with teacher.cache, else ""
  ModelConfig teacher_config_;
  int64_t student_vocab_ = 0;
  std::vector<FeaturePairPlan> pairs_;
  // One per pair, null where the widths agree.
  std::vector<std::shared_ptr<FeatureProjection>> projections_;
  std::vector<int64_t> student_layers_;  // to capture, ascending
  KdLossConfig kd_config_;
};

// Runs a validated, defaults-filled distill spec (common::LoadJobSpec) as a
// student. With teacher.ranks > 0, `teacher_factory` builds its teacher
// (worker/runtime/runtime.h: the student's end of the dedicated ranks).
absl::StatusOr<TrainResult> RunDistill(const distill::v1::JobSpec& spec,
                                       const TrainOptions& options,
                                       TeacherFactory teacher_factory = nullptr);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DISTILL_DISTILL_TRAINER_H_
