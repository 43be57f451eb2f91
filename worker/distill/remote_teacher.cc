// RemoteTeacher: the student's end of the teacher stream. Note [Stream
// order] in teacher_pipeline.cc.
#include "worker/distill/remote_teacher.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "worker/model/hf_io.h"
#include "worker/distill/colocated_teacher.h"
#include "worker/distill/teacher_pipeline.h"
#include "worker/distill/teacher_stream.h"

namespace distill::worker {
namespace fs = std::filesystem;
namespace ts = teacher_stream;

namespace {

absl::Status TeacherModelError(const absl::Status& st) { return common::WithPrefix(st, "teacher.model"); }

std::string Shape(const torch::Tensor& t) {
  std::string out = "[";
  for (int64_t i = 0; i < t.dim(); ++i) absl::StrAppend(&out, i ? ", " : "", t.size(i));
  return out + "]";
}

}  // namespace

struct RemoteTeacher::Impl {
  // One request of this student, oldest first in `queue`.
  struct Request {
    int64_t id = 0;
    ts::Kind kind = ts::kTrain;
    torch::Tensor ids;     // [b, L] int64, or [2, b, L] with the positions of packed rows; a private copy (sent from it)
    torch::Tensor header;  // kept alive while sending
    std::vector<std::unique_ptr<Work>> sends;
    bool sent = false;
    bool received = false;
    TeacherBatch batch;
    torch::Tensor eval_logits;
  };

  Impl(Communicator& w, const common::RankLayout& l) : world(w), layout(l) {}

  Communicator& world;
  common::RankLayout layout;
  ModelConfig teacher;
  int64_t vocab = 0;
  TeacherRunConfig run;         // normalised
  std::vector<int> owner_rank;  // world rank sending each capture layer (run.capture_layers order)
  torch::Tensor lm_head;        // HIDDEN: [V, d_t] float32
  torch::Device device = torch::kCPU;
  int prefetch = 0;   // requests in flight at most: runtime.prefetch, at least 1
  int lookahead = 0;  // runtime.prefetch
  int64_t next_id = 0;
  std::deque<Request> queue;  // training requests not yet taken; sent ones form a prefix
  bool stopped = false;

  int Student() const { return layout.student_index(); }
  int Stage0() const { return layout.StageRank(0); }
  int LastStage() const { return layout.StageRank(layout.teachers - 1); }

  absl::Status CheckOpen(const char* op) const {
    if (!stopped) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat("RemoteTeacher::", op, " after Stop"));
  }

  // The request's ids message: inputs [b, L], stacked over the positions of
  // packed rows.
  static absl::StatusOr<torch::Tensor> Ids(const TokenBatch& batch, const char* op) {
    const torch::Tensor& inputs = batch.inputs;
    if (!inputs.defined() || inputs.dim() != 2 || inputs.size(0) < 1 || inputs.size(1) < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("RemoteTeacher::", op, ": inputs must be [b, L] token ids, got ",
                       inputs.defined() ? Shape(inputs) : "undefined"));
    }
    torch::Tensor ids = inputs.detach().to(torch::kLong);
    if (batch.positions.defined()) ids = torch::stack({ids, batch.positions.detach().to(ids.device(), torch::kLong)});
    return ids.contiguous().clone();
  }

  absl::Status Send(Request& r) {
    r.header = ts::MakeHeader(r.kind, Student(), r.id, r.ids.size(-2), r.ids.size(-1), run, r.ids.dim() == 3);
    ASSIGN_OR_RETURN(
        auto h, world.SendAsync(r.header, Stage0(), ts::kTagRequest, "teacher request header"));
    r.sends.push_back(std::move(h));
    ASSIGN_OR_RETURN(auto i,
                     world.SendAsync(r.ids, Stage0(), ts::kTagIds, "teacher request token ids"));
    r.sends.push_back(std::move(i));
    r.sent = true;
    return absl::OkStatus();
  }

  // Sends queued requests while fewer than `prefetch` are in flight.
  absl::Status Pump() {
    int in_flight = 0;
    for (Request& r : queue) {
      if (r.sent) {
        ++in_flight;
      } else if (in_flight < prefetch) {
        RETURN_IF_ERROR(Send(r));
        ++in_flight;
      } else {
        break;
      }
    }
    return absl::OkStatus();
  }

  // Receives the reply to `r` (its turn: every older request's reply is in).
  absl::Status Receive(Request& r) {
    // Normal tensors even under the caller's InferenceMode: the features may
    // be saved for the student's backward.
    c10::InferenceMode normal_tensors(false);
    torch::NoGradGuard no_grad;
    const int64_t n = r.ids.size(-2) * r.ids.size(-1), d = teacher.hidden_size;
    const auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(device);
    std::vector<std::unique_ptr<Work>> works;
    auto recv = [&](torch::Tensor t, int src, int tag, const std::string& what) -> absl::Status {
      ASSIGN_OR_RETURN(auto w, world.RecvAsync(t, src, tag, what));
      works.push_back(std::move(w));
      return absl::OkStatus();
    };
    TeacherBatch& b = r.batch;
    TeacherOutput& out = b.output;
    torch::Tensor wire_ids;  // TOPK: the ids as received (int32)
    if (r.kind == ts::kTrain) {
      for (size_t i = 0; i < run.capture_layers.size(); ++i) {
        const int64_t layer = run.capture_layers[i];
        b.features[layer] = torch::empty({n, d}, f32);
        RETURN_IF_ERROR(recv(b.features[layer], owner_rank[i], ts::kTagFeature,
                             absl::StrCat("teacher layer ", layer, " output")));
      }
    }
    torch::Tensor reply = torch::empty({ts::kHeaderLen}, torch::kLong);
    RETURN_IF_ERROR(recv(reply, LastStage(), ts::kTagReply, "teacher reply header"));
    if (r.kind == ts::kEval) {
      r.eval_logits = torch::empty({n, vocab}, f32);
      RETURN_IF_ERROR(recv(r.eval_logits, LastStage(), ts::kTagEvalLogits, "teacher eval logits"));
    } else {
      out.transport = run.transport;
      torch::Tensor ids32;  // TOPK ids as they travel (int32)
      switch (run.transport) {
        case distill::v1::TOPK:
          out.topk_logits = torch::empty({n, run.top_k}, f32);
          ids32 = torch::empty({n, run.top_k}, f32.dtype(torch::kInt));
          out.topk_lse = torch::empty({n}, f32);
          RETURN_IF_ERROR(
              recv(out.topk_logits, LastStage(), ts::kTagTopkLogits, "teacher top-k logits"));
          RETURN_IF_ERROR(recv(ids32, LastStage(), ts::kTagTopkIds, "teacher top-k ids"));
          RETURN_IF_ERROR(
              recv(out.topk_lse, LastStage(), ts::kTagTopkLse, "teacher top-k log-sum-exp"));
          break;
        case distill::v1::HIDDEN:
          out.hidden = torch::empty({n, d}, f32);
          out.lm_head = lm_head;
          RETURN_IF_ERROR(
              recv(out.hidden, LastStage(), ts::kTagHidden, "teacher final hidden state"));
          break;
        default:
          out.logits = torch::empty({n, vocab}, f32);
          RETURN_IF_ERROR(recv(out.logits, LastStage(), ts::kTagDense, "teacher logits"));
          break;
      }
      wire_ids = ids32;
    }
    for (auto& w : works) RETURN_IF_ERROR(w->Wait());
    if (wire_ids.defined()) out.topk_ids = wire_ids.to(torch::kLong);
    for (auto& w : r.sends) RETURN_IF_ERROR(w->Wait());  // stage 0 has them: complete
    r.sends.clear();
    // A bug guard: the reply must be the one to this request.
    RETURN_IF_ERROR(common::WithPrefix(ts::CheckReplyHeader(ts::ToHeader(reply), ts::ToHeader(r.header)),
                                       layout.Role(layout.rank)));
    b.bytes = ts::Bytes(out.logits) + ts::Bytes(out.topk_logits) + ts::Bytes(wire_ids) +
              ts::Bytes(out.topk_lse) + ts::Bytes(out.hidden) + ts::Bytes(r.eval_logits);
    for (const auto& [layer, t] : b.features) b.bytes += ts::Bytes(t);
    r.received = true;
    return absl::OkStatus();
  }

  // Receives every sent training reply not yet received (they are kept).
  absl::Status ReceiveSent() {
    for (Request& r : queue) {
      if (!r.sent) break;
      if (!r.received) RETURN_IF_ERROR(Receive(r));
    }
    return absl::OkStatus();
  }
};

RemoteTeacher::RemoteTeacher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RemoteTeacher::~RemoteTeacher() = default;

absl::StatusOr<std::unique_ptr<RemoteTeacher>> RemoteTeacher::Create(
    const distill::v1::JobSpec& spec, Communicator& world, const common::RankLayout& layout,
    const ModelConfig& student, const std::string& student_dir, const TeacherRunConfig& run,
    torch::Device device) {
  if (!layout.is_student() || layout.teachers < 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "RemoteTeacher: rank ", layout.rank, " is not a student of a job with teacher ranks"));
  }
  auto impl = std::make_unique<Impl>(world, layout);
  const std::string& dir = spec.teacher().model();
  auto tc = LoadModelConfig((fs::path(dir) / "config.json").string());
  if (!tc.ok()) return TeacherModelError(tc.status());
  impl->teacher = *tc;
  RETURN_IF_ERROR(CheckTeacherVocabulary(dir, *tc, student));
  if (!student_dir.empty()) {
    RETURN_IF_ERROR(CheckSameTokenizer(dir, (fs::path(student_dir) / "tokenizer.json").string(),
                                       "student.model"));
  }
  impl->vocab = student.vocab_size;
  impl->run = NormalizeRunConfig(run);
  RETURN_IF_ERROR(CheckTeacherRunConfig(impl->run, tc->num_hidden_layers, impl->vocab));
  ASSIGN_OR_RETURN(std::vector<StageRange> stages, ts::SplitTeacher(*tc, layout.teachers));
  for (int64_t layer : impl->run.capture_layers) {
    impl->owner_rank.push_back(layout.StageRank(ts::StageOf(stages, layer)));
  }
  if (impl->run.transport == distill::v1::HIDDEN) {
    auto head = LoadHfLmHead(dir, impl->vocab, device);
    if (!head.ok()) return TeacherModelError(head.status());
    impl->lm_head = *head;
  }
  impl->device = device;
  impl->prefetch = std::max(1, spec.runtime().prefetch());
  impl->lookahead = spec.runtime().prefetch();
  return std::unique_ptr<RemoteTeacher>(new RemoteTeacher(std::move(impl)));
}

absl::Status RemoteTeacher::Enqueue(const TokenBatch& batch) {
  RETURN_IF_ERROR(impl_->CheckOpen("Enqueue"));
  Impl::Request r;
  ASSIGN_OR_RETURN(r.ids, Impl::Ids(batch, "Enqueue"));
  r.id = impl_->next_id++;
  impl_->queue.push_back(std::move(r));
  return impl_->Pump();
}

absl::StatusOr<TeacherBatch> RemoteTeacher::Next(const TokenBatch& batch) {
  RETURN_IF_ERROR(impl_->CheckOpen("Next"));
  if (impl_->queue.empty()) RETURN_IF_ERROR(Enqueue(batch));
  Impl::Request& front = impl_->queue.front();
  ASSIGN_OR_RETURN(torch::Tensor ids, Impl::Ids(batch, "Next"));
  if (!ids.sizes().equals(front.ids.sizes()) ||
      !torch::equal(ids.to(front.ids.device()), front.ids)) {
    return absl::InternalError(absl::StrCat("RemoteTeacher::Next: inputs ", Shape(ids),
                                            " differ from the oldest queued micro-batch (request ",
                                            front.id, ", ", Shape(front.ids),
                                            "): Enqueue and Next out of step"));
  }
  const auto start = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(impl_->Pump());
  if (!front.received) RETURN_IF_ERROR(impl_->Receive(front));
  TeacherBatch out = std::move(front.batch);
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  impl_->queue.pop_front();
  RETURN_IF_ERROR(impl_->Pump());
  return out;
}

absl::StatusOr<torch::Tensor> RemoteTeacher::EvalLogits(const TokenBatch& batch) {
  RETURN_IF_ERROR(impl_->CheckOpen("EvalLogits"));
  Impl::Request r;
  ASSIGN_OR_RETURN(r.ids, Impl::Ids(batch, "EvalLogits"));
  r.kind = ts::kEval;
  r.id = impl_->next_id++;
  RETURN_IF_ERROR(impl_->Send(r));
  RETURN_IF_ERROR(impl_->ReceiveSent());  // older replies come first: keep them
  RETURN_IF_ERROR(impl_->Receive(r));
  return r.eval_logits;
}

absl::Status RemoteTeacher::Stop() {
  if (impl_->stopped) return absl::OkStatus();
  RETURN_IF_ERROR(impl_->ReceiveSent());
  impl_->queue.clear();
  impl_->stopped = true;
  const torch::Tensor header =
      ts::MakeHeader(ts::kStop, impl_->Student(), impl_->next_id++, 0, 0, impl_->run);
  return impl_->world.Send(header, impl_->Stage0(), ts::kTagRequest, "teacher stop");
}

absl::StatusOr<TeacherEvalResult> RemoteTeacher::Evaluate(LlamaForCausalLM& student, const SequenceData& data,
                                                          int64_t batch, int64_t max_rows, int64_t chunk_tokens,
                                                          const torch::Device& device, EvalShard shard) {
  auto logits = [this](const TokenBatch& b) { return EvalLogits(b); };
  return EvaluateWithTeacherLogits(student, logits, vocab(), data, batch, max_rows, chunk_tokens, device, shard);
}

int RemoteTeacher::Lookahead() const { return impl_->lookahead; }

std::string RemoteTeacher::Placement() const {
  return absl::StrFormat(", on %d dedicated teacher ranks", impl_->layout.teachers);
}

const ModelConfig& RemoteTeacher::config() const { return impl_->teacher; }
int64_t RemoteTeacher::vocab() const { return impl_->vocab; }

}  // namespace distill::worker
