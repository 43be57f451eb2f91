// AdamW with decoupled weight decay, the same math as torch.optim.AdamW
// (amsgrad off, maximize off): per parameter p with gradient g at step t,
//   p *= 1 - lr * wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
// Parameters without decay (norms, biases) sit in their own group. State is
// exposed by name for checkpoints. Not thread-safe: the training thread owns it.
#ifndef DISTILL_WORKER_TRAIN_OPTIMIZER_H_
#define DISTILL_WORKER_TRAIN_OPTIMIZER_H_

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/train/optimizer_state.h"

namespace distill::worker {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // applied to parameters with decay = true only
};

struct NamedParam {
  std::string name;
  torch::Tensor param;
  bool decay = true;
};

// One AdamW update of `p` (in place) from gradient `g` with moments `m`, `v`
// (float32 like p, updated in place) at the 1-based step `step`; `decay`
// applies options.weight_decay. The one implementation of the math above,
// for whole parameters (AdamW) and for shards of them (ShardedAdamW).
void AdamWUpdate(torch::Tensor& p, const torch::Tensor& g, torch::Tensor& m, torch::Tensor& v,
                 double lr, int64_t step, bool decay, const AdamWOptions& options);

// What the trainer steps: plain AdamW, where every rank holds all the state,
// or ShardedAdamW (sharded_adamw.h), where each of S ranks holds 1/S of it
// (ZeRO) and, with bf16 weights, fp32 master weights.
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // Drops the gradients of the step before.
  virtual void ZeroGrad() = 0;
  // Scales the gradients so that their global L2 norm is at most max_norm
  // (0 = no clipping) and returns the norm before, as ClipGradNorm.
  virtual absl::StatusOr<double> ClipGradients(double max_norm) = 0;
  // One update with learning rate `lr`; after it every rank holds the
  // updated weights.
  virtual absl::Status Update(double lr) = 0;
  virtual int64_t step_count() const = 0;
  // Bytes of optimizer state (moments, master weights) this rank holds.
  virtual int64_t StateBytes() const = 0;

  // Checkpoints (Note [Optimizer state files]): the file this rank writes
  // into a checkpoint directory, or "" when only rank 0 writes, and its
  // tensors.
  virtual std::string StateFile(int rank) const = 0;
  virtual std::vector<std::pair<std::string, torch::Tensor>> StateTensors() const = 0;
  // Restores this rank's state from a checkpoint of any rank count.
  virtual absl::Status LoadState(const OptimizerStateReader& reader) = 0;
};

class AdamW : public Optimizer {
 public:
  AdamW(std::vector<NamedParam> params, const AdamWOptions& options);

  // One update with learning rate `lr` for every parameter that has a grad.
  void Step(double lr);
  // Sets every grad to zero (keeps the buffers).
  void ZeroGrad() override;

  int64_t step_count() const override { return step_; }
  const std::vector<NamedParam>& params() const { return params_; }

  absl::StatusOr<double> ClipGradients(double max_norm) override;
  absl::Status Update(double lr) override;
  int64_t StateBytes() const override;
  std::string StateFile(int rank) const override;
  std::vector<std::pair<std::string, torch::Tensor>> StateTensors() const override { return StateDict(); }
  absl::Status LoadState(const OptimizerStateReader& reader) override;

  // "NAME.exp_avg" and "NAME.exp_avg_sq" for every parameter, plus the step
  // count as a 0-dim int64 tensor "step".
  std::vector<std::pair<std::string, torch::Tensor>> StateDict() const;
  // Restores StateDict() output; InvalidArgument naming a missing tensor or a
  // shape mismatch.
  absl::Status LoadStateDict(const std::map<std::string, torch::Tensor>& state);

 private:
  std::vector<NamedParam> params_;
  std::vector<torch::Tensor> exp_avg_, exp_avg_sq_;
  AdamWOptions options_;
  int64_t step_ = 0;
};

// Parameters split for AdamW: weight decay on matrices, none on 1-d tensors
// (norm weights, biases). Only parameters with requires_grad are returned.
std::vector<NamedParam> TrainableParams(torch::nn::Module& module);

// Scales all grads so that their global L2 norm is at most `max_norm`;
// returns the norm before clipping (as torch.nn.utils.clip_grad_norm_).
double ClipGradNorm(const std::vector<NamedParam>& params, double max_norm);

// The decay after warmup. Each is a transformers schedule (run by LambdaLR):
//   kCosine   get_cosine_with_min_lr_schedule_with_warmup(min_lr=min_lr):
//             lr -> min_lr at total_steps along a half cosine, which goes on
//             past total_steps (it rises again, as in transformers);
//   kLinear   get_polynomial_decay_schedule_with_warmup(lr_end=min_lr,
//             power=1): lr -> min_lr at total_steps, then min_lr;
//   kConstant get_constant_schedule_with_warmup: lr (min_lr unused).
// With min_lr = 0, kCosine and kLinear are get_cosine_schedule_with_warmup
// and get_linear_schedule_with_warmup.
enum class LrSchedule { kCosine, kLinear, kConstant };

// Learning rate of the 0-based optimizer step `step`, exactly (to double
// rounding) what transformers' `schedule` gives the optimizer at that step:
// warmup lr * step / warmup for step < warmup (so step 0 runs at lr 0 when
// warmup > 0), then the decay above. Requires lr > 0 and 0 <= min_lr <= lr
// (common/spec.cc checks both); warmup may equal total_steps.
double LearningRate(int64_t step, int64_t total_steps, int64_t warmup, double lr, double min_lr,
                    LrSchedule schedule = LrSchedule::kCosine);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_TRAIN_OPTIMIZER_H_
