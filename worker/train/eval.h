// Evaluation of a causal LM on rows of a SequenceData (sequence_data.h):
// mean next-token cross-entropy and perplexity over the counted targets. For
// plain text the rows are non-overlapping windows (the `distill-worker eval`
// contract: inputs t[i*L : i*L+L], targets t[i*L+1 : i*L+L+1] for
// i in 0 .. floor((N-1)/L)-1); for instruction data packed examples whose
// targets outside the responses count in no average. The same for a student
// against its teacher (KL, top-1 agreement, the teacher's own loss). Runs in
// inference mode; thread-compatible.
#ifndef DISTILL_WORKER_TRAIN_EVAL_H_
#define DISTILL_WORKER_TRAIN_EVAL_H_

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/data/sequence_data.h"
#include "worker/model/llama.h"

namespace distill::worker {

struct EvalResult {
  double loss = 0.0;   // mean cross-entropy (nats) over the counted targets
  double ppl = 0.0;    // exp(loss)
  int64_t tokens = 0;  // number of counted targets
};

// The result of `total` nats summed over `count` targets (loss 0 for none).
EvalResult MeanEvalResult(double total, int64_t count);

// A micro-batch of rows on the device.
struct TokenBatch {
  torch::Tensor inputs;     // [B, L] int64
  torch::Tensor targets;    // [B, L] int64; kIgnoreTarget where no loss counts
  torch::Tensor positions;  // [B, L] int64 for packed data (Note [Packed rows]); undefined for plain text
  // The flat indices (into B * L) of the counted targets; undefined when every
  // target counts (plain text).
  torch::Tensor counted;
  // The SequenceData row index of each of the B rows (MakeBatch): a cached
  // teacher (worker/distill/cached_teacher.h) reads its output by row.
  std::vector<int64_t> rows;
};

// Rows `rows` of `data` as a batch on `device`.
TokenBatch MakeBatch(const SequenceData& data, const std::vector<int64_t>& rows, const torch::Device& device);

// x [B*L, ...] (or [B, L, ...], flattened first) restricted to the batch's
// counted targets, in order; x itself when every target counts.
torch::Tensor CountedOnly(const TokenBatch& batch, const torch::Tensor& x);

// Data-parallel evaluation: rank r of `world` evaluates rows i with
// i % world == r (of the rows the contract selects); the callers combine
// the ranks' results weighted by their target counts. A rank may get none
// (tokens 0, loss 0).
struct EvalShard {
  int rank = 0;
  int world = 1;
};

// `batch` rows per forward; `max_rows` > 0 evaluates only the first
// max_rows rows.
absl::StatusOr<EvalResult> EvaluateLm(LlamaForCausalLM& model, const SequenceData& data, int64_t batch,
                                      int64_t max_rows, const torch::Device& device, EvalShard shard = {});

struct TeacherEvalResult {
  EvalResult student;           // the student's loss, ppl and target count
  double kl = 0.0;              // mean over targets of KL(p_teacher || p_student) at T = 1, nats
  double top1_agreement = 0.0;  // fraction of targets where both argmaxes agree
  EvalResult teacher;           // the teacher's own loss and ppl on the same targets
};

// EvaluateLm for `student` and `teacher` on the same rows. `vocab` is the
// shared vocabulary (the student's): teacher logits beyond it (padding rows)
// are dropped before its softmax. Logits exist for at most `chunk_tokens`
// targets at a time. InvalidArgument as EvaluateLm, or if the student's
// vocabulary is not `vocab` or the teacher's is smaller.
absl::StatusOr<TeacherEvalResult> EvaluateWithTeacher(LlamaForCausalLM& student, LlamaForCausalLM& teacher,
                                                      int64_t vocab, const SequenceData& data, int64_t batch,
                                                      int64_t max_rows, int64_t chunk_tokens,
                                                      const torch::Device& device, EvalShard shard = {});

// Dense teacher logits [b*L, V' >= V] for a batch's inputs [b, L] (and
// positions) (a teacher on other ranks: RemoteTeacher::EvalLogits).
using TeacherLogitsFn = std::function<absl::StatusOr<torch::Tensor>(const TokenBatch& batch)>;

// EvaluateWithTeacher with the teacher's logits from `teacher_logits`; the
// teacher result is the same given the same logits.
absl::StatusOr<TeacherEvalResult> EvaluateWithTeacherLogits(LlamaForCausalLM& student,
                                                            const TeacherLogitsFn& teacher_logits, int64_t vocab,
                                                            const SequenceData& data, int64_t batch,
                                                            int64_t max_rows, int64_t chunk_tokens,
                                                            const torch::Device& device, EvalShard shard = {});

}  // namespace distill::worker

#endif  // DISTILL_WORKER_TRAIN_EVAL_H_
