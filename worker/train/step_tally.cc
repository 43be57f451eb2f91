#include "worker/train/step_tally.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/status_macros.h"

namespace distill::worker {

StepTally::StepTally(const torch::Device& device)
    : loss_sum_(torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device))) {}

void StepTally::Add(const LossParts& parts) {
  loss_sum_ += parts.total.detach().to(torch::kDouble);
  wait_s_ += parts.wait_s;
  rank_wait_s_ += parts.wait_s;
  for (const auto& [name, v] : parts.values) sums_[name] += v;
  ++micro_batches_;
}

void StepTally::Finish(int64_t micro_batches) {
  loss_ = loss_sum_.item<double>() / static_cast<double>(micro_batches);
}

absl::Status StepTally::AverageOver(Communicator& students) {
  std::vector<double> x = {loss_, wait_s_};
  for (const auto& [name, v] : sums_) x.push_back(v);
  torch::Tensor packed = torch::tensor(x, torch::kDouble);
  RETURN_IF_ERROR(students.AllReduce(packed, ReduceOp::kAvg, "reported losses"));
  const double* v = packed.data_ptr<double>();
  loss_ = v[0];
  wait_s_ = v[1];
  int i = 2;
  for (auto& [name, s] : sums_) s = v[i++];
  return absl::OkStatus();
}

StepValues StepTally::values(int64_t micro_batch_targets) const {
  return StepValues{sums_, micro_batches_, micro_batch_targets};
}

absl::Status CombineEval(Communicator& students, EvalRecord* r) {
  if (students.size() == 1) return absl::OkStatus();  // x * n / n would round
  const double n = static_cast<double>(r->tokens);
  std::vector<double> x = {r->loss * n, n};
  for (const auto& [name, v] : r->fields.scalars) x.push_back(v * n);
  torch::Tensor sums = torch::tensor(x, torch::kDouble);
  RETURN_IF_ERROR(students.AllReduce(sums, ReduceOp::kSum, "eval sums"));
  const double* v = sums.data_ptr<double>();
  const double total = std::max(1.0, v[1]);
  r->tokens = static_cast<int64_t>(v[1]);
  r->loss = v[0] / total;
  r->ppl = std::exp(r->loss);
  int i = 2;
  for (auto& [name, s] : r->fields.scalars) s = v[i++] / total;
  return absl::OkStatus();
}

}  // namespace distill::worker
