// The teacher on dedicated ranks (teacher.ranks T > 0): T pipeline stages of
// contiguous decoder layers, balanced by parameters, each in inference mode,
// serving the S student ranks (rank layout: common/plan.h RankLayout). The
// student's end of the stream is RemoteTeacher (remote_teacher.h).
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
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/plan.h"
#include "distill/v1/job.pb.h"
#include "worker/comm/communicator.h"
#include "worker/model/config.h"

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
                                                  const common::RankLayout& layout, torch::Device device);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DISTILL_TEACHER_PIPELINE_H_
