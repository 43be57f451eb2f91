#include "worker/train/optimizer.h"

#include <ATen/Parallel.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include <cmath>
#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace distill::worker {

namespace {

// Note [Fused AdamW]: for CPU float32 contiguous tensors the update is one
// pass over p, g, m, v instead of nine tensor ops (each a pass over memory).
// It is the same per-element float32 arithmetic, in the same order, as the op
// sequence in AdamW::Step (and as torch.optim.AdamW's): scalars rounded to
// float, (value * t1) * t2 for addcmul, (value * t1) / t2 for addcdiv. Only
// FMA contraction inside ATen's vector kernels may round differently (within
// Note [Optimizer tolerance] of the tests). On x86-64 with AVX2 the loop runs
// 8 floats at a time (mul/add/div/sqrt, no FMA: the same roundings).
struct AdamWCoefficients {
  float decay;  // 1 - lr * weight_decay, or 1 without decay
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float bias2_sqrt, eps, neg_step_size;
};

bool Fusable(std::initializer_list<const torch::Tensor*> tensors) {
  for (const torch::Tensor* t : tensors) {
    if (!t->device().is_cpu() || t->scalar_type() != torch::kFloat || !t->is_contiguous()) {
      return false;
    }
  }
  return true;
}

// Element i of the update.
inline void AdamWElement(float* p, const float* g, float* m, float* v, int64_t i,
                         const AdamWCoefficients& c) {
  const float gi = g[i];
  const float mi = m[i] * c.beta1 + c.one_minus_beta1 * gi;
  const float vi = v[i] * c.beta2 + c.one_minus_beta2 * gi * gi;
  const float denom = std::sqrt(vi) / c.bias2_sqrt + c.eps;
  p[i] = p[i] * c.decay + c.neg_step_size * mi / denom;
  m[i] = mi;
  v[i] = vi;
}

#if defined(__x86_64__) && defined(__GNUC__)
// AdamWElement on 8 floats at a time (AVX2 without FMA, so the same roundings);
// returns the number of elements done, a multiple of 8.
__attribute__((target("avx2"))) int64_t AdamWAvx2(float* p, const float* g, float* m, float* v,
                                                  int64_t n, const AdamWCoefficients& c) {
  const __m256 beta1 = _mm256_set1_ps(c.beta1), one_minus_beta1 = _mm256_set1_ps(c.one_minus_beta1);
  const __m256 beta2 = _mm256_set1_ps(c.beta2), one_minus_beta2 = _mm256_set1_ps(c.one_minus_beta2);
  const __m256 bias2_sqrt = _mm256_set1_ps(c.bias2_sqrt), eps = _mm256_set1_ps(c.eps);
  const __m256 decay = _mm256_set1_ps(c.decay), neg_step_size = _mm256_set1_ps(c.neg_step_size);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gi = _mm256_loadu_ps(g + i);
    const __m256 mi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(m + i), beta1),
                                    _mm256_mul_ps(one_minus_beta1, gi));
    const __m256 vi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + i), beta2),
                                    _mm256_mul_ps(_mm256_mul_ps(one_minus_beta2, gi), gi));
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bias2_sqrt), eps);
    const __m256 pi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(p + i), decay),
                                    _mm256_div_ps(_mm256_mul_ps(neg_step_size, mi), denom));
    _mm256_storeu_ps(p + i, pi);
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
  }
  return i;
}

bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}
#endif

void FusedAdamWStep(torch::Tensor& p, const torch::Tensor& g, torch::Tensor& m, torch::Tensor& v,
                    const AdamWCoefficients& c) {
  float* pp = p.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  float* mp = m.data_ptr<float>();
  float* vp = v.data_ptr<float>();
  at::parallel_for(0, p.numel(), at::internal::GRAIN_SIZE, [&](int64_t begin, int64_t end) {
    int64_t i = begin;
#if defined(__x86_64__) && defined(__GNUC__)
    if (HasAvx2()) i += AdamWAvx2(pp + i, gp + i, mp + i, vp + i, end - begin, c);
#endif
    for (; i < end; ++i) AdamWElement(pp, gp, mp, vp, i, c);
  });
}

}  // namespace

AdamW::AdamW(std::vector<NamedParam> params, const AdamWOptions& options)
    : params_(std::move(params)), options_(options) {
  torch::NoGradGuard no_grad;
  for (const auto& p : params_) {
    exp_avg_.push_back(torch::zeros_like(p.param, torch::MemoryFormat::Preserve));
    exp_avg_sq_.push_back(torch::zeros_like(p.param, torch::MemoryFormat::Preserve));
  }
}

void AdamWUpdate(torch::Tensor& p, const torch::Tensor& g, torch::Tensor& m, torch::Tensor& v,
                 double lr, int64_t step, bool decay, const AdamWOptions& o) {
  torch::NoGradGuard no_grad;
  const double b1 = o.beta1, b2 = o.beta2;
  const double bias1 = 1.0 - std::pow(b1, static_cast<double>(step));
  const double bias2_sqrt = std::sqrt(1.0 - std::pow(b2, static_cast<double>(step)));
  const double step_size = lr / bias1;
  decay = decay && o.weight_decay != 0;
  if (Fusable({&p, &g, &m, &v})) {
    const AdamWCoefficients c{decay ? static_cast<float>(1.0 - lr * o.weight_decay) : 1.0f,
                              static_cast<float>(b1),
                              static_cast<float>(1.0 - b1),
                              static_cast<float>(b2),
                              static_cast<float>(1.0 - b2),
                              static_cast<float>(bias2_sqrt),
                              static_cast<float>(o.eps),
                              static_cast<float>(-step_size)};
    FusedAdamWStep(p, g, m, v, c);
    return;
  }
  if (decay) p.mul_(1.0 - lr * o.weight_decay);
  m.mul_(b1).add_(g, 1.0 - b1);
  v.mul_(b2).addcmul_(g, g, 1.0 - b2);
  torch::Tensor denom = (v.sqrt() / bias2_sqrt).add_(o.eps);
  p.addcdiv_(m, denom, -step_size);
}

void AdamW::Step(double lr) {
  ++step_;
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor& p = params_[i].param;
    const torch::Tensor& g = p.grad();
    if (!g.defined()) continue;
    AdamWUpdate(p, g, exp_avg_[i], exp_avg_sq_[i], lr, step_, params_[i].decay, options_);
  }
}

absl::StatusOr<double> AdamW::ClipGradients(double max_norm) { return ClipGradNorm(params_, max_norm); }

absl::Status AdamW::Update(double lr) {
  Step(lr);
  return absl::OkStatus();
}

int64_t AdamW::StateBytes() const {
  int64_t bytes = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    bytes += exp_avg_[i].nbytes() + exp_avg_sq_[i].nbytes();
  }
  return bytes;
}

// Only rank 0 writes: every rank holds the same state.
std::string AdamW::StateFile(int rank) const { return rank == 0 ? kPlainStateFile : ""; }

absl::Status AdamW::LoadState(const OptimizerStateReader& reader) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string& name = params_[i].name;
    const int64_t n = params_[i].param.numel();
    for (auto [kind, dst] : {std::pair<const char*, torch::Tensor*>{"exp_avg", &exp_avg_[i]},
                             {"exp_avg_sq", &exp_avg_sq_[i]}}) {
      ASSIGN_OR_RETURN(torch::Tensor t, reader.Read(kind, name, 0, n));
      dst->copy_(t.view(dst->sizes()));
    }
  }
  step_ = reader.step();
  return absl::OkStatus();
}

void AdamW::ZeroGrad() {
  for (auto& p : params_) {
    if (p.param.grad().defined()) p.param.mutable_grad().zero_();
  }
}

std::vector<std::pair<std::string, torch::Tensor>> AdamW::StateDict() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back(params_[i].name + ".exp_avg", exp_avg_[i]);
    out.emplace_back(params_[i].name + ".exp_avg_sq", exp_avg_sq_[i]);
  }
  out.emplace_back("step", torch::tensor(step_, torch::kLong));
  return out;
}

absl::Status AdamW::LoadStateDict(const std::map<std::string, torch::Tensor>& state) {
  auto step_it = state.find("step");
  if (step_it == state.end() || step_it->second.numel() != 1) {
    return absl::InvalidArgumentError("optimizer state: missing 'step'");
  }
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    for (auto [suffix, dst] : {std::pair<const char*, torch::Tensor*>{".exp_avg", &exp_avg_[i]},
                               {".exp_avg_sq", &exp_avg_sq_[i]}}) {
      const std::string key = params_[i].name + suffix;
      auto it = state.find(key);
      if (it == state.end()) return absl::InvalidArgumentError(absl::StrCat("optimizer state: missing '", key, "'"));
      if (it->second.sizes() != dst->sizes()) {
        return absl::InvalidArgumentError(absl::StrCat("optimizer state: '", key, "' has shape ",
                                                       c10::str(it->second.sizes()), ", expected ",
                                                       c10::str(dst->sizes())));
      }
      dst->copy_(it->second);
    }
  }
  step_ = step_it->second.item<int64_t>();
  return absl::OkStatus();
}

std::vector<NamedParam> TrainableParams(torch::nn::Module& module) {
  std::vector<NamedParam> out;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    if (!p.value().requires_grad()) continue;
    out.push_back({p.key(), p.value(), /*decay=*/p.value().dim() >= 2});
  }
  return out;
}

double ClipGradNorm(const std::vector<NamedParam>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> norms;
  for (const auto& p : params) {
    if (p.param.grad().defined()) norms.push_back(p.param.grad().norm(2).to(torch::kFloat));
  }
  if (norms.empty()) return 0.0;
  const double total = torch::stack(norms).norm(2).item<double>();
  if (max_norm > 0) {
    // As torch.nn.utils.clip_grad_norm_: coef = max_norm / (total + 1e-6), clamped to 1.
    const double coef = std::min(1.0, max_norm / (total + 1e-6));
    if (coef < 1.0) {
      for (const auto& p : params) {
        if (p.param.grad().defined()) p.param.mutable_grad().mul_(coef);
      }
    }
  }
  return total;
}

namespace {

// The LambdaLR factor of transformers' schedule at `step` (see LrSchedule),
// with its operations in the same order so that the doubles round alike.
double LrFactor(int64_t step, int64_t total_steps, int64_t warmup, double lr, double min_lr,
                LrSchedule schedule) {
  const double s = static_cast<double>(step);
  if (step < warmup) return s / static_cast<double>(std::max<int64_t>(1, warmup));
  switch (schedule) {
    case LrSchedule::kConstant:
      return 1.0;
    case LrSchedule::kLinear: {
      // transformers divides by zero at step == total_steps == warmup; the
      // decay has no length there, so it has ended.
      if (step > total_steps || total_steps == warmup) return min_lr / lr;
      const double remaining =
          1.0 - static_cast<double>(step - warmup) / static_cast<double>(total_steps - warmup);
      return ((lr - min_lr) * remaining + min_lr) / lr;
    }
    case LrSchedule::kCosine:
      break;
  }
  const double progress = static_cast<double>(step - warmup) /
                          static_cast<double>(std::max<int64_t>(1, total_steps - warmup));
  const double rate = min_lr / lr;
  const double factor = 0.5 * (1.0 + std::cos(M_PI * progress)) * (1.0 - rate) + rate;
  return std::max(0.0, factor);
}

}  // namespace

double LearningRate(int64_t step, int64_t total_steps, int64_t warmup, double lr, double min_lr,
                    LrSchedule schedule) {
  return lr * LrFactor(step, total_steps, warmup, lr, min_lr, schedule);
}

}  // namespace distill::worker
