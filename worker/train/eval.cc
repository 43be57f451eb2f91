#include "worker/train/eval.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace distill::worker {

TokenBatch MakeBatch(const SequenceData& data, const std::vector<int64_t>& rows, const torch::Device& device) {
  const int64_t b = static_cast<int64_t>(rows.size()), l = data.seq_len();
  torch::Tensor inputs = torch::empty({b, l}, torch::kLong), targets = torch::empty({b, l}, torch::kLong);
  torch::Tensor positions = torch::empty({b, l}, torch::kLong);
  for (int64_t i = 0; i < b; ++i) {
    data.Read(rows[static_cast<size_t>(i)], inputs.data_ptr<int64_t>() + i * l,
              targets.data_ptr<int64_t>() + i * l, positions.data_ptr<int64_t>() + i * l);
  }
  TokenBatch batch;
  batch.rows = rows;
  if (data.packed()) {
    batch.counted = targets.reshape({-1}).ne(kIgnoreTarget).nonzero().reshape({-1});
    batch.positions = positions;
  }
  auto to_device = [&](const torch::Tensor& t) {
    return !t.defined() || device.is_cpu() ? t : t.to(device, /*non_blocking=*/true);
  };
  batch.inputs = to_device(inputs);
  batch.targets = to_device(targets);
  batch.positions = to_device(batch.positions);
  batch.counted = to_device(batch.counted);
  return batch;
}

torch::Tensor CountedOnly(const TokenBatch& batch, const torch::Tensor& flat) {
  TORCH_CHECK(flat.dim() >= 1 && flat.size(0) == batch.targets.numel(), "CountedOnly: ", flat.sizes(),
              " does not have one row per target of a ", batch.targets.sizes(), " batch");
  if (!batch.counted.defined()) return flat;
  return flat.index_select(0, batch.counted.to(flat.device()));
}

namespace {

// The number of rows EvaluateLm's contract evaluates.
absl::StatusOr<int64_t> CountRows(const SequenceData& data, int64_t batch, int64_t max_rows) {
  if (batch < 1) return absl::InvalidArgumentError("eval: batch must be >= 1");
  int64_t rows = data.rows();
  if (rows < 1) return absl::InvalidArgumentError("eval: the data has no rows");
  if (max_rows > 0) rows = std::min(rows, max_rows);
  return rows;
}

// This shard's rows, in batches of `batch`.
std::vector<std::vector<int64_t>> ShardBatches(int64_t rows, int64_t batch, EvalShard shard) {
  std::vector<std::vector<int64_t>> out;
  const int world = std::max(1, shard.world);
  for (int64_t i = shard.rank; i < rows; i += world) {
    if (out.empty() || static_cast<int64_t>(out.back().size()) == batch) out.emplace_back();
    out.back().push_back(i);
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
    r.student = MeanEvalResult(ce_s.item<double>(), count);
    r.teacher = MeanEvalResult(ce_t.item<double>(), count);
    const double n = static_cast<double>(std::max<int64_t>(1, count));
    r.kl = kl.item<double>() / n;
    r.top1_agreement = agree.item<double>() / n;
    return r;
  }
  torch::Tensor ce_s, ce_t, kl, agree;
  int64_t count = 0;
};

}  // namespace

absl::StatusOr<EvalResult> EvaluateLm(LlamaForCausalLM& model, const SequenceData& data, int64_t batch,
                                      int64_t max_rows, const torch::Device& device, EvalShard shard) {
  ASSIGN_OR_RETURN(const int64_t rows, CountRows(data, batch, max_rows));
  torch::InferenceMode guard;
  EvalModeScope mode(*model);
  double total = 0.0;
  int64_t count = 0;
  for (const auto& ids : ShardBatches(rows, batch, shard)) {
    TokenBatch b = MakeBatch(data, ids, device);
    torch::Tensor logits = model->forward(b.inputs, b.positions);
    torch::Tensor y = CountedOnly(b, b.targets.reshape({-1}));
    torch::Tensor loss = torch::nn::functional::cross_entropy(
        CountedOnly(b, logits.reshape({-1, logits.size(-1)})), y,
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    total += loss.item<double>();
    count += y.numel();
  }
  return MeanEvalResult(total, count);
}

namespace {

// Adds the student's and teacher's log-softmax rows of the counted targets of
// `b`, chunk by chunk: hs [n, d_s] the student's final hidden rows, and
// `teacher_logits(begin, len)` the teacher's logits of counted rows
// [begin, begin + len) (V' >= vocab columns).
void AddTeacherSums(LlamaForCausalLM& student, const torch::Tensor& hs, const torch::Tensor& y, int64_t vocab,
                    int64_t chunk_tokens, const std::function<torch::Tensor(int64_t, int64_t)>& teacher_logits,
                    TeacherSums* sums) {
  const int64_t n = y.size(0);
  for (int64_t c = 0; c < n; c += chunk_tokens) {
    const int64_t len = std::min(chunk_tokens, n - c);
    torch::Tensor ls = torch::log_softmax(student->Logits(hs.narrow(0, c, len)), -1);
    torch::Tensor lt = torch::log_softmax(teacher_logits(c, len).narrow(1, 0, vocab), -1);
    sums->Add(ls, lt, y.narrow(0, c, len));
  }
}

}  // namespace

absl::StatusOr<TeacherEvalResult> EvaluateWithTeacher(LlamaForCausalLM& student, LlamaForCausalLM& teacher,
                                                      int64_t vocab, const SequenceData& data, int64_t batch,
                                                      int64_t max_rows, int64_t chunk_tokens,
                                                      const torch::Device& device, EvalShard shard) {
  ASSIGN_OR_RETURN(const int64_t rows, CountRows(data, batch, max_rows));
  if (chunk_tokens < 1) return absl::InvalidArgumentError("eval: chunk_tokens must be >= 1");
  if (student->config().vocab_size != vocab || teacher->config().vocab_size < vocab) {
    return absl::InvalidArgumentError(absl::StrCat("eval: vocabularies do not fit: student ",
                                                   student->config().vocab_size, ", teacher ",
                                                   teacher->config().vocab_size, ", shared ", vocab));
  }
  torch::InferenceMode guard;
  EvalModeScope student_mode(*student), teacher_mode(*teacher);
  TeacherSums sums(device);
  for (const auto& ids : ShardBatches(rows, batch, shard)) {
    TokenBatch b = MakeBatch(data, ids, device);
    torch::Tensor hs = student->Hidden(b.inputs, {}, nullptr, b.positions);
    torch::Tensor ht = teacher->Hidden(b.inputs, {}, nullptr, b.positions);
    hs = CountedOnly(b, hs.reshape({-1, hs.size(-1)}));
    ht = CountedOnly(b, ht.reshape({-1, ht.size(-1)}));
    torch::Tensor y = CountedOnly(b, b.targets.reshape({-1})).reshape({-1, 1});
    AddTeacherSums(student, hs, y, vocab, chunk_tokens,
                   [&](int64_t c, int64_t len) { return teacher->Logits(ht.narrow(0, c, len)); }, &sums);
  }
  return sums.Result();
}

absl::StatusOr<TeacherEvalResult> EvaluateWithTeacherLogits(LlamaForCausalLM& student,
                                                            const TeacherLogitsFn& teacher_logits, int64_t vocab,
                                                            const SequenceData& data, int64_t batch,
                                                            int64_t max_rows, int64_t chunk_tokens,
                                                            const torch::Device& device, EvalShard shard) {
  ASSIGN_OR_RETURN(const int64_t rows, CountRows(data, batch, max_rows));
  if (chunk_tokens < 1) return absl::InvalidArgumentError("eval: chunk_tokens must be >= 1");
  if (student->config().vocab_size != vocab) {
    return absl::InvalidArgumentError(
        absl::StrCat("eval: vocabularies do not fit: student ", student->config().vocab_size, ", shared ", vocab));
  }
  EvalModeScope student_mode(*student);
  TeacherSums sums(device);
  for (const auto& ids : ShardBatches(rows, batch, shard)) {
    TokenBatch b = MakeBatch(data, ids, device);
    // Outside inference mode: a remote teacher may receive (and keep)
    // replies to training requests meanwhile, which later enter autograd.
    ASSIGN_OR_RETURN(torch::Tensor zt, teacher_logits(b));
    torch::InferenceMode guard;
    if (zt.dim() != 2 || zt.size(0) != b.targets.numel() || zt.size(1) < vocab) {
      return absl::InternalError(absl::StrCat("eval: teacher logits of shape [", absl::StrJoin(zt.sizes(), ", "),
                                              "] do not fit ", b.targets.numel(), " targets x ", vocab));
    }
    zt = CountedOnly(b, zt);
    torch::Tensor hs = student->Hidden(b.inputs, {}, nullptr, b.positions);
    hs = CountedOnly(b, hs.reshape({-1, hs.size(-1)}));
    torch::Tensor y = CountedOnly(b, b.targets.reshape({-1})).reshape({-1, 1});
    AddTeacherSums(student, hs, y, vocab, chunk_tokens,
                   [&](int64_t c, int64_t len) { return zt.narrow(0, c, len).to(hs.device(), torch::kFloat); }, &sums);
  }
  return sums.Result();
}

EvalResult MeanEvalResult(double total, int64_t count) {
  EvalResult r;
  r.tokens = count;
  r.loss = count > 0 ? total / static_cast<double>(count) : 0.0;
  r.ppl = std::exp(r.loss);
  return r;
}

}  // namespace distill::worker
