#include "worker/distill/colocated_teacher.h"

#include <torch/cuda.h>

#include <chrono>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "worker/data/hf_tokenizer.h"
#include "worker/model/hf_io.h"

namespace distill::worker {
namespace fs = std::filesystem;

namespace {

constexpr char kField[] = "teacher.model";

absl::Status Bad(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(kField, ": ", what));
}

int64_t Bytes(const torch::Tensor& t) {
  return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0;
}

// Whether the extra rows of a teacher larger than the student can be padding:
// not when the teacher's own tokenizer uses ids at or beyond V. Without a
// readable tokenizer.json there is nothing to contradict the padding.
absl::Status CheckPadding(const std::string& dir, int64_t teacher_vocab, int64_t student_vocab) {
  const std::string path = (fs::path(dir) / "tokenizer.json").string();
  if (!fs::exists(path)) return absl::OkStatus();
  auto tokenizer = HfTokenizer::Load(path);
  if (!tokenizer.ok()) return absl::OkStatus();
  if ((*tokenizer)->vocab_size() > student_vocab) {
    return Bad(absl::StrCat(
        dir, " has vocab_size ", teacher_vocab, " and its tokenizer uses ",
        (*tokenizer)->vocab_size(), " ids, more than the student's vocab_size ", student_vocab,
        ": the extra rows are real tokens, not padding; teacher and student must share the "
        "tokenizer"));
  }
  return absl::OkStatus();
}

}  // namespace

ColocatedTeacher::ColocatedTeacher(std::string dir, LlamaForCausalLM model, int64_t vocab,
                                   TeacherRunConfig run)
    : dir_(std::move(dir)), model_(std::move(model)), vocab_(vocab), run_(std::move(run)) {
  lm_head_ = model_->LmHeadWeight().detach().narrow(0, 0, vocab_);
}

TeacherRunConfig NormalizeRunConfig(TeacherRunConfig run) {
  if (run.transport == distill::v1::LOGIT_TRANSPORT_UNSPECIFIED) run.transport = distill::v1::DENSE;
  std::set<int64_t> layers(run.capture_layers.begin(), run.capture_layers.end());
  run.capture_layers.assign(layers.begin(), layers.end());
  return run;
}

absl::Status CheckTeacherVocabulary(const std::string& dir, const ModelConfig& teacher,
                                    const ModelConfig& student) {
  const int64_t tv = teacher.vocab_size, sv = student.vocab_size;
  if (tv < sv) {
    return Bad(absl::StrCat(
        dir, " has vocab_size ", tv, ", smaller than the student's ", sv,
        "; teacher and student must share the tokenizer (a teacher may only be larger by "
        "padding rows)"));
  }
  if (tv > sv) RETURN_IF_ERROR(CheckPadding(dir, tv, sv));
  return absl::OkStatus();
}

absl::Status CheckSameTokenizer(const std::string& teacher_dir, const std::string& tokenizer_json,
                                const std::string& field) {
  const std::string mine = (fs::path(teacher_dir) / "tokenizer.json").string();
  if (tokenizer_json.empty() || !fs::exists(mine) || !fs::exists(tokenizer_json))
    return absl::OkStatus();
  ASSIGN_OR_RETURN(std::string a, common::ReadFileToString(mine));
  ASSIGN_OR_RETURN(std::string b, common::ReadFileToString(tokenizer_json));
  if (a != b) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", tokenizer_json, " differs from the teacher's ", mine,
                     "; teacher and student must share the tokenizer"));
  }
  return absl::OkStatus();
}

absl::Status CheckTeacherRunConfig(const TeacherRunConfig& config, int64_t teacher_layers,
                                   int64_t vocab) {
  for (int64_t l : config.capture_layers) {
    if (l < 0 || l >= teacher_layers) {
      return Bad(
          absl::StrCat("layer ", l, " out of range, the teacher has ", teacher_layers, " layers"));
    }
  }
  if (config.transport == distill::v1::TOPK && (config.top_k < 1 || config.top_k > vocab)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "distill.top_k: ", config.top_k, " out of range, the vocabulary has ", vocab, " entries"));
  }
  return absl::OkStatus();
}

absl::StatusOr<TeacherOutput> BuildTeacherOutput(LlamaForCausalLM& model, const torch::Tensor& h,
                                                 int64_t vocab, const TeacherRunConfig& config) {
  const int64_t n = h.size(0);
  TeacherOutput out;
  out.transport = config.transport;
  switch (config.transport) {
    case distill::v1::TOPK: {
      std::vector<torch::Tensor> logits, ids, lse;
      const int64_t chunk = std::max<int64_t>(1, config.chunk_tokens);
      for (int64_t c = 0; c < n; c += chunk) {
        torch::Tensor z = model->Logits(h.narrow(0, c, std::min(chunk, n - c)));
        ASSIGN_OR_RETURN(TeacherOutput part, MakeTopK(z, vocab, config.top_k, config.temperature));
        logits.push_back(part.topk_logits);
        ids.push_back(part.topk_ids);
        lse.push_back(part.topk_lse);
      }
      out.topk_logits = torch::cat(logits);
      out.topk_ids = torch::cat(ids);
      out.topk_lse = torch::cat(lse);
      break;
    }
    case distill::v1::HIDDEN:
      out.hidden = h.to(torch::kFloat);
      break;
    default:
      out.transport = distill::v1::DENSE;
      out.logits = model->Logits(h).narrow(1, 0, vocab);
      break;
  }
  return out;
}

absl::StatusOr<std::unique_ptr<ColocatedTeacher>> ColocatedTeacher::Load(
    const std::string& dir, const ModelConfig& student, const std::string& student_dir,
    torch::Device device, TeacherRunConfig run) {
  // The config first: a vocabulary mismatch is reported before the weights load.
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig((fs::path(dir) / "config.json").string()));
  RETURN_IF_ERROR(CheckTeacherVocabulary(dir, config, student));
  ASSIGN_OR_RETURN(LlamaForCausalLM model, LoadHfModel(dir, device));
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  model->eval();
  std::unique_ptr<ColocatedTeacher> teacher(
      new ColocatedTeacher(dir, std::move(model), student.vocab_size, std::move(run)));
  if (!student_dir.empty()) {
    RETURN_IF_ERROR(teacher->CheckTokenizer((fs::path(student_dir) / "tokenizer.json").string(),
                                            "student.model"));
  }
  return teacher;
}

absl::Status ColocatedTeacher::CheckTokenizer(const std::string& tokenizer_json,
                                     const std::string& field) const {
  return CheckSameTokenizer(dir_, tokenizer_json, field);
}

absl::StatusOr<TeacherBatch> ColocatedTeacher::Next(const TokenBatch& batch) {
  return Run(batch.inputs, run_, batch.positions);
}

absl::StatusOr<TeacherEvalResult> ColocatedTeacher::Evaluate(LlamaForCausalLM& student, const SequenceData& data,
                                                             int64_t batch, int64_t max_rows, int64_t chunk_tokens,
                                                             const torch::Device& device, EvalShard shard) {
  return EvaluateWithTeacher(student, model_, vocab_, data, batch, max_rows, chunk_tokens, device, shard);
}

absl::StatusOr<TeacherBatch> ColocatedTeacher::Run(const torch::Tensor& inputs, const TeacherRunConfig& config,
                                                   const torch::Tensor& positions) {
  RETURN_IF_ERROR(CheckTeacherRunConfig(config, model_->config().num_hidden_layers, vocab_));
  const auto start = std::chrono::steady_clock::now();
  torch::NoGradGuard
      no_grad;  // not InferenceMode: feature targets may be saved for the student's backward
  std::map<int64_t, torch::Tensor> captured;
  torch::Tensor h = model_->Hidden(inputs, config.capture_layers, &captured, positions);
  const int64_t n = h.size(0) * h.size(1);
  h = h.reshape({n, h.size(-1)});
  TeacherBatch batch;
  ASSIGN_OR_RETURN(batch.output, BuildTeacherOutput(model_, h, vocab_, config));
  TeacherOutput& out = batch.output;
  if (out.transport == distill::v1::HIDDEN) out.lm_head = lm_head_;
  for (const auto& [layer, t] : captured)
    batch.features[layer] = t.reshape({n, t.size(-1)}).to(torch::kFloat);
  if (inputs.is_cuda()) torch::cuda::synchronize();
  batch.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // HIDDEN sends the hidden states; the lm_head is sent once, not per batch.
  // Top-k ids travel as int32 (teacher_stream.h), 4 bytes each.
  batch.bytes = Bytes(out.logits) + Bytes(out.topk_logits) + out.topk_ids.numel() * 4 +
                Bytes(out.topk_lse) + Bytes(out.hidden);
  for (const auto& [layer, t] : batch.features) batch.bytes += Bytes(t);
  return batch;
}

}  // namespace distill::worker
