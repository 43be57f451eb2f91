#include "worker/train/eval.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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

// The start offsets of this shard's windows, in batches of `batch`.
std::vector<std::vector<int64_t>> ShardBatches(int64_t windows, int64_t batch, int64_t seq_len, EvalShard shard) {
  std::vector<std::vector<int64_t>> out;
  const int world = std::max(1, shard.world);
  for (int64_t i = shard.rank; i < windows; i += world) {
    if (out.empty() || static_cast<int64_t>(out.back().size()) == batch) out.emplace_back();
    out.back().push_back(i * seq_len);
  }
  return out;
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
  r.loss = count > 0 ? total / static_cast<double>(count) : 0.0;
  r.ppl = std::exp(r.loss);
  return r;
}

// Student-vs-teacher sums over target rows, in double on the device (one
// sync at the end).
struct TeacherSums {
  explicit TeacherSums(const torch::Device& device) {
    const auto opts = torch::TensorOptions().dtype(torch::kDouble).device(device);
    ce_s = torch::zeros({}, opts), ce_t = torch::zeros({}, opts), kl = torch::zeros({}, opts),
    agree = torch::zeros({}, opts);
  }
  // ls, lt: log-softmax rows [n, V]; y: targets [n, 1].
  void Add(const torch::Tensor& ls, const torch::Tensor& lt, const torch::Tensor& y) {
    ce_s -= ls.gather(1, y).sum().to(torch::kDouble);
    ce_t -= lt.gather(1, y).sum().to(torch::kDouble);
    kl += (lt.exp() * (lt - ls)).sum().to(torch::kDouble);
    agree += ls.argmax(1).eq(lt.argmax(1)).sum().to(torch::kDouble);
    count += y.size(0);
  }
  TeacherEvalResult Result() const {
    TeacherEvalResult r;
    r.student = Finish(ce_s.item<double>(), count);
    r.teacher = Finish(ce_t.item<double>(), count);
    const double n = static_cast<double>(std::max<int64_t>(1, count));
    r.kl = kl.item<double>() / n;
    r.top1_agreement = agree.item<double>() / n;
    return r;
  }
  torch::Tensor ce_s, ce_t, kl, agree;
  int64_t count = 0;
};

}  // namespace

absl::StatusOr<EvalResult> EvaluateLm(LlamaForCausalLM& model, const TokenDataset& data, int64_t seq_len,
                                      int64_t batch, int64_t max_windows, const torch::Device& device,
                                      EvalShard shard) {
  ASSIGN_OR_RETURN(const int64_t windows, CountWindows(data, seq_len, batch, max_windows));
  torch::InferenceMode guard;
  EvalModeScope mode(*model);
  double total = 0.0;
  int64_t count = 0;
  for (const auto& starts : ShardBatches(windows, batch, seq_len, shard)) {
    auto [inputs, targets] = MakeBatch(data, starts, seq_len, device);
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
                                                      const torch::Device& device, EvalShard shard) {
  ASSIGN_OR_RETURN(const int64_t windows, CountWindows(data, seq_len, batch, max_windows));
  if (chunk_tokens < 1) return absl::InvalidArgumentError("eval: chunk_tokens must be >= 1");
  if (student->config().vocab_size != vocab || teacher->config().vocab_size < vocab) {
    return absl::InvalidArgumentError(absl::StrCat("eval: vocabularies do not fit: student ",
                                                   student->config().vocab_size, ", teacher ",
                                                   teacher->config().vocab_size, ", shared ", vocab));
  }
  torch::InferenceMode guard;
  EvalModeScope student_mode(*student), teacher_mode(*teacher);
  TeacherSums sums(device);
  for (const auto& starts : ShardBatches(windows, batch, seq_len, shard)) {
    auto [inputs, targets] = MakeBatch(data, starts, seq_len, device);
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
      sums.Add(ls, lt, y.narrow(0, c, len));
    }
  }
  return sums.Result();
}

absl::StatusOr<TeacherEvalResult> EvaluateWithTeacherLogits(LlamaForCausalLM& student,
                                                            const TeacherLogitsFn& teacher_logits, int64_t vocab,
                                                            const TokenDataset& data, int64_t seq_len, int64_t batch,
                                                            int64_t max_windows, int64_t chunk_tokens,
                                                            const torch::Device& device, EvalShard shard) {
  ASSIGN_OR_RETURN(const int64_t windows, CountWindows(data, seq_len, batch, max_windows));
  if (chunk_tokens < 1) return absl::InvalidArgumentError("eval: chunk_tokens must be >= 1");
  if (student->config().vocab_size != vocab) {
    return absl::InvalidArgumentError(
        absl::StrCat("eval: vocabularies do not fit: student ", student->config().vocab_size, ", shared ", vocab));
  }
  EvalModeScope student_mode(*student);
  TeacherSums sums(device);
  for (const auto& starts : ShardBatches(windows, batch, seq_len, shard)) {
    auto [inputs, targets] = MakeBatch(data, starts, seq_len, device);
    // Outside inference mode: a remote teacher may receive (and keep)
    // replies to training requests meanwhile, which later enter autograd.
    ASSIGN_OR_RETURN(torch::Tensor zt, teacher_logits(inputs));
    torch::InferenceMode guard;
    if (zt.dim() != 2 || zt.size(0) != targets.numel() || zt.size(1) < vocab) {
      return absl::InternalError(absl::StrCat("eval: teacher logits of shape [", absl::StrJoin(zt.sizes(), ", "),
                                              "] do not fit ", targets.numel(), " targets x ", vocab));
    }
    torch::Tensor hs = student->Hidden(inputs);
    hs = hs.reshape({-1, hs.size(-1)});
    torch::Tensor y = targets.reshape({-1, 1});
    const int64_t n = y.size(0);
    for (int64_t c = 0; c < n; c += chunk_tokens) {
      const int64_t len = std::min(chunk_tokens, n - c);
      torch::Tensor ls = torch::log_softmax(student->Logits(hs.narrow(0, c, len)), -1);
      torch::Tensor lt =
          torch::log_softmax(zt.narrow(0, c, len).narrow(1, 0, vocab).to(ls.device(), torch::kFloat), -1);
      sums.Add(ls, lt, y.narrow(0, c, len));
    }
  }
  return sums.Result();
}

}  // namespace distill::worker
