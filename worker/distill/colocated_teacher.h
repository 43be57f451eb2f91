// The colocated teacher (teacher.ranks 0), one implementation of Teacher
// (teacher.h): a Hugging Face model held in the student's process for
// inference only (frozen, eval mode, no autograd), and its forward for a batch
// in the job's logit transport plus the hidden states of the mapped layers.
//
// Note [Shared vocabulary]: teacher and student must share the tokenizer. The
// teacher may have more vocabulary rows than the student only as padding (as
// many checkpoints pad to a multiple of 64 or 128); its logits and lm_head are
// cut to the student's size V before anything reaches a loss. Any other
// mismatch is an error before training starts. Thread-compatible: the
// training thread owns it.
#ifndef DISTILL_WORKER_DISTILL_COLOCATED_TEACHER_H_
#define DISTILL_WORKER_DISTILL_COLOCATED_TEACHER_H_

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "distill/v1/job.pb.h"
#include "worker/distill/kd_loss.h"
#include "worker/distill/teacher.h"
#include "worker/model/config.h"
#include "worker/model/llama.h"

namespace distill::worker {

// The pieces of ColocatedTeacher, shared with the dedicated teacher ranks
// (teacher_pipeline.h, remote_teacher.h) so both check and compute alike.

// Transport UNSPECIFIED -> DENSE; capture layers sorted and unique.
TeacherRunConfig NormalizeRunConfig(TeacherRunConfig run);

// Note [Shared vocabulary] for the teacher config `teacher` read from `dir`
// against the student's, before any weight is read. InvalidArgument starting
// with "teacher.model: ".
absl::Status CheckTeacherVocabulary(const std::string& dir, const ModelConfig& teacher,
                                    const ModelConfig& student);

// If DIR/tokenizer.json and the file `tokenizer_json` both exist, they must
// be byte-identical. InvalidArgument starting with "`field`: ".
absl::Status CheckSameTokenizer(const std::string& teacher_dir, const std::string& tokenizer_json,
                                const std::string& field);

// InvalidArgument for a capture layer outside [0, teacher_layers) or, for
// TOPK, top_k outside [1, vocab].
absl::Status CheckTeacherRunConfig(const TeacherRunConfig& config, int64_t teacher_layers,
                                   int64_t vocab);

// The transport of `config.transport` from the teacher's final normalised
// hidden state h [N, d_t], through `model`'s lm_head: DENSE logits cut to
// `vocab` columns; TOPK built chunk_tokens rows at a time (MakeTopK); HIDDEN
// h as float32 with `lm_head` left undefined (the caller attaches it).
absl::StatusOr<TeacherOutput> BuildTeacherOutput(LlamaForCausalLM& model, const torch::Tensor& h,
                                                 int64_t vocab, const TeacherRunConfig& config);

class ColocatedTeacher : public Teacher {
 public:
  // Loads the model in `dir` onto `device` and checks it against the student
  // (Note [Shared vocabulary]): `student` is the student's config;
  // `student_dir` its model directory (or the directory of its init config),
  // whose tokenizer.json, if both have one, must be byte-identical to the
  // teacher's. Errors are InvalidArgument starting with "teacher.model: ".
  // `run` is what Next computes.
  static absl::StatusOr<std::unique_ptr<ColocatedTeacher>> Load(
      const std::string& dir, const ModelConfig& student, const std::string& student_dir,
      torch::Device device, TeacherRunConfig run = TeacherRunConfig());

  // If the teacher directory has a tokenizer.json and the file
  // `tokenizer_json` exists, they must be byte-identical (the data's tokenizer
  // is checked this way too). InvalidArgument starting with "`field`: ".
  absl::Status CheckTokenizer(const std::string& tokenizer_json, const std::string& field) const;

  // The forward for inputs [B, L] (int64, on the teacher's device; positions
  // [B, L] for packed rows, llama.h), without autograd. InvalidArgument for a
  // capture layer out of range or top_k > V.
  absl::StatusOr<TeacherBatch> Run(const torch::Tensor& inputs, const TeacherRunConfig& config,
                                   const torch::Tensor& positions = {});

  // Teacher: Next runs the forward at once (Run with the load's `run`); no
  // lookahead, nothing to stop.
  const ModelConfig& config() const override { return model_->config(); }
  int64_t vocab() const override { return vocab_; }  // the shared size V (the student's)
  absl::StatusOr<TeacherBatch> Next(const TokenBatch& batch) override;
  absl::StatusOr<TeacherEvalResult> Evaluate(LlamaForCausalLM& student, const SequenceData& data,
                                             int64_t batch, int64_t max_rows, int64_t chunk_tokens,
                                             const torch::Device& device, EvalShard shard) override;
  int Lookahead() const override { return 0; }
  absl::Status Enqueue(const TokenBatch&) override { return absl::OkStatus(); }
  absl::Status Stop() override { return absl::OkStatus(); }
  std::string Placement() const override { return ""; }

  LlamaForCausalLM& model() { return model_; }
  const std::string& dir() const { return dir_; }
  bool padded() const { return vocab_ < model_->config().vocab_size; }

 private:
  ColocatedTeacher(std::string dir, LlamaForCausalLM model, int64_t vocab, TeacherRunConfig run);

  std::string dir_;
  LlamaForCausalLM model_;
  int64_t vocab_;
  TeacherRunConfig run_;
  torch::Tensor lm_head_;  // [V, d_t]: the first V rows of the teacher's lm_head
};

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DISTILL_COLOCATED_TEACHER_H_
