// The teacher on dedicated ranks (teacher.ranks T > 0): T pipeline stages of
// contiguous decoder layers, balanced by parameters, each in inference mode,
// serving the S student ranks (rank layout: rank_layout.h).
//
// Data flow of one request (a student's micro-batch; ../shared/design.md):
//   student s --ids [b, L]--> stage 0: embed + its layers
//   stage j --hidden [b, L, d_t]--> stage j + 1 ... (the request's header
//     travels with it)
//   stage owning a mapped teacher layer --that layer's output [b*L, d_t]--> s
//   last stage: final norm, then the job's transport --> s: dense logits
//     [b*L, V], or top-k (values, ids, full-row log-sum-exp), or the final
//     hidden state [b*L, d_t] (the student holds the teacher's lm_head).
// Students send ids ahead (credit-based: at most runtime.prefetch requests in
// flight per student), so the teacher computes the next micro-batches while
// the student trains. Stage 0 serves the students round-robin among those
// with a request waiting, so teacher work is spread fairly over all S
// streams; later stages serve in the order stage 0 did.
//
// Note [Stream order] (implementation in teacher_pipeline.cc) writes down the
// order of every rank's sends and receives and why it cannot deadlock.
// Every wait after a stage's first request is bounded by runtime.timeout_s
// (communicator.h; Waits in teacher_pipeline.cc).
#ifndef DISTILL_WORKER_DISTILL_TEACHER_PIPELINE_H_
#define DISTILL_WORKER_DISTILL_TEACHER_PIPELINE_H_

#include <torch/torch.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "distill/v1/job.pb.h"
#include "worker/comm/communicator.h"
#include "worker/distill/colocated_teacher.h"
#include "worker/model/config.h"
#include "worker/runtime/rank_layout.h"

namespace distill::worker {

// Decoder layers [begin, end) of one stage.
struct StageRange {
  int64_t begin = 0;
  int64_t end = 0;
};

// Splits `layer_params` (parameters of each decoder layer) into `stages`
// contiguous non-empty ranges whose parameter sums (stage 0 also counts
// `embed_params`, the last stage `head_params`: final norm + lm_head) are as
// even as possible (minimises the largest stage). InvalidArgument
// "teacher.ranks: 5 pipeline stages, but the teacher has 4 layers" when
// stages > layers.
absl::StatusOr<std::vector<StageRange>> SplitTeacherLayers(const std::vector<int64_t>& layer_params,
                                                           int64_t embed_params, int64_t head_params,
                                                           int stages);

struct TeacherStageStats {
  int64_t requests = 0;
  double busy_s = 0.0;   // computing
  double total_s = 0.0;  // from start of serving to the last student's stop
  int64_t bytes_sent = 0;
};

// The main of a teacher rank (layout.is_student() false): loads this stage's
// part of spec.teacher.model (its layers; stage 0 the embeddings, the last
// stage the final norm and lm_head), checks it as the colocated teacher does
// (Note [Shared vocabulary] in teacher.h; the student's config comes from
// student.model or student.init), then serves requests until every student
// has sent its stop. `world` is the world communicator.
absl::StatusOr<TeacherStageStats> RunTeacherStage(const distill::v1::JobSpec& spec, Communicator& world,
                                                  const RankLayout& layout, torch::Device device);

// A student's end of the stream.
class RemoteTeacher {
 public:
  // Reads the teacher's config.json (and for the HIDDEN transport the first
  // V rows of its lm_head, onto `device`) without its other weights; checks
  // the vocabulary and tokenizer as Teacher::Load does (errors start with
  // "teacher.model: "). `run` is the transport and the capture layers (teacher
  // layers whose outputs the feature pairs need).
  static absl::StatusOr<std::unique_ptr<RemoteTeacher>> Create(const distill::v1::JobSpec& spec,
                                                               Communicator& world, const RankLayout& layout,
                                                               const ModelConfig& student,
                                                               const std::string& student_dir,
                                                               const TeacherRunConfig& run,
                                                               torch::Device device);
  ~RemoteTeacher();

  // Queues a future training micro-batch's ids [b, L] (int64): sent at once
  // while fewer than runtime.prefetch requests are in flight, else when an
  // earlier reply has been taken.
  absl::Status Enqueue(const torch::Tensor& inputs);
  // The teacher's output for the oldest queued micro-batch, which must equal
  // `inputs` (with nothing queued, `inputs` is sent first). `seconds` in the
  // result is the time blocked waiting for it; `bytes` what was received.
  absl::StatusOr<TeacherBatch> Next(const torch::Tensor& inputs);
  // Dense teacher logits [b*L, V] (float32, first V columns) for an eval
  // batch. Replies to queued training requests received meanwhile are kept.
  absl::StatusOr<torch::Tensor> EvalLogits(const torch::Tensor& inputs);
  // Tells stage 0 this student is done (after draining its replies).
  // Idempotent; the destructor does not call it.
  absl::Status Stop();

  const ModelConfig& config() const;  // the teacher's
  int64_t vocab() const;              // the shared V

 private:
  struct Impl;
  explicit RemoteTeacher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DISTILL_TEACHER_PIPELINE_H_
