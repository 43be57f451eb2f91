#include "worker/distill/teacher_pipeline.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <limits>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "common/plan.h"
#include "common/spec.h"
#include "worker/distill/colocated_teacher.h"
#include "worker/distill/distill_trainer.h"
#include "worker/model/hf_io.h"
#include "worker/distill/teacher_stream.h"

// Note [Stream order]: the teacher -> student stream (tags and message layout
// in teacher_stream.h). S students (world ranks 0..S-1), T stages (ranks
// S..S+T-1), prefetch D. Every message is point-to-point on the world
// communicator, matched by (source, tag); MPI is non-overtaking per (source,
// tag), so each of the streams below is FIFO.
//
// Student s, per request (TRAIN or EVAL), in its own request order:
//   send header (kTagRequest) then ids (kTagIds) to stage 0, nonblocking;
//   at most D TRAIN requests are in flight (sent and not yet taken by Next),
//   plus one EVAL while EvalLogits runs; it blocks only on replies, always on
//   the oldest outstanding one, posting all of that reply's receives at once:
//   for each capture layer l ascending, [N, d_t] from the stage owning l
//   (kTagFeature; TRAIN only), then from the last stage the echoed header
//   (kTagReply) and the transport's tensors (kTagDense | kTagTopkLogits,
//   kTagTopkIds, kTagTopkLse | kTagHidden; EVAL: kTagEvalLogits).
//   Stop: receive every outstanding reply, then send a STOP header.
// Stage 0: loops over the students round-robin from the one after the last
//   served, Probe(s, kTagRequest) on each that has not stopped, and serves the
//   first with a request waiting: receive header, then ids (already on their
//   way: sent back to back); compute; send (nonblocking) its features to s
//   and, unless it is the last stage, header + hidden to stage 1. STOP marks
//   s stopped; after all S, stage 0 sends STOP to stage 1 and finishes.
// Stage j > 0: waits for a header from stage j - 1, then the hidden state
//   behind it (and for packed rows, header field kPacked, the positions on
//   kTagStagePositions right after it); serves requests in stage 0's order;
//   forwards STOP and finishes. A packed request's ids message is [2, b, L]:
//   the ids and their positions in one send.
// Every stage reaps its completed sends on each loop turn and waits for the
//   rest before returning (stats).
//
// Why it cannot deadlock:
// - No stage ever blocks on a send (SendAsync, buffers kept until complete),
//   so a stage's progress depends only on its input arriving.
// - Stage 0 never waits on one particular student: it only receives from a
//   student whose header is already there (Probe), and the ids follow the
//   header. Students sending different numbers of requests (evals, the last
//   partial step) or none for a while only leave stage 0 idle.
// - Stage j > 0 only waits on stage j - 1, which sends header and hidden back
//   to back for every request it finishes, in order: by induction on j,
//   every request stage 0 received reaches every stage.
// - A student waits only for the oldest of its own outstanding requests;
//   its ids were sent, so stage 0 receives it (Probe sees it; round-robin
//   serves every waiting student within S turns), every stage computes it and
//   sends its parts, which match the student's receives: on each (stage,
//   student, tag) stream requests appear in the student's send order (stage
//   0 takes one student's requests FIFO, later stages keep stage 0's order),
//   and the student receives replies oldest first. Sends to a student complete
//   once the student posts the matching receive, which it does when that
//   reply is the oldest: they never hold up a stage.
// - Memory stays bounded: every stage's unfinished sends belong to the at
//   most S * (D + 1) requests in flight.
// - Collectives among the students use their own communicator, so the
//   stream shares no ordering with them; its tags are used nowhere else.
// Waits: before its first request a stage waits without a deadline (the
// students are loading models and tokenizing data). After it, stage 0 ends
// the job when no student has sent a request for 2 x runtime.timeout_s
// (the students' own collectives are bounded by 1 x, so the timeout must
// exceed their longest pause, such as a checkpoint write; and a student
// waiting on a hung stage reports first, naming it), later stages after
// 3 x (stage 0 reports first, naming the quiet students); every other wait,
// the rest of a request whose header arrived, the students' waits for
// replies, the final sends, is bounded by runtime.timeout_s (Note [Comm
// timeout]). A dead rank is reported by mpirun.

namespace distill::worker {
namespace fs = std::filesystem;
namespace ts = teacher_stream;

absl::StatusOr<std::vector<StageRange>> SplitTeacherLayers(const std::vector<int64_t>& layer_params,
                                                           int64_t embed_params,
                                                           int64_t head_params, int stages) {
  const int64_t n = static_cast<int64_t>(layer_params.size());
  if (stages < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("teacher.ranks: ", stages, " pipeline stages, at least 1 needed"));
  }
  if (stages > n) {
    return absl::InvalidArgumentError(absl::StrCat("teacher.ranks: ", stages,
                                                   " pipeline stages, but the teacher has ", n,
                                                   n == 1 ? " layer" : " layers"));
  }
  if (embed_params < 0 || head_params < 0 ||
      std::any_of(layer_params.begin(), layer_params.end(), [](int64_t p) { return p < 0; })) {
    return absl::InvalidArgumentError("SplitTeacherLayers: negative parameter count");
  }
  const int k = stages;
  std::vector<int64_t> prefix(n + 1, 0);
  for (int64_t i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + layer_params[i];
  auto cost = [&](int s, int64_t i, int64_t e) {
    return prefix[e] - prefix[i] + (s == 0 ? embed_params : 0) + (s == k - 1 ? head_params : 0);
  };
  // best[r][i]: the least largest stage for layers [i, n) as the last r stages.
  constexpr int64_t kInf = std::numeric_limits<int64_t>::max();
  std::vector<std::vector<int64_t>> best(k + 1, std::vector<int64_t>(n + 1, kInf));
  best[0][n] = 0;
  for (int r = 1; r <= k; ++r) {
    const int s = k - r;  // the stage index of the first of them
    for (int64_t i = 0; i + r <= n; ++i) {
      for (int64_t e = i + 1; e + (r - 1) <= n; ++e) {
        if (best[r - 1][e] == kInf) continue;
        best[r][i] = std::min(best[r][i], std::max(cost(s, i, e), best[r - 1][e]));
      }
    }
  }
  const int64_t bound = best[k][0];
  // Rebuild one optimal split: ties go to earlier stages taking more layers.
  std::vector<StageRange> out;
  int64_t i = 0;
  for (int s = 0; s < k - 1; ++s) {
    const int r = k - s;
    int64_t pick = -1;
    for (int64_t e = i + 1; e + (r - 1) <= n; ++e) {
      if (cost(s, i, e) <= bound && best[r - 1][e] <= bound) pick = e;
    }
    out.push_back({i, pick});
    i = pick;
  }
  out.push_back({i, n});
  return out;
}

namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Polls with a growing sleep (50 us to 1 ms) while nothing arrives, so ranks
// sharing cores leave them to the ranks they wait for.
// Polling with a growing sleep, and how long the stage has been idle:
// Expired() once it has waited `limit_s` (0 = never) since the last Reset.
class Backoff {
 public:
  void Reset() {
    sleep_ = std::chrono::microseconds(0);
    idle_since_ = Clock::now();
  }
  void Idle() {
    if (sleep_.count() == 0) {
      sleep_ = std::chrono::microseconds(50);
      std::this_thread::yield();
      return;
    }
    std::this_thread::sleep_for(sleep_);
    sleep_ = std::min(sleep_ * 2, std::chrono::microseconds(1000));
  }
  void set_limit(double limit_s) { limit_s_ = limit_s; }
  bool Expired() const { return limit_s_ > 0 && Since(idle_since_) > limit_s_; }

 private:
  std::chrono::microseconds sleep_{0};
  Clock::time_point idle_since_ = Clock::now();
  double limit_s_ = 0;
};

// One teacher rank: its part of the model and the serving loop.
class StageServer {
 public:
  StageServer(Communicator& world, const common::RankLayout& layout, LlamaForCausalLM model,
              StageRange range, int64_t vocab, TeacherRunConfig run, torch::Device device,
              const distill::v1::JobSpec& spec)
      : timeout_s_(spec.runtime().timeout_s()),
        world_(world),
        layout_(layout),
        stage_(layout.stage()),
        last_(layout.stage() == layout.teachers - 1),
        model_(std::move(model)),
        range_(range),
        vocab_(vocab),
        run_(std::move(run)),
        limits_(ts::LimitsFor(run_, layout.students, MaxTokens(spec))),
        device_(device),
        sends_(world) {
    for (int64_t l : run_.capture_layers) {
      if (l >= range_.begin && l < range_.end) mine_.push_back(l);
    }
  }

  absl::StatusOr<TeacherStageStats> Serve() {
    const auto start = Clock::now();
    c10::InferenceMode inference;
    if (stage_ == 0) {
      RETURN_IF_ERROR(ServeStudents());
    } else {
      RETURN_IF_ERROR(ServeUpstream());
    }
    RETURN_IF_ERROR(sends_.Drain());
    stats_.bytes_sent = sends_.bytes();
    stats_.total_s = Since(start);
    return stats_;
  }

 private:
  std::string Name() const { return layout_.Role(layout_.rank); }

  // A request's tokens at most (Note [Stream header bounds]): a micro-batch
  // of windows, each seq_len + 1 at most (the spec's, or its defaults).
  static int64_t MaxTokens(const distill::v1::JobSpec& spec) {
    const distill::v1::JobSpec full = common::WithDefaults(spec);
    return int64_t{full.train().micro_batch()} * (int64_t{full.data().seq_len()} + 1);
  }

  absl::Status ServeStudents() {
    const int students = layout_.students;
    std::vector<bool> stopped(students, false);
    int live = students, next = 0;
    Backoff backoff;
    while (live > 0) {
      int found = -1;
      for (int k = 0; k < students && found < 0; ++k) {
        const int s = (next + k) % students;
        if (stopped[s]) continue;
        ASSIGN_OR_RETURN(bool waiting, world_.Probe(layout_.StudentRank(s), ts::kTagRequest));
        if (waiting) found = s;
      }
      RETURN_IF_ERROR(sends_.Reap());
      if (found < 0) {
        if (backoff.Expired()) {
          std::string who;
          for (int s = 0; s < students; ++s) {
            if (!stopped[s]) absl::StrAppend(&who, who.empty() ? "" : ", ", layout_.Role(s), " (rank ", s, ")");
          }
          return absl::DeadlineExceededError(absl::StrCat(
              Name(), " (rank ", layout_.rank, "): timed out after ", 2 * timeout_s_,
              " s waiting for the next teacher request from ", who,
              " (runtime.timeout_s must exceed the students' longest pause, such as a checkpoint write)"));
        }
        backoff.Idle();
        continue;
      }
      backoff.Reset();
      // Idle waits count from the first request on: before it the students
      // are still loading models and data. Twice the students' bound, so a
      // student waiting on a hung stage reports (naming it) first.
      backoff.set_limit(2 * timeout_s_);
      next = (found + 1) % students;
      const int src = layout_.StudentRank(found);
      torch::Tensor header = torch::empty({ts::kHeaderLen}, torch::kLong);
      RETURN_IF_ERROR(world_.Recv(header, src, ts::kTagRequest, "teacher request header"));
      RETURN_IF_ERROR(CheckHeader(header, found));
      auto h = header.accessor<int64_t, 1>();
      if (h[ts::kKind] == ts::kStop) {
        stopped[found] = true;
        --live;
        continue;
      }
      const bool packed = h[ts::kPacked] == 1;
      torch::Tensor ids = torch::empty(packed ? std::vector<int64_t>{2, h[ts::kBatch], h[ts::kLength]}
                                              : std::vector<int64_t>{h[ts::kBatch], h[ts::kLength]},
                                       torch::dtype(torch::kLong).device(device_));
      RETURN_IF_ERROR(world_.Recv(ids, src, ts::kTagIds, "teacher request token ids"));
      RETURN_IF_ERROR(packed ? Process(header, ids[0], ids[1]) : Process(header, ids, torch::Tensor()));
    }
    if (last_) return absl::OkStatus();
    return Forward(ts::MakeHeader(ts::kStop, -1, -1, 0, 0, run_), torch::Tensor());
  }

  absl::Status ServeUpstream() {
    const int src = layout_.StageRank(stage_ - 1);
    Backoff backoff;
    while (true) {
      ASSIGN_OR_RETURN(bool waiting, world_.Probe(src, ts::kTagStageHeader));
      RETURN_IF_ERROR(sends_.Reap());
      if (!waiting) {
        if (backoff.Expired()) {
          return absl::DeadlineExceededError(absl::StrCat(
              Name(), " (rank ", layout_.rank, "): timed out after ", 3 * timeout_s_,
              " s waiting for the next hidden state from ", layout_.Role(src), " (rank ", src, ")"));
        }
        backoff.Idle();
        continue;
      }
      backoff.Reset();
      // Longer than stage 0's, which knows which students went quiet.
      backoff.set_limit(3 * timeout_s_);
      torch::Tensor header = torch::empty({ts::kHeaderLen}, torch::kLong);
      RETURN_IF_ERROR(world_.Recv(header, src, ts::kTagStageHeader, "teacher stage header"));
      auto h = header.accessor<int64_t, 1>();
      if (h[ts::kKind] == ts::kStop) {
        return last_ ? absl::OkStatus() : Forward(header, torch::Tensor());
      }
      RETURN_IF_ERROR(CheckHeader(header, -1));
      torch::Tensor hidden =
          torch::empty({h[ts::kBatch], h[ts::kLength], model_->config().hidden_size},
                       torch::dtype(torch::kFloat).device(device_));
      RETURN_IF_ERROR(world_.Recv(hidden, src, ts::kTagStageHidden, "teacher hidden state"));
      torch::Tensor positions;
      if (h[ts::kPacked] == 1) {
        positions = torch::empty({h[ts::kBatch], h[ts::kLength]}, torch::dtype(torch::kLong).device(device_));
        RETURN_IF_ERROR(world_.Recv(positions, src, ts::kTagStagePositions, "teacher positions"));
      }
      RETURN_IF_ERROR(Process(header, hidden, positions));
    }
  }

  // A header from student `from` (stage 0) or the stage before (from < 0).
  absl::Status CheckHeader(const torch::Tensor& header, int64_t from) const {
    return common::WithPrefix(ts::CheckRequestHeader(ts::ToHeader(header), from, limits_), Name());
  }

  // Runs this stage's part of one request and sends what follows from it;
  // `positions` [b, L] for packed rows, else undefined.
  absl::Status Process(const torch::Tensor& header, const torch::Tensor& input, const torch::Tensor& positions) {
    const auto start = Clock::now();
    auto h = header.accessor<int64_t, 1>();
    const bool train = h[ts::kKind] == ts::kTrain;
    const int student = layout_.StudentRank(static_cast<int>(h[ts::kStudent]));
    const int64_t n = h[ts::kBatch] * h[ts::kLength];
    const int64_t d = model_->config().hidden_size;
    try {
      torch::Tensor x = stage_ == 0 ? model_->Embed(input) : input;
      std::map<int64_t, torch::Tensor> captured;
      static const std::vector<int64_t> kNone;
      x = model_->RunLayers(x, range_.begin, range_.end, train ? mine_ : kNone, &captured, positions);
      for (const auto& [layer, t] : captured) {
        RETURN_IF_ERROR(sends_.Send(t.reshape({n, d}).to(torch::kFloat), student, ts::kTagFeature,
                                    absl::StrCat("teacher layer ", layer, " output")));
      }
      if (!last_) {
        RETURN_IF_ERROR(Forward(header.clone(), x.to(torch::kFloat), positions));
      } else {
        RETURN_IF_ERROR(Reply(header, model_->FinalNorm(x).reshape({n, d}), train, student));
      }
    } catch (const c10::Error& e) {
      return absl::InternalError(
          absl::StrCat(Name(), ": ", ts::DescribeHeader(header), ": ", e.what_without_backtrace()));
    } catch (const std::exception& e) {
      return absl::InternalError(
          absl::StrCat(Name(), ": ", ts::DescribeHeader(header), ": ", e.what()));
    }
    ++stats_.requests;
    stats_.busy_s += Since(start);
    return absl::OkStatus();
  }

  absl::Status Forward(const torch::Tensor& header, const torch::Tensor& hidden,
                       const torch::Tensor& positions = torch::Tensor()) {
    const int dst = layout_.StageRank(stage_ + 1);
    RETURN_IF_ERROR(sends_.Send(header, dst, ts::kTagStageHeader, "teacher stage header"));
    if (!hidden.defined()) return absl::OkStatus();
    RETURN_IF_ERROR(sends_.Send(hidden, dst, ts::kTagStageHidden, "teacher hidden state"));
    if (!positions.defined()) return absl::OkStatus();
    return sends_.Send(positions, dst, ts::kTagStagePositions, "teacher positions");
  }

  absl::Status Reply(const torch::Tensor& header, const torch::Tensor& h, bool train, int student) {
    RETURN_IF_ERROR(sends_.Send(header.clone(), student, ts::kTagReply, "teacher reply header"));
    if (!train) {
      return sends_.Send(model_->Logits(h).narrow(1, 0, vocab_), student, ts::kTagEvalLogits,
                         "teacher eval logits");
    }
    ASSIGN_OR_RETURN(TeacherOutput out, BuildTeacherOutput(model_, h, vocab_, run_));
    switch (run_.transport) {
      case distill::v1::TOPK:
        RETURN_IF_ERROR(sends_.Send(out.topk_logits.to(torch::kFloat), student, ts::kTagTopkLogits,
                                    "teacher top-k logits"));
        // int32 on the wire (any vocabulary fits): 4 bytes per id, not 8.
        RETURN_IF_ERROR(sends_.Send(out.topk_ids.to(torch::kInt), student, ts::kTagTopkIds,
                                    "teacher top-k ids"));
        return sends_.Send(out.topk_lse.to(torch::kFloat), student, ts::kTagTopkLse,
                           "teacher top-k log-sum-exp");
      case distill::v1::HIDDEN:
        return sends_.Send(out.hidden, student, ts::kTagHidden, "teacher final hidden state");
      default:
        return sends_.Send(out.logits.to(torch::kFloat), student, ts::kTagDense, "teacher logits");
    }
  }

  const double timeout_s_;
  Communicator& world_;
  const common::RankLayout& layout_;
  const int stage_;
  const bool last_;
  LlamaForCausalLM model_;
  const StageRange range_;
  const int64_t vocab_;
  const TeacherRunConfig run_;
  const ts::HeaderLimits limits_;
  const torch::Device device_;  // the model's; headers stay on the CPU
  std::vector<int64_t> mine_;   // capture layers in this stage's range
  ts::PendingSends sends_;
  TeacherStageStats stats_;
};

}  // namespace

absl::StatusOr<TeacherStageStats> RunTeacherStage(const distill::v1::JobSpec& spec,
                                                  Communicator& world, const common::RankLayout& layout,
                                                  torch::Device device) {
  if (layout.is_student() || layout.teachers < 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("RunTeacherStage: rank ", layout.rank, " is not a teacher rank"));
  }
  const common::JobPlan plan = common::MakePlan(spec);
  const std::string& dir = plan.teacher_dir;
  // The student's config and model directory (for the tokenizer check).
  auto student = LoadModelConfig(plan.student.config_path);
  if (!student.ok()) return common::WithPrefix(student.status(), plan.student.field);
  auto tc = LoadModelConfig((fs::path(dir) / "config.json").string());
  if (!tc.ok()) return common::WithPrefix(tc.status(), "teacher.model");
  RETURN_IF_ERROR(CheckTeacherVocabulary(dir, *tc, *student));
  if (!plan.student.dir.empty()) {
    RETURN_IF_ERROR(CheckSameTokenizer(
        dir, (fs::path(plan.student.dir) / "tokenizer.json").string(), "student.model"));
  }

  ASSIGN_OR_RETURN(std::vector<FeaturePairPlan> pairs,
                   PlanFeaturePairs(spec.distill(), student->num_hidden_layers, tc->num_hidden_layers));
  TeacherRunConfig run = TeacherRunFor(plan, pairs);
  const int64_t vocab = student->vocab_size;
  RETURN_IF_ERROR(CheckTeacherRunConfig(run, tc->num_hidden_layers, vocab));

  ASSIGN_OR_RETURN(std::vector<StageRange> stages, ts::SplitTeacher(*tc, layout.teachers));
  const int j = layout.stage();
  ModelPart part;
  part.layer_begin = stages[j].begin;
  part.layer_end = stages[j].end;
  part.embed = j == 0;
  part.head = j == layout.teachers - 1;
  auto model = LoadHfModelPart(dir, part, device);
  if (!model.ok()) return common::WithPrefix(model.status(), "teacher.model");
  for (auto& p : (*model)->parameters()) p.set_requires_grad(false);
  (*model)->eval();
  StageServer server(world, layout, std::move(*model), stages[j], vocab, std::move(run), device, spec);
  return server.Serve();
}

}  // namespace distill::worker
