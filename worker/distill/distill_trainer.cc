#include "worker/distill/distill_trainer.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/data/open_data.h"
#include "worker/distill/cached_teacher.h"
#include "worker/distill/colocated_teacher.h"
#include "worker/model/config.h"
#include "worker/train/autocast.h"
#include "worker/train/eval.h"

namespace distill::worker {
namespace fs = std::filesystem;
using distill::v1::DistillSpec;
using distill::v1::JobSpec;

namespace {

absl::Status LayerOutOfRange(const std::string& field, int64_t layer, const char* who,
                             int64_t layers) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": ", layer, " out of range, the ", who, " has ", layers, " layers"));
}

std::string LossName(distill::v1::DistillLoss loss) {
  switch (loss) {
    case distill::v1::REVERSE_KL:
      return "reverse_kl";
    case distill::v1::JSD:
      return "jsd";
    default:
      return "forward_kl";
  }
}

std::string TransportName(distill::v1::LogitTransport t) {
  switch (t) {
    case distill::v1::TOPK:
      return "topk";
    case distill::v1::HIDDEN:
      return "hidden";
    default:
      return "dense";
  }
}

}  // namespace

absl::StatusOr<std::vector<FeaturePairPlan>> PlanFeaturePairs(const DistillSpec& d,
                                                              int64_t student_layers,
                                                              int64_t teacher_layers) {
  std::vector<FeaturePairPlan> pairs;
  if (d.layer_map() == "uniform") {
    const double weight = d.feature_weight();
    for (int64_t i = 0; i < student_layers; ++i) {
      // Output of student layer i sits at depth (i + 1) / S; the teacher layer
      // j whose output depth (j + 1) / T is nearest, halves rounded up.
      const int64_t j = std::max<int64_t>(
          0, ((i + 1) * teacher_layers * 2 + student_layers) / (2 * student_layers) - 1);
      pairs.push_back({i, j, distill::v1::MSE, weight, ""});
    }
  } else {
    for (int i = 0; i < d.features_size(); ++i) {
      const auto& f = d.features(i);
      const std::string path = absl::StrCat("distill.features[", i, "]");
      if (f.student_layer() < 0 || f.student_layer() >= student_layers) {
        return LayerOutOfRange(path + ".student_layer", f.student_layer(), "student",
                               student_layers);
      }
      if (f.teacher_layer() < 0 || f.teacher_layer() >= teacher_layers) {
        return LayerOutOfRange(path + ".teacher_layer", f.teacher_layer(), "teacher",
                               teacher_layers);
      }
      pairs.push_back({f.student_layer(), f.teacher_layer(), f.loss(), f.weight(), ""});
    }
  }
  for (auto& p : pairs) p.name = absl::StrCat("s", p.student_layer, "_t", p.teacher_layer);
  return pairs;
}

TeacherRunConfig TeacherRunFor(const common::JobPlan& plan,
                               const std::vector<FeaturePairPlan>& pairs) {
  TeacherRunConfig run = plan.teacher_run;
  for (const FeaturePairPlan& p : pairs) run.capture_layers.push_back(p.teacher_layer);
  return NormalizeRunConfig(std::move(run));
}

DistillObjective::DistillObjective(const JobSpec& spec, TeacherFactory teacher_factory)
    : spec_(spec), plan_(common::MakePlan(spec)), teacher_factory_(std::move(teacher_factory)) {}
DistillObjective::~DistillObjective() = default;

absl::Status DistillObjective::Prepare(LlamaForCausalLM& student, const torch::Device& device,
                                       bool bf16) {
  bf16_ = bf16;
  const DistillSpec& d = spec_.distill();
  const ModelConfig& sc = student->config();
  student_vocab_ = sc.vocab_size;
  const std::string& teacher_dir = plan_.teacher_dir;
  // With teacher.cache the teacher is the cache (runtime captured what was
  // missing first), its config.json kept there: no weights are loaded.
  const std::string& cache_dir = spec_.teacher().cache();
  // The teacher's config first, so spec errors come before loading its weights.
  auto tc = cache_dir.empty() ? LoadModelConfig((fs::path(teacher_dir) / "config.json").string())
                              : CachedTeacher::LoadConfig(cache_dir);
  if (!tc.ok()) {
    if (!cache_dir.empty()) return tc.status();
    return absl::Status(tc.status().code(), absl::StrCat("teacher.model: ", tc.status().message()));
  }
  ASSIGN_OR_RETURN(pairs_, PlanFeaturePairs(d, sc.num_hidden_layers, tc->num_hidden_layers));
  if (d.logits() == distill::v1::TOPK && d.top_k() > sc.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("distill.top_k: ", d.top_k(), " exceeds the vocabulary size ", sc.vocab_size));
  }
  if (plan_.ranks.teachers > 0 && !teacher_factory_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "teacher.ranks: ", plan_.ranks.teachers, " dedicated teacher ranks need an mpirun launch (",
        plan_.ranks.world(), " ranks)"));
  }
  const TeacherSetup setup{sc, plan_.student.dir, TeacherRunFor(plan_, pairs_), device};
  if (!cache_dir.empty()) {
    ASSIGN_OR_RETURN(std::unique_ptr<CachedTeacher> cached, CachedTeacher::Open(spec_, setup));
    cached_description_ = cached->Describe();
    teacher_ = std::move(cached);
  } else if (teacher_factory_) {
    ASSIGN_OR_RETURN(teacher_, teacher_factory_(setup));
  } else {
    ASSIGN_OR_RETURN(teacher_, ColocatedTeacher::Load(teacher_dir, sc, setup.student_dir, device,
                                                      setup.run));
  }
  teacher_config_ = teacher_->config();
  if (cache_dir.empty() && spec_.data().tokenizer() != "bytes") {
    RETURN_IF_ERROR(CheckSameTokenizer(teacher_dir, TokenizerJsonPath(spec_.data().tokenizer()), "data.tokenizer"));
  }

  std::set<int64_t> student_layers;
  projections_.clear();
  for (size_t i = 0; i < pairs_.size(); ++i) {
    student_layers.insert(pairs_[i].student_layer);
    std::shared_ptr<FeatureProjection> proj;
    if (sc.hidden_size != tc->hidden_size) {
      // Seeded per pair from the job's seed: the same on every run (resume).
      proj = std::make_shared<FeatureProjection>(sc.hidden_size, tc->hidden_size,
                                                 spec_.train().seed() * 1000003ull + i + 1);
      proj->to(device);
      proj->train();
    }
    projections_.push_back(proj);
  }
  student_layers_.assign(student_layers.begin(), student_layers.end());

  kd_config_ = plan_.loss;
  return absl::OkStatus();
}

std::vector<NamedParam> DistillObjective::ExtraParams() {
  std::vector<NamedParam> out;
  for (size_t i = 0; i < pairs_.size(); ++i) {
    if (!projections_[i]) continue;
    out.push_back({absl::StrCat("distill.projection.", pairs_[i].name, ".weight"),
                   projections_[i]->weight(), true});
  }
  return out;
}

namespace {

// The teacher's rows of the batch's counted targets (all rows for plain text).
TeacherOutput CountedOutput(const TokenBatch& batch, TeacherOutput out) {
  auto rows = [&](torch::Tensor& t) {
    if (t.defined()) t = CountedOnly(batch, t);
  };
  rows(out.logits);
  rows(out.topk_logits);
  rows(out.topk_ids);
  rows(out.topk_lse);
  rows(out.hidden);
  return out;
}

}  // namespace

absl::StatusOr<LossParts> DistillObjective::Loss(LlamaForCausalLM& student, const TokenBatch& batch) {
  TeacherBatch tb;
  torch::Tensor h;
  std::map<int64_t, torch::Tensor> captured;
  {
    AutocastGuard autocast(bf16_);
    ASSIGN_OR_RETURN(tb, teacher_->Next(batch));
    h = student->Hidden(batch.inputs, student_layers_, &captured, batch.positions);
  }
  const int64_t n = batch.targets.numel();
  // The losses run outside autocast in the weights' dtype: their gradients
  // are formed by hand chunk by chunk (kd_loss.h) and must match the weights
  // (fp32; with bf16 weights the chunk matmuls run in bf16, the softmax and
  // the sums in fp32).
  const torch::Tensor& head = student->LmHeadWeight();
  ASSIGN_OR_RETURN(KdLossResult kd,
                   KdLoss(CountedOnly(batch, h.reshape({n, h.size(-1)}).to(head.scalar_type())), head,
                          CountedOnly(batch, batch.targets.reshape({n})),
                          CountedOutput(batch, tb.output), kd_config_));
  LossParts parts;
  parts.values[kCe] = kd.ce;
  parts.values[kKd] = kd.kd;
  parts.values[kStreamBytes] = static_cast<double>(tb.bytes);
  parts.wait_s = tb.seconds;
  parts.total = kd.total;
  for (size_t i = 0; i < pairs_.size(); ++i) {
    const FeaturePairPlan& p = pairs_[i];
    const torch::Tensor& hs = captured.at(p.student_layer);
    ASSIGN_OR_RETURN(torch::Tensor f,
                     FeatureLoss(CountedOnly(batch, hs.reshape({n, hs.size(-1)}).to(torch::kFloat)),
                                 CountedOnly(batch, tb.features.at(p.teacher_layer)), projections_[i].get(),
                                 p.loss));
    parts.values[kFeaturePrefix + p.name] = f.item<double>();
    parts.total = parts.total + p.weight * f;
  }
  return parts;
}

absl::StatusOr<EvalRecord> DistillObjective::Evaluate(LlamaForCausalLM& student, const SequenceData& data,
                                                      int64_t batch, int64_t max_rows, int64_t step,
                                                      EvalShard shard) {
  AutocastGuard autocast(bf16_);
  const torch::Device device = student->LmHeadWeight().device();
  ASSIGN_OR_RETURN(TeacherEvalResult r,
                   teacher_->Evaluate(student, data, batch, max_rows, plan_.loss.chunk_tokens, device, shard));
  EvalRecord rec;
  rec.step = step;
  rec.loss = r.student.loss;
  rec.ppl = r.student.ppl;
  rec.tokens = r.student.tokens;
  rec.fields.scalars = {{"kl", r.kl}, {"top1_agreement", r.top1_agreement}, {"teacher_loss", r.teacher.loss}};
  return rec;
}

// metrics.jsonl's distill keys and the console's split (Note [Objective fields]).
void DistillObjective::AddStepFields(const StepValues& v, StepRecord* r) const {
  const double micro = static_cast<double>(std::max<int64_t>(1, v.micro_batches));
  ObjectiveFields& f = r->fields;
  f.scalars["ce_loss"] = v.sums.at(kCe) / micro;
  f.scalars["kd_loss"] = v.sums.at(kKd) / micro;
  f.scalars["teacher_s"] = r->wait_s;
  f.scalars["stream_bytes_per_token"] =
      v.sums.at(kStreamBytes) / (micro * static_cast<double>(v.micro_batch_targets));
  std::map<std::string, double>& features = f.groups["feature_losses"];
  double feature_sum = 0;
  for (const auto& [key, sum] : v.sums) {
    if (key.rfind(kFeaturePrefix, 0) != 0) continue;
    features[key.substr(kFeaturePrefix.size())] = sum / micro;
    feature_sum += sum / micro;
  }
  f.console_after_loss =
      absl::StrFormat(" (ce %.3f kd %.3f%s)", f.scalars["ce_loss"], f.scalars["kd_loss"],
                      features.empty() ? "" : absl::StrFormat(" feat %.3f", feature_sum));
  if (r->step_s > 0) f.console_time_share = absl::StrFormat(" teacher %.0f%%", 100.0 * r->wait_s / r->step_s);
  f.console_time_tail = absl::StrFormat(" | %.0f B/tok", f.scalars["stream_bytes_per_token"]);
}

void DistillObjective::FinishEval(EvalRecord* r) const {
  ObjectiveFields& f = r->fields;
  f.scalars["teacher_ppl"] = std::exp(f.scalars["teacher_loss"]);
  f.console_after_loss = absl::StrFormat(" | kl %.4f | top1 %.1f%% | teacher ppl %.3f", f.scalars["kl"],
                                         100.0 * f.scalars["top1_agreement"], f.scalars["teacher_ppl"]);
}

int DistillObjective::Lookahead() const { return teacher_ ? teacher_->Lookahead() : 0; }

absl::Status DistillObjective::Enqueue(const TokenBatch& batch) {
  if (!teacher_) return absl::OkStatus();
  return teacher_->Enqueue(batch);
}

absl::Status DistillObjective::Finish() {
  if (!teacher_) return absl::OkStatus();
  return teacher_->Stop();
}

std::string DistillObjective::Describe() const {
  const DistillSpec& d = spec_.distill();
  const ModelConfig& tc = teacher_config_;
  std::string logits = TransportName(d.logits());
  if (d.logits() == distill::v1::TOPK) logits = absl::StrCat("top-", d.top_k());
  if (!cached_description_.empty()) {
    return absl::StrFormat("; teacher: %s (%d layers, width %d), %s T %g alpha %g, %s logits, %d "
                           "feature pairs",
                           cached_description_, tc.num_hidden_layers, tc.hidden_size,
                           LossName(d.loss()), d.temperature(), d.alpha(), logits, pairs_.size());
  }
  return absl::StrFormat(
      "; teacher %s (%d layers, width %d, vocab %d%s), %s T %g alpha %g, %s logits, %d feature "
      "pairs",
      spec_.teacher().model(), tc.num_hidden_layers, tc.hidden_size, tc.vocab_size,
      tc.vocab_size > student_vocab_ ? absl::StrCat(" cut to ", student_vocab_) : "", LossName(d.loss()),
      d.temperature(), d.alpha(), logits, pairs_.size()) +
         (teacher_ ? teacher_->Placement() : "");
}

absl::StatusOr<TrainResult> RunDistill(const JobSpec& spec, const TrainOptions& options,
                                       TeacherFactory teacher_factory) {
  if (spec.type() != distill::v1::DISTILL)
    return absl::InvalidArgumentError("type: RunDistill needs type distill");
  DistillObjective objective(spec, std::move(teacher_factory));
  absl::StatusOr<TrainResult> r = RunTraining(spec, options, objective);
  // On an error the caller aborts every rank (Note [Comm timeout]): stopping
  // the teacher first would wait out its pending replies, and a hung stage
  // would then time out the other ranks before this one reports the cause.
  // A cancelled job ends cleanly: the teacher ranks serve until every
  // student stops.
  if (!r.ok() && r.status().code() != absl::StatusCode::kCancelled) return r.status();
  absl::Status stop = objective.Finish();
  if (!r.ok()) return r.status();
  RETURN_IF_ERROR(stop);
  return r;
}

}  // namespace distill::worker
