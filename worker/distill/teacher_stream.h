// Internal to the teacher pipeline (teacher_pipeline.h): the wire format of
// the teacher -> student stream and the plan both ends derive from the spec,
// so that every rank agrees on who sends what to whom. Note [Stream order] in
// teacher_pipeline.cc. Plain functions and value types; thread-compatible.
#ifndef DISTILL_WORKER_DISTILL_TEACHER_STREAM_H_
#define DISTILL_WORKER_DISTILL_TEACHER_STREAM_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/comm/communicator.h"
#include "worker/distill/stream_header.h"
#include "worker/distill/teacher.h"
#include "worker/distill/teacher_pipeline.h"
#include "worker/model/config.h"

namespace distill::worker::teacher_stream {

// One tag per message kind, on the world communicator (p2p only).
enum Tag : int {
  kTagRequest = 7100,      // student -> stage 0: header (kind TRAIN, EVAL or STOP)
  kTagIds = 7101,          // student -> stage 0: ids [b, L] int64 (not after STOP)
  kTagStageHeader = 7102,  // stage j -> j + 1: the request's header
  kTagStageHidden = 7103,  // stage j -> j + 1: hidden state [b, L, d_t] float32 (not after STOP)
  kTagFeature = 7104,      // owning stage -> student: [N, d_t] float32 per capture layer, ascending
  kTagReply = 7105,        // last stage -> student: the request's header, echoed
  kTagDense = 7106,        // last stage -> student: DENSE logits [N, V] float32
  kTagTopkLogits = 7107,   // TOPK: [N, k] float32
  kTagTopkIds = 7108,      // TOPK: [N, k] int32 (int64 in TeacherOutput)
  kTagTopkLse = 7109,      // TOPK: [N] float32
  kTagHidden = 7110,       // HIDDEN: final normalised hidden state [N, d_t] float32
  kTagEvalLogits = 7111,   // EVAL: dense logits [N, V] float32
  kTagStagePositions = 7112,  // packed: stage j -> j + 1: positions [b, L] int64, after the hidden state
};

torch::Tensor MakeHeader(Kind kind, int64_t student, int64_t request, int64_t b, int64_t l,
                         const TeacherRunConfig& run, bool packed = false);
// A received header's values (`header`: the int64 [kHeaderLen] CPU tensor).
Header ToHeader(const torch::Tensor& header);
// What a teacher stage accepts (Note [Stream header bounds]): `run`'s
// transport fields, `students` students, `max_tokens` tokens per request.
HeaderLimits LimitsFor(const TeacherRunConfig& run, int64_t students, int64_t max_tokens);
// "train request 3 of student 1 [2 x 16]".
std::string DescribeHeader(const torch::Tensor& header);
int64_t CaptureHash(const std::vector<int64_t>& layers);

// Parameter counts the split balances (SplitTeacherLayers): each decoder
// layer; the embeddings (stage 0); final norm + lm_head (the last stage; V*D
// also when tied: the last stage holds its own copy and does the matmul).
std::vector<int64_t> LayerParams(const ModelConfig& teacher);
int64_t EmbedParams(const ModelConfig& teacher);
int64_t HeadParams(const ModelConfig& teacher);
// SplitTeacherLayers over the teacher's counts.
absl::StatusOr<std::vector<StageRange>> SplitTeacher(const ModelConfig& teacher, int stages);
// The stage whose range holds `layer`.
int StageOf(const std::vector<StageRange>& stages, int64_t layer);

int64_t Bytes(const torch::Tensor& t);

// Sends in flight with the tensors they read, so nothing blocks on a send.
class PendingSends {
 public:
  explicit PendingSends(Communicator& comm) : comm_(comm) {}
  // Starts sending `t` (made contiguous; kept alive until complete).
  absl::Status Send(const torch::Tensor& t, int dst, int tag, const std::string& what);
  // Drops completed sends (non-blocking; drives MPI progress).
  absl::Status Reap();
  // Waits for all (each bounded by the communicator's timeout).
  absl::Status Drain();
  size_t size() const { return works_.size(); }
  int64_t bytes() const { return bytes_; }

 private:
  struct Item {
    torch::Tensor tensor;
    std::unique_ptr<Work> work;
  };
  Communicator& comm_;
  std::vector<Item> works_;
  int64_t bytes_ = 0;
};

}  // namespace distill::worker::teacher_stream

#endif  // DISTILL_WORKER_DISTILL_TEACHER_STREAM_H_
