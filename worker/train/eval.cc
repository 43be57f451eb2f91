#include "worker/train/eval.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

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

namespace {

// The number of windows EvaluateLm's contract evaluates.
absl::StatusOr<int64_t> CountWindows(const TokenDataset& data, int64_t seq_len, int64_t batch, int64_t max_windows) {
  if (seq_len < 1 || batch < 1) return absl::InvalidArgumentError("eval: seq_len and batch must be >= 1");
  int64_t windows = (data.size() - 1) / seq_len;
  if (windows < 1) {
    return absl::InvalidArgumentError(absl::StrCat("eval: the token stream has ", data.size(),
                                                   " tokens, fewer than seq_len + 1 = ", seq_len + 1));
  }
  if (max_windows > 0) windows = std::min(windows, max_windows);
  return windows;
}

std::vector<int64_t> WindowStarts(int64_t first, int64_t end, int64_t seq_len) {
  std::vector<int64_t> starts;
  for (int64_t i = first; i < end; ++i) starts.push_back(i * seq_len);
  return starts;
}

// Puts a module in eval mode for the scope and restores training mode after.
class EvalModeScope {
 public:
  explicit EvalModeScope(torch::nn::Module& m) : m_(m), was_training_(m.is_training()) { m_.eval(); }
  ~EvalModeScope() {
    if (was_training_) m_.train();
  }

 private:
  torch::nn::Module& m_;
  bool was_training_;
};

EvalResult Finish(double total, int64_t count) {
  EvalResult r;
  r.tokens = count;
  r.loss = total / static_cast<double>(count);
  r.ppl = std::exp(r.loss);
  return r;
}

}  // namespace

absl::StatusOr<EvalResult> EvaluateLm(LlamaForCausalLM& model, const TokenDataset& data, int64_t seq_len,
                                      int64_t batch, int64_t max_windows, const torch::Device& device) {
  ASSIGN_OR_RETURN(const int64_t windows, CountWindows(data, seq_len, batch, max_windows));
  torch::InferenceMode guard;
  EvalModeScope mode(*model);
  double total = 0.0;
  int64_t count = 0;
  for (int64_t w = 0; w < windows; w += batch) {
    auto [inputs, targets] = MakeBatch(data, WindowStarts(w, std::min(windows, w + batch), seq_len), seq_len, device);
    torch::Tensor logits = model->forward(inputs);
    torch::Tensor loss = torch::nn::functional::cross_entropy(
        logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}),
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    total += loss.item<double>();
    count += targets.numel();
  }
  return Finish(total, count);
}


absl::StatusOr<TeacherEvalResult> EvaluateWithTeacher(LlamaForCausalLM& student, LlamaForCausalLM& teacher,
                                                      int64_t vocab, const TokenDataset& data, int64_t seq_len,
                                                      int64_t batch, int64_t max_windows, int64_t chunk_tokens,
                                                      const torch::Device& device) {
  ASSIGN_OR_RETURN(const int64_t windows, CountWindows(data, seq_len, batch, max_windows));
  if (chunk_tokens < 1) return absl::InvalidArgumentError("eval: chunk_tokens must be >= 1");
  if (student->config().vocab_size != vocab || teacher->config().vocab_size < vocab) {
    return absl::InvalidArgumentError(absl::StrCat("eval: vocabularies do not fit: student ",
                                                   student->config().vocab_size, ", teacher ",
                                                   teacher->config().vocab_size, ", shared ", vocab));
  }
  torch::InferenceMode guard;
  EvalModeScope student_mode(*student), teacher_mode(*teacher);
  // Sums in double on the device; one sync at the end.
  const auto opts = torch::TensorOptions().dtype(torch::kDouble).device(device);
  torch::Tensor ce_s = torch::zeros({}, opts), ce_t = torch::zeros({}, opts), kl = torch::zeros({}, opts),
                agree = torch::zeros({}, opts);
  int64_t count = 0;
  for (int64_t w = 0; w < windows; w += batch) {
    auto [inputs, targets] = MakeBatch(data, WindowStarts(w, std::min(windows, w + batch), seq_len), seq_len, device);
    torch::Tensor hs = student->Hidden(inputs);
    torch::Tensor ht = teacher->Hidden(inputs);
    hs = hs.reshape({-1, hs.size(-1)});
    ht = ht.reshape({-1, ht.size(-1)});
    torch::Tensor y = targets.reshape({-1, 1});
    const int64_t n = y.size(0);
    for (int64_t c = 0; c < n; c += chunk_tokens) {
      const int64_t len = std::min(chunk_tokens, n - c);
      torch::Tensor ls = torch::log_softmax(student->Logits(hs.narrow(0, c, len)), -1);
      torch::Tensor lt = torch::log_softmax(teacher->Logits(ht.narrow(0, c, len)).narrow(1, 0, vocab), -1);
      torch::Tensor yc = y.narrow(0, c, len);
      ce_s -= ls.gather(1, yc).sum().to(torch::kDouble);
      ce_t -= lt.gather(1, yc).sum().to(torch::kDouble);
      kl += (lt.exp() * (lt - ls)).sum().to(torch::kDouble);
      agree += ls.argmax(1).eq(lt.argmax(1)).sum().to(torch::kDouble);
    }
    count += n;
  }
  TeacherEvalResult r;
  r.student = Finish(ce_s.item<double>(), count);
  r.teacher = Finish(ce_t.item<double>(), count);
  r.kl = kl.item<double>() / static_cast<double>(count);
  r.top1_agreement = agree.item<double>() / static_cast<double>(count);
  return r;
}

}  // namespace distill::worker
