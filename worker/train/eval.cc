#include "worker/train/eval.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace distill::worker {

std::pair<torch::Tensor, torch::Tensor> MakeBatch(const TokenDataset& data, const std::vector<int64_t>& starts,
                                                  int64_t seq_len, const torch::Device& device) {
  const int64_t b = static_cast<int64_t>(starts.size());
  torch::Tensor buf = torch::empty({b, seq_len + 1}, torch::kLong);
  int64_t* p = buf.data_ptr<int64_t>();
  for (int64_t i = 0; i < b; ++i) data.Read(starts[i], seq_len + 1, p + i * (seq_len + 1));
  torch::Tensor inputs = buf.narrow(1, 0, seq_len).contiguous();
  torch::Tensor targets = buf.narrow(1, 1, seq_len).contiguous();
  if (device.is_cpu()) return {inputs, targets};
  return {inputs.to(device, /*non_blocking=*/true), targets.to(device, /*non_blocking=*/true)};
}

absl::StatusOr<EvalResult> EvaluateLm(LlamaForCausalLM& model, const TokenDataset& data, int64_t seq_len,
                                      int64_t batch, int64_t max_windows, const torch::Device& device) {
  if (seq_len < 1 || batch < 1) return absl::InvalidArgumentError("eval: seq_len and batch must be >= 1");
  int64_t windows = (data.size() - 1) / seq_len;
  if (windows < 1) {
    return absl::InvalidArgumentError(absl::StrCat("eval: the token stream has ", data.size(),
                                                   " tokens, fewer than seq_len + 1 = ", seq_len + 1));
  }
  if (max_windows > 0) windows = std::min(windows, max_windows);
  torch::InferenceMode guard;
  const bool was_training = model->is_training();
  model->eval();
  double total = 0.0;
  int64_t count = 0;
  for (int64_t w = 0; w < windows; w += batch) {
    std::vector<int64_t> starts;
    for (int64_t i = w; i < std::min(windows, w + batch); ++i) starts.push_back(i * seq_len);
    auto [inputs, targets] = MakeBatch(data, starts, seq_len, device);
    torch::Tensor logits = model->forward(inputs);
    torch::Tensor loss = torch::nn::functional::cross_entropy(
        logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}),
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    total += loss.item<double>();
    count += targets.numel();
  }
  if (was_training) model->train();
  EvalResult r;
  r.tokens = count;
  r.loss = total / static_cast<double>(count);
  r.ppl = std::exp(r.loss);
  return r;
}

}  // namespace distill::worker
