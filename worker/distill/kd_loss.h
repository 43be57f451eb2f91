// The knowledge-distillation losses, computed in chunks of tokens so that peak
// memory does not grow with N * V (N target tokens, V vocabulary).
//
// The student side enters as its final normalised hidden state h_s [N, d_s]
// and its lm_head weight W_s [V, d_s]: logits are formed chunk by chunk inside
// the loss and never exist for the whole batch (the same holds for the
// teacher in the HIDDEN transport). Gradients with respect to h_s and W_s are
// exact; they are computed chunk by chunk during the forward and handed back
// by a custom autograd node (Note [Chunked loss] in kd_loss.cc).
//
// Loss of one token (z_s, z_t: student and teacher logit rows; y: target id):
//   ce  = -log softmax(z_s)[y]
//   kd  = D(p_T, q_T), p_T = softmax(z_t / T), q_T = softmax(z_s / T), with D
//         forward KL(p||q), reverse KL(q||p) or generalised JSD(beta), each
//         multiplied by T^2 when t2_scale.
//   total = alpha * kd + (1 - alpha) * ce, averaged over the N tokens.
// JSD(beta) = beta KL(p||m) + (1 - beta) KL(q||m), m = beta p + (1 - beta) q
// (GKD paper, Eq. 1). In TRL's GKDTrainer.generalized_jsd_loss (per-token
// mean over unmasked labels) FORWARD_KL is beta = 0, REVERSE_KL beta = 1 and
// JSD the same beta; TRL divides the logits by T but has no T^2 (t2_scale =
// false) and no CE term (alpha = 1); tests/reference/hf_trl.py maps the rest.
// beta is restricted to the open interval (0, 1): at both
// ends the divergence vanishes identically (m equals one of p, q); near them
// JSD / beta -> KL(p||q) (beta -> 0) and JSD / (1 - beta) -> KL(q||p)
// (beta -> 1), so use FORWARD_KL / REVERSE_KL for those limits.
// TOPK transport: both distributions are collapsed onto the teacher's k ids
// plus one tail bucket (1 - sum of the k probabilities); the teacher's k
// probabilities are exact because it sends the log-sum-exp of its full row.
// The teacher's tail is clamped to [1e-12, 1] (its float32 log-sum-exp can
// make it slightly negative); with k = V there is no tail bucket and the loss
// equals DENSE. Note [Top-k tail] in kd_loss.cc.
//
// Memory: besides the inputs, at most grad_W [V, d_s] + grad_h [N, d_s] (kept
// by the autograd node until backward, float32) plus a few float32
// [chunk_tokens, V] buffers (measured: ~5 for forward KL, ~6 for JSD;
// tests/unit/worker/distill/kd_loss_test.cc checks
// peak <= grad_W + grad_h + 12 * chunk_tokens * V * 4 bytes + 1 MiB). The
// softmax math is float32 with autocast disabled. The node's backward can run
// once (its gradients are handed over, not copied).
// Thread-compatible; LibTorch errors become Status.
#ifndef DISTILL_WORKER_DISTILL_KD_LOSS_H_
#define DISTILL_WORKER_DISTILL_KD_LOSS_H_

#include <torch/torch.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/plan.h"
#include "distill/v1/job.pb.h"

namespace distill::worker {

// The loss, temperature, alpha, t2_scale, beta (JSD only) and chunk_tokens
// (common/plan.h LossConfig: default-constructed, the spec's defaults).
using KdLossConfig = common::LossConfig;

// What the teacher sends for N target positions; exactly the tensors of
// `transport` are defined. The vocabulary V is the student's (the shared
// size): padded teacher columns beyond V never count. DENSE logits may have
// V' >= V columns and the HIDDEN lm_head V' >= V rows; only the first V are
// used (V' < V is InvalidArgument). Teacher tensors may live on another
// device than the student's; they are moved chunk by chunk.
struct TeacherOutput {
  distill::v1::LogitTransport transport = distill::v1::DENSE;
  torch::Tensor logits;       // DENSE: [N, V'] teacher logits (any float dtype)
  torch::Tensor topk_logits;  // TOPK: [N, k] the k largest raw logits z (not / T)
  torch::Tensor topk_ids;     // TOPK: [N, k] int64 vocabulary ids of those logits
  torch::Tensor topk_lse;     // TOPK: [N] float32 logsumexp(z / T) over the full row of V
  torch::Tensor hidden;       // HIDDEN: [N, d_t] final normalised hidden state
  torch::Tensor lm_head;      // HIDDEN: [V', d_t] the teacher's lm_head weight (no grad)
};

// Builds the TOPK transport from dense teacher logits [N, V'] (V' >= V; only
// the first V columns count) at temperature T. Used by the teacher side.
absl::StatusOr<TeacherOutput> MakeTopK(const torch::Tensor& teacher_logits, int64_t vocab,
                                       int64_t k, double temperature);

struct KdLossResult {
  torch::Tensor total;  // scalar, differentiable w.r.t. student_hidden and student_lm_head
  double ce = 0.0;      // mean cross-entropy (T = 1), for reporting
  double kd = 0.0;      // mean soft loss (with T^2 when t2_scale), for reporting
};

// student_hidden [N, d_s] and student_lm_head [V, d_s] (float32, may require
// grad); targets [N] int64 in [0, V). The teacher's tensors never get grads.
// The gradient work runs only when grad mode is on and an input requires
// grad. InvalidArgument on mismatched shapes, N = 0, a bad k, ids out of
// range or repeated within a row, T <= 0, alpha outside [0, 1], beta outside
// (0, 1) for JSD or chunk_tokens < 1; ResourceExhausted when LibTorch runs
// out of memory; Internal for any other LibTorch error.
absl::StatusOr<KdLossResult> KdLoss(const torch::Tensor& student_hidden,
                                    const torch::Tensor& student_lm_head,
                                    const torch::Tensor& targets, const TeacherOutput& teacher,
                                    const KdLossConfig& config);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DISTILL_KD_LOSS_H_
