// Feature (intermediate-layer) distillation for one student/teacher layer
// pair: the student's hidden state, through a learned projection when the
// widths differ, is pulled towards the teacher's (MSE or 1 - cosine).
//
// FeatureProjection is an ordinary torch::nn::Module (the trainer registers
// it and hands its weight to the optimizer). FeatureLoss is a plain autograd
// expression (its tensors are [N, d], no chunking needed): the result is
// differentiable w.r.t. student_h and the projection weight; the teacher's
// state never gets a gradient. Thread-compatible; errors are Status.
#ifndef DISTILL_WORKER_DISTILL_FEATURE_LOSS_H_
#define DISTILL_WORKER_DISTILL_FEATURE_LOSS_H_

#include <torch/torch.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "distill/v1/job.pb.h"

namespace distill::worker {

// A learned linear map d_s -> d_t without bias (weight [d_t, d_s], registered
// as "proj.weight"), used when the student's and teacher's widths differ.
// Initialised as torch.nn.Linear does (uniform in +-1/sqrt(d_s)) from its own
// generator seeded with `seed`, so the same seed gives the same weights on
// every rank and run, independent of the global RNG. d_s, d_t >= 1 (LibTorch
// throws otherwise, as for nn::Linear).
class FeatureProjection : public torch::nn::Module {
 public:
  FeatureProjection(int64_t d_s, int64_t d_t, uint64_t seed);

  // x [..., d_s] -> [..., d_t].
  torch::Tensor Forward(const torch::Tensor& x) const;

  int64_t in_features() const { return proj_->options.in_features(); }
  int64_t out_features() const { return proj_->options.out_features(); }
  const torch::Tensor& weight() const { return proj_->weight; }

 private:
  torch::nn::Linear proj_{nullptr};
};

// student_h [N, d_s] (may require grad), teacher_h [N, d_t] (any float dtype,
// detached here); proj_or_null maps d_s -> d_t and is required when
// d_s != d_t. kind: MSE (FEATURE_LOSS_UNSPECIFIED too) = mean over tokens and
// dims of (proj(h_s) - h_t)^2; COSINE = mean over tokens of
// 1 - cos(proj(h_s), h_t), with torch.nn.functional.cosine_similarity's
// eps = 1e-8. Returns a float scalar on the student's device. InvalidArgument
// on mismatched shapes or a missing or mis-sized projection.
absl::StatusOr<torch::Tensor> FeatureLoss(const torch::Tensor& student_h,
                                          const torch::Tensor& teacher_h,
                                          const FeatureProjection* proj_or_null,
                                          distill::v1::FeatureLoss kind);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DISTILL_FEATURE_LOSS_H_
