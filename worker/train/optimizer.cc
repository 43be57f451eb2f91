#include "worker/train/optimizer.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace distill::worker {

AdamW::AdamW(std::vector<NamedParam> params, const AdamWOptions& options)
    : params_(std::move(params)), options_(options) {
  torch::NoGradGuard no_grad;
  for (const auto& p : params_) {
    exp_avg_.push_back(torch::zeros_like(p.param, torch::MemoryFormat::Preserve));
    exp_avg_sq_.push_back(torch::zeros_like(p.param, torch::MemoryFormat::Preserve));
  }
}

void AdamW::Step(double lr) {
  torch::NoGradGuard no_grad;
  ++step_;
  const double b1 = options_.beta1, b2 = options_.beta2;
  const double bias1 = 1.0 - std::pow(b1, static_cast<double>(step_));
  const double bias2_sqrt = std::sqrt(1.0 - std::pow(b2, static_cast<double>(step_)));
  const double step_size = lr / bias1;
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor& p = params_[i].param;
    const torch::Tensor& g = p.grad();
    if (!g.defined()) continue;
    if (params_[i].decay && options_.weight_decay != 0) p.mul_(1.0 - lr * options_.weight_decay);
    exp_avg_[i].mul_(b1).add_(g, 1.0 - b1);
    exp_avg_sq_[i].mul_(b2).addcmul_(g, g, 1.0 - b2);
    torch::Tensor denom = (exp_avg_sq_[i].sqrt() / bias2_sqrt).add_(options_.eps);
    p.addcdiv_(exp_avg_[i], denom, -step_size);
  }
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

double LearningRate(int64_t step, int64_t total_steps, int64_t warmup, double lr, double min_lr) {
  if (step < warmup) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const double span = static_cast<double>(std::max<int64_t>(1, total_steps - warmup));
  const double progress = std::min(1.0, static_cast<double>(step - warmup) / span);
  return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace distill::worker
