// RemoteTeacher: the student's end of the stream from the dedicated teacher
// ranks (teacher.ranks T > 0; the stages are teacher_pipeline.h), one
// implementation of Teacher (teacher.h). worker/runtime builds it and hands
// it to the distillation objective (RunDistill's TeacherFactory). Students
// send ids ahead (credit-based: at most runtime.prefetch requests in flight),
// so the teacher computes the next micro-batches while the student trains.
// Note [Stream order] in teacher_pipeline.cc. Thread-compatible: the training
// thread owns it.
#ifndef DISTILL_WORKER_DISTILL_REMOTE_TEACHER_H_
#define DISTILL_WORKER_DISTILL_REMOTE_TEACHER_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/plan.h"
#include "distill/v1/job.pb.h"
#include "worker/comm/communicator.h"
#include "worker/distill/teacher.h"
#include "worker/model/config.h"

namespace distill::worker {

class RemoteTeacher : public Teacher {
 public:
  // Reads the teacher's config.json (and for the HIDDEN transport the first
  // V rows of its lm_head, onto `device`) without its other weights; checks
  // the vocabulary and tokenizer as ColocatedTeacher::Load does (errors start
  // with "teacher.model: "). `run` is the transport and the capture layers
  // (teacher layers whose outputs the feature pairs need).
  static absl::StatusOr<std::unique_ptr<RemoteTeacher>> Create(
      const distill::v1::JobSpec& spec, Communicator& world, const common::RankLayout& layout,
      const ModelConfig& student, const std::string& student_dir, const TeacherRunConfig& run,
      torch::Device device);
  ~RemoteTeacher() override;

  // Queues a future training micro-batch (its ids [b, L], with the positions
  // of packed rows): sent at once while fewer than runtime.prefetch requests
  // are in flight, else when an earlier reply has been taken.
  absl::Status Enqueue(const TokenBatch& batch) override;
  // The teacher's output for the oldest queued micro-batch, which must equal
  // `batch` (with nothing queued, `batch` is sent first). `seconds` in the
  // result is the time blocked waiting for it; `bytes` what was received.
  absl::StatusOr<TeacherBatch> Next(const TokenBatch& batch) override;
  // Dense teacher logits [b*L, V] (float32, first V columns) for an eval
  // batch. Replies to queued training requests received meanwhile are kept.
  absl::StatusOr<torch::Tensor> EvalLogits(const TokenBatch& batch);
  // EvaluateWithTeacherLogits (train/eval.h) over EvalLogits.
  absl::StatusOr<TeacherEvalResult> Evaluate(LlamaForCausalLM& student, const SequenceData& data,
                                             int64_t batch, int64_t max_rows, int64_t chunk_tokens,
                                             const torch::Device& device, EvalShard shard) override;
  // Tells stage 0 this student is done (after draining its replies).
  // Idempotent; the destructor does not call it.
  absl::Status Stop() override;
  int Lookahead() const override;  // runtime.prefetch
  std::string Placement() const override;

  const ModelConfig& config() const override;  // the teacher's
  int64_t vocab() const override;              // the shared V

 private:
  struct Impl;
  explicit RemoteTeacher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DISTILL_REMOTE_TEACHER_H_
