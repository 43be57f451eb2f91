// What a student asks of its teacher, wherever the teacher runs: the
// teacher's output for each training micro-batch in the job's logit transport
// (dense logits, top-k, or the final hidden state) with the captured
// intermediate features, the evaluation against the teacher, and the
// lookahead and stop of a teacher that runs ahead of the student.
// Implementations: ColocatedTeacher (colocated_teacher.h, teacher.ranks 0:
// the teacher in the student's process) and RemoteTeacher (remote_teacher.h:
// the student's end of the stream from dedicated teacher ranks,
// teacher_pipeline.h). DistillObjective (distill_trainer.h) holds one.
// Thread-compatible: the training thread owns it.
#ifndef DISTILL_WORKER_DISTILL_TEACHER_H_
#define DISTILL_WORKER_DISTILL_TEACHER_H_

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/plan.h"
#include "worker/data/sequence_data.h"
#include "worker/distill/kd_loss.h"
#include "worker/model/config.h"
#include "worker/model/llama.h"
#include "worker/train/eval.h"

namespace distill::worker {

// The transport, its parameters and the capture layers (common/plan.h: the
// defaults are the spec's).
using TeacherRunConfig = common::TeacherRunConfig;

struct TeacherBatch {
  TeacherOutput output;                       // N = B * L rows, vocabulary V
  std::map<int64_t, torch::Tensor> features;  // layer -> [N, d_t] float32
  double seconds = 0.0;  // colocated: the forward (synchronised on CUDA); remote: time blocked
  int64_t bytes = 0;     // size of output + features: what crosses (or would cross) the wire
};

class Teacher {
 public:
  virtual ~Teacher() = default;

  virtual const ModelConfig& config() const = 0;  // the teacher's
  virtual int64_t vocab() const = 0;              // the shared size V (the student's)

  // The teacher's output for the training micro-batch `batch` (inputs
  // [b, L] int64 on the student's device, and the positions of packed rows:
  // the teacher sees the same packing): the transport of the run
  // configuration the teacher was built with, and the outputs of its capture
  // layers, for all b * L slots.
  virtual absl::StatusOr<TeacherBatch> Next(const TokenBatch& batch) = 0;

  // `student` evaluated against the teacher (train/eval.h:
  // EvaluateWithTeacher): student loss, KL(teacher || student) at T = 1,
  // top-1 agreement, the teacher's own loss.
  virtual absl::StatusOr<TeacherEvalResult> Evaluate(
      LlamaForCausalLM& student, const SequenceData& data, int64_t batch, int64_t max_rows,
      int64_t chunk_tokens, const torch::Device& device, EvalShard shard) = 0;

  // How many training micro-batches ahead the student announces (Enqueue)
  // before asking for one (Next); 0 when the teacher computes on demand.
  virtual int Lookahead() const = 0;
  // Announces a future training micro-batch, in the order Next will ask for it.
  virtual absl::Status Enqueue(const TokenBatch& batch) = 0;
  // Called once the training loop has returned without an error (finished,
  // stopped or cancelled): a teacher on other ranks is told this student is
  // done. Idempotent.
  virtual absl::Status Stop() = 0;

  // Where the teacher runs, for the job description: "" (in this process) or
  // ", on 2 dedicated teacher ranks".
  virtual std::string Placement() const = 0;
};

// What a teacher is built from once the student is loaded
// (DistillObjective::Prepare).
struct TeacherSetup {
  const ModelConfig& student;  // the student's config
  std::string student_dir;     // its model directory, or its init config's (tokenizer check)
  TeacherRunConfig run;        // normalised (NormalizeRunConfig in colocated_teacher.h)
  torch::Device device;        // the student's
};

// Builds the teacher of a distill job; the remote one comes from
// worker/runtime, which knows the world (RemoteTeacher::Create).
using TeacherFactory =
    std::function<absl::StatusOr<std::unique_ptr<Teacher>>(const TeacherSetup& setup)>;

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DISTILL_TEACHER_H_
