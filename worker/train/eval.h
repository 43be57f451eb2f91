// Evaluation of a causal LM on a token stream: mean next-token cross-entropy
// and perplexity over non-overlapping windows (the `distill-worker eval`
// contract: inputs t[i*L : i*L+L], targets t[i*L+1 : i*L+L+1] for
// i in 0 .. floor((N-1)/L)-1), and the same for a student against its teacher
// (KL, top-1 agreement, the teacher's own loss). Runs in inference mode;
// thread-compatible.
#ifndef DISTILL_WORKER_TRAIN_EVAL_H_
#define DISTILL_WORKER_TRAIN_EVAL_H_

#include <torch/torch.h>

#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"
#include "worker/data/token_shard.h"
#include "worker/model/llama.h"

namespace distill::worker {

struct EvalResult {
  double loss = 0.0;   // mean cross-entropy (nats) over all targets
  double ppl = 0.0;    // exp(loss)
  int64_t tokens = 0;  // number of targets
};

// Data-parallel evaluation: rank r of `world` evaluates windows i with
// i % world == r (of the windows the contract selects); the callers combine
// the ranks' results weighted by their target counts. A rank may get none
// (tokens 0, loss 0).
struct EvalShard {
  int rank = 0;
  int world = 1;
};

// `batch` windows per forward; `max_windows` > 0 evaluates only the first
// max_windows windows. InvalidArgument if the stream has no full window.
absl::StatusOr<EvalResult> EvaluateLm(LlamaForCausalLM& model, const TokenDataset& data, int64_t seq_len,
                                      int64_t batch, int64_t max_windows, const torch::Device& device,
                                      EvalShard shard = {});

struct TeacherEvalResult {
  EvalResult student;           // the student's loss, ppl and target count
  double kl = 0.0;              // mean over targets of KL(p_teacher || p_student) at T = 1, nats
  double top1_agreement = 0.0;  // fraction of targets where both argmaxes agree
  EvalResult teacher;           // the teacher's own loss and ppl on the same targets
};

// EvaluateLm for `student` and `teacher` on the same windows. `vocab` is the
// shared vocabulary (the student's): teacher logits beyond it (padding rows)
// are dropped before its softmax. Logits exist for at most `chunk_tokens`
// targets at a time. InvalidArgument as EvaluateLm, or if the student's
// vocabulary is not `vocab` or the teacher's is smaller.
absl::StatusOr<TeacherEvalResult> EvaluateWithTeacher(LlamaForCausalLM& student, LlamaForCausalLM& teacher,
                                                      int64_t vocab, const TokenDataset& data, int64_t seq_len,
                                                      int64_t batch, int64_t max_windows, int64_t chunk_tokens,
                                                      const torch::Device& device, EvalShard shard = {});

// Dense teacher logits [b*L, V' >= V] for inputs [b, L] (a teacher on other
// ranks: RemoteTeacher::EvalLogits).
using TeacherLogitsFn = std::function<absl::StatusOr<torch::Tensor>(const torch::Tensor& inputs)>;

// EvaluateWithTeacher with the teacher's logits from `teacher_logits`; the
// teacher result is the same given the same logits.
absl::StatusOr<TeacherEvalResult> EvaluateWithTeacherLogits(LlamaForCausalLM& student,
                                                            const TeacherLogitsFn& teacher_logits, int64_t vocab,
                                                            const TokenDataset& data, int64_t seq_len, int64_t batch,
                                                            int64_t max_windows, int64_t chunk_tokens,
                                                            const torch::Device& device, EvalShard shard = {});

// Copies the windows starting at `starts` (each L + 1 tokens) into inputs and
// targets [b, L] (int64) on `device`.
std::pair<torch::Tensor, torch::Tensor> MakeBatch(const TokenDataset& data, const std::vector<int64_t>& starts,
                                                  int64_t seq_len, const torch::Device& device);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_TRAIN_EVAL_H_
