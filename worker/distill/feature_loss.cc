#include "worker/distill/feature_loss.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"

namespace distill::worker {

namespace {

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("FeatureLoss: ", what));
}

std::string Shape(const torch::Tensor& t) {
  return t.defined() ? c10::str(t.sizes()) : "undefined";
}

}  // namespace

FeatureProjection::FeatureProjection(int64_t d_s, int64_t d_t, uint64_t seed) {
  proj_ =
      register_module("proj", torch::nn::Linear(torch::nn::LinearOptions(d_s, d_t).bias(false)));
  // nn.Linear's default, kaiming_uniform_(a=sqrt(5)), is U(-1/sqrt(fan_in),
  // 1/sqrt(fan_in)); drawn on the CPU from our own generator so that the
  // global RNG stream (dropout, data) is untouched.
  torch::NoGradGuard no_grad;
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const double bound = 1.0 / std::sqrt(static_cast<double>(d_s));
  torch::Tensor w = torch::empty({d_t, d_s}, torch::kFloat);
  w.uniform_(-bound, bound, gen);
  proj_->weight.copy_(w);
}

torch::Tensor FeatureProjection::Forward(const torch::Tensor& x) const {
  return torch::linear(x, proj_->weight);
}

absl::StatusOr<torch::Tensor> FeatureLoss(const torch::Tensor& student_h,
                                          const torch::Tensor& teacher_h,
                                          const FeatureProjection* proj_or_null,
                                          distill::v1::FeatureLoss kind) {
  if (!student_h.defined() || !at::isFloatingType(student_h.scalar_type()) ||
      student_h.dim() != 2) {
    return Invalid(
        absl::StrCat("student hidden must be floating [N, d_s], got ", Shape(student_h)));
  }
  if (!teacher_h.defined() || !at::isFloatingType(teacher_h.scalar_type()) ||
      teacher_h.dim() != 2 || teacher_h.size(0) != student_h.size(0)) {
    return Invalid(absl::StrCat("teacher hidden must be floating [N=", student_h.size(0),
                                ", d_t], got ", Shape(teacher_h)));
  }
  const int64_t d_s = student_h.size(1), d_t = teacher_h.size(1);
  if (proj_or_null == nullptr && d_s != d_t) {
    return Invalid(
        absl::StrCat("student width ", d_s, " != teacher width ", d_t, " and no projection given"));
  }
  if (proj_or_null != nullptr &&
      (proj_or_null->in_features() != d_s || proj_or_null->out_features() != d_t)) {
    return Invalid(absl::StrCat("projection maps ", proj_or_null->in_features(), " -> ",
                                proj_or_null->out_features(), ", the pair needs ", d_s, " -> ",
                                d_t));
  }
  if (kind != distill::v1::FEATURE_LOSS_UNSPECIFIED && kind != distill::v1::MSE &&
      kind != distill::v1::COSINE) {
    return Invalid(absl::StrCat("unknown feature loss ", static_cast<int>(kind)));
  }
  if (student_h.size(0) == 0) return Invalid("no tokens (N = 0)");
  try {
    const torch::Tensor s = proj_or_null != nullptr ? proj_or_null->Forward(student_h) : student_h;
    const torch::Tensor t = teacher_h.detach().to(s.device(), s.scalar_type());
    if (kind == distill::v1::COSINE) {
      namespace F = torch::nn::functional;
      const torch::Tensor cos =
          F::cosine_similarity(s, t, F::CosineSimilarityFuncOptions().dim(1).eps(1e-8));
      return (1.0 - cos).mean();
    }
    return (s - t).pow(2).mean();
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("FeatureLoss: ", e.what_without_backtrace()));
  }
}

}  // namespace distill::worker
