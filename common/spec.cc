#include "common/spec.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "common/sweep.h"
#include "common/yaml_proto.h"

namespace distill::common {
namespace {

namespace fs = std::filesystem;
using distill::v1::JobSpec;

absl::Status Bad(absl::string_view path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

// Helpers that turn a failed bound check into "path: must be ..., got v".
template <typename T>
absl::Status AtLeast(absl::string_view path, T v, T lo) {
  if (v < lo) return Bad(path, absl::StrCat("must be >= ", lo, ", got ", v));
  return absl::OkStatus();
}

// Note [Spec bounds]: every size a spec sets has an upper bound far above
// any real run, checked here (before the worker allocates anything), so an
// absurd value is an error naming its field instead of std::bad_alloc from
// deep inside a run. The limits are constants of this file.
constexpr int32_t kMaxBatch = 1 << 16;        // train.micro_batch, train.grad_accum
constexpr int64_t kMaxBatchTokens = 1 << 24;  // micro_batch x seq_len
constexpr int32_t kMaxSeqLen = 1 << 20;       // data.seq_len
constexpr int32_t kMaxThreads = 1024;         // train.threads
constexpr int32_t kMaxRanks = 1 << 16;        // ranks, student.ranks, teacher.ranks
constexpr int32_t kMaxLoraRank = 1 << 16;     // lora.rank (a model dimension caps it too)
constexpr int64_t kMaxSteps = int64_t{1} << 40;

template <typename T>
absl::Status InRange(absl::string_view path, T v, T lo, T hi) {
  if (v < lo || v > hi) return Bad(path, absl::StrCat("must be in [", lo, ", ", hi, "], got ", v));
  return absl::OkStatus();
}

absl::Status Positive(absl::string_view path, double v) {
  if (!(v > 0) || !std::isfinite(v)) return Bad(path, absl::StrCat("must be > 0, got ", v));
  return absl::OkStatus();
}

// [0, 1): probabilities such as dropout and Adam's betas.
absl::Status InUnitInterval(absl::string_view path, double v) {
  if (!(v >= 0 && v < 1)) return Bad(path, absl::StrCat("must be in [0, 1), got ", v));
  return absl::OkStatus();
}

// `prefix` is "lora" (finetune) or "student.lora" (distill).
absl::Status ValidateLora(const distill::v1::LoraSpec& lora, absl::string_view prefix) {
  if (lora.has_rank())
    RETURN_IF_ERROR(InRange<int32_t>(absl::StrCat(prefix, ".rank"), lora.rank(), 1, kMaxLoraRank));
  if (lora.has_alpha()) RETURN_IF_ERROR(Positive(absl::StrCat(prefix, ".alpha"), lora.alpha()));
  if (lora.has_dropout()) RETURN_IF_ERROR(InUnitInterval(absl::StrCat(prefix, ".dropout"), lora.dropout()));
  const auto& known = LoraTargetModuleNames();
  std::set<std::string> seen;
  for (int i = 0; i < lora.target_modules_size(); ++i) {
    const std::string& m = lora.target_modules(i);
    const std::string path = absl::StrCat(prefix, ".target_modules[", i, "]");
    if (std::find(known.begin(), known.end(), m) == known.end()) {
      return Bad(path, absl::StrCat("unknown module '", m, "', expected one of: ",
                                    absl::StrJoin(known, ", ")));
    }
    if (!seen.insert(m).second) return Bad(path, absl::StrCat("'", m, "' is listed twice"));
  }
  return absl::OkStatus();
}

absl::Status ValidateTrain(const distill::v1::TrainSpec& t) {
  if (t.has_steps()) RETURN_IF_ERROR(InRange<int64_t>("train.steps", t.steps(), 1, kMaxSteps));
  if (t.has_micro_batch())
    RETURN_IF_ERROR(InRange<int32_t>("train.micro_batch", t.micro_batch(), 1, kMaxBatch));
  if (t.has_grad_accum())
    RETURN_IF_ERROR(InRange<int32_t>("train.grad_accum", t.grad_accum(), 1, kMaxBatch));
  if (t.has_lr()) RETURN_IF_ERROR(Positive("train.lr", t.lr()));
  if (t.has_min_lr()) {
    if (!(t.min_lr() >= 0)) return Bad("train.min_lr", absl::StrCat("must be >= 0, got ", t.min_lr()));
    if (t.has_lr() && t.min_lr() > t.lr()) {
      return Bad("train.min_lr", absl::StrCat("must not exceed train.lr (", t.lr(), "), got ", t.min_lr()));
    }
  }
  if (t.has_warmup()) {
    RETURN_IF_ERROR(AtLeast<int64_t>("train.warmup", t.warmup(), 0));
    if (t.has_steps() && t.warmup() > t.steps()) {
      return Bad("train.warmup", absl::StrCat("must not exceed train.steps (", t.steps(), "), got ", t.warmup()));
    }
  }
  if (t.has_weight_decay() && !(t.weight_decay() >= 0)) {
    return Bad("train.weight_decay", absl::StrCat("must be >= 0, got ", t.weight_decay()));
  }
  if (t.has_clip() && !(t.clip() >= 0)) return Bad("train.clip", absl::StrCat("must be >= 0 (0 = off), got ", t.clip()));
  if (t.has_eval_every()) RETURN_IF_ERROR(AtLeast<int64_t>("train.eval_every", t.eval_every(), 0));
  if (t.has_log_every()) RETURN_IF_ERROR(AtLeast<int64_t>("train.log_every", t.log_every(), 1));
  if (t.has_eval_batches())
    RETURN_IF_ERROR(AtLeast<int32_t>("train.eval_batches", t.eval_batches(), 0));
  if (t.has_threads())
    RETURN_IF_ERROR(InRange<int32_t>("train.threads", t.threads(), 0, kMaxThreads));
  if (t.has_device() && t.device() != "auto" && t.device() != "cpu" && t.device() != "cuda") {
    return Bad("train.device", absl::StrCat("unknown device '", t.device(), "', expected auto, cpu or cuda"));
  }
  if (t.has_beta1()) RETURN_IF_ERROR(InUnitInterval("train.beta1", t.beta1()));
  if (t.has_beta2()) RETURN_IF_ERROR(InUnitInterval("train.beta2", t.beta2()));
  if (t.has_eps()) RETURN_IF_ERROR(Positive("train.eps", t.eps()));
  return absl::OkStatus();
}


// Where the trained model comes from: model (HF dir) xor init (config.json),
// and a lora block only with method lora. `prefix` is "" (finetune) or
// "student." (distill).
absl::Status ValidateModelSource(absl::string_view prefix, const std::string& model, const std::string& init,
                                 distill::v1::TrainMethod method, bool has_lora, const distill::v1::LoraSpec& lora) {
  if (model.empty() == init.empty()) {
    return Bad(absl::StrCat(prefix, model.empty() ? "model" : "init"),
               model.empty() ? "required: a Hugging Face model directory (model:) or a config.json (init:)"
                             : "give either model (a Hugging Face directory) or init (a config.json), not both");
  }
  if (method != distill::v1::LORA && has_lora) {
    return Bad(absl::StrCat(prefix, "lora"), absl::StrCat("given, but ", prefix, "method is not lora"));
  }
  return ValidateLora(lora, absl::StrCat(prefix, "lora"));
}

absl::Status ValidateDistill(const distill::v1::DistillSpec& d) {
  if (d.has_temperature()) RETURN_IF_ERROR(Positive("distill.temperature", d.temperature()));
  if (d.has_alpha() && !(d.alpha() >= 0 && d.alpha() <= 1)) {
    return Bad("distill.alpha", absl::StrCat("must be in [0, 1], got ", d.alpha()));
  }
  if (d.has_beta() && !(d.beta() > 0 && d.beta() < 1)) {
    return Bad("distill.beta", absl::StrCat("must be in (0, 1), got ", d.beta()));
  }
  if (d.has_top_k()) RETURN_IF_ERROR(AtLeast<int32_t>("distill.top_k", d.top_k(), 1));
  if (d.has_chunk_tokens()) RETURN_IF_ERROR(AtLeast<int32_t>("distill.chunk_tokens", d.chunk_tokens(), 1));
  if (!d.layer_map().empty() && d.layer_map() != "uniform") {
    return Bad("distill.layer_map", absl::StrCat("unknown map '", d.layer_map(), "', expected uniform (or leave it out)"));
  }
  if (d.has_feature_weight() && (!(d.feature_weight() >= 0) || !std::isfinite(d.feature_weight()))) {
    return Bad("distill.feature_weight", absl::StrCat("must be >= 0, got ", d.feature_weight()));
  }
  if (!d.layer_map().empty() && d.features_size() > 0) {
    return Bad("distill.layer_map", "uniform generates the feature pairs; give either layer_map or features, not both");
  }
  std::set<std::pair<int32_t, int32_t>> seen;
  for (int i = 0; i < d.features_size(); ++i) {
    const auto& f = d.features(i);
    const std::string path = absl::StrCat("distill.features[", i, "]");
    // Layer indices are checked against the models' depths by the worker.
    RETURN_IF_ERROR(AtLeast<int32_t>(path + ".student_layer", f.student_layer(), 0));
    RETURN_IF_ERROR(AtLeast<int32_t>(path + ".teacher_layer", f.teacher_layer(), 0));
    if (f.has_weight() && (!(f.weight() >= 0) || !std::isfinite(f.weight()))) {
      return Bad(path + ".weight", absl::StrCat("must be >= 0, got ", f.weight()));
    }
    if (!seen.insert({f.student_layer(), f.teacher_layer()}).second) {
      return Bad(path, absl::StrCat("the pair student_layer ", f.student_layer(), ", teacher_layer ",
                                    f.teacher_layer(), " is listed twice"));
    }
  }
  return absl::OkStatus();
}

// Rank counts and the distributed runtime's knobs. Teacher ranks beyond the
// teacher's layer count are the worker's check (it needs the model).
absl::Status ValidateRanks(const JobSpec& spec) {
  auto at_least = [](absl::string_view path, int32_t v, int32_t lo) {
    return AtLeast<int32_t>(path, v, lo);
  };
  auto ranks = [](absl::string_view path, int32_t v, int32_t lo) {
    return InRange<int32_t>(path, v, lo, kMaxRanks);
  };
  if (spec.has_ranks()) RETURN_IF_ERROR(ranks("ranks", spec.ranks(), 1));
  if (spec.student().has_ranks())
    RETURN_IF_ERROR(ranks("student.ranks", spec.student().ranks(), 1));
  if (spec.teacher().has_ranks())
    RETURN_IF_ERROR(ranks("teacher.ranks", spec.teacher().ranks(), 0));
  const auto& r = spec.runtime();
  if (r.has_timeout_s()) RETURN_IF_ERROR(Positive("runtime.timeout_s", r.timeout_s()));
  if (r.has_bucket_mb()) RETURN_IF_ERROR(Positive("runtime.bucket_mb", r.bucket_mb()));
  if (r.has_peak_tflops()) RETURN_IF_ERROR(Positive("runtime.peak_tflops", r.peak_tflops()));
  if (r.has_prefetch()) RETURN_IF_ERROR(at_least("runtime.prefetch", r.prefetch(), 1));
  if (r.has_sync_check_every()) RETURN_IF_ERROR(at_least("runtime.sync_check_every", r.sync_check_every(), 0));
  if (r.has_zero() && (r.zero() < 0 || r.zero() > 2)) {
    return Bad("runtime.zero", absl::StrCat("must be 0, 1 or 2, got ", r.zero()));
  }
  if (spec.comm() == distill::v1::COMM_NCCL && spec.train().device() == "cpu") {
    return Bad("comm", "nccl needs GPU tensors; with train.device cpu use mpi or auto");
  }
  return absl::OkStatus();
}

// teacher.cache and its options (docs/architecture.md, Teacher cache): a
// cache holds top-k logits and is read in each student process.
absl::Status ValidateTeacherCache(const distill::v1::TeacherSpec& t, const distill::v1::DistillSpec& d) {
  if (t.cache().empty()) {
    if (t.cache_encoding() != distill::v1::CACHE_ENCODING_UNSPECIFIED || t.cache_temperatures_size() > 0 ||
        t.cache_layers_size() > 0) {
      return Bad("teacher.cache", "required by teacher.cache_encoding, cache_temperatures and cache_layers");
    }
    return absl::OkStatus();
  }
  if (d.logits() != distill::v1::LOGIT_TRANSPORT_UNSPECIFIED && d.logits() != distill::v1::TOPK) {
    return Bad("distill.logits", "a teacher cache holds top-k logits: use topk (or leave it out) with teacher.cache");
  }
  if (t.has_ranks() && t.ranks() != 0) {
    return Bad("teacher.ranks", t.model().empty()
                                    ? "must be 0 without teacher.model: each student reads teacher.cache"
                                    : "must be 0 with teacher.cache: each student reads the cache");
  }
  for (int i = 0; i < t.cache_temperatures_size(); ++i) {
    RETURN_IF_ERROR(Positive(absl::StrCat("teacher.cache_temperatures[", i, "]"), t.cache_temperatures(i)));
  }
  for (int i = 0; i < t.cache_layers_size(); ++i) {
    RETURN_IF_ERROR(AtLeast<int32_t>(absl::StrCat("teacher.cache_layers[", i, "]"), t.cache_layers(i), 0));
  }
  return absl::OkStatus();
}

// type: distill keeps the student under `student`; the top-level model fields
// are finetune's, and silently ignoring them would train the wrong model.
absl::Status ValidateDistillJob(const JobSpec& spec) {
  if (!spec.model().empty()) return Bad("model", "for type distill put the student under student.model");
  if (!spec.init().empty()) return Bad("init", "for type distill put the student under student.init");
  if (spec.method() != distill::v1::TRAIN_METHOD_UNSPECIFIED) {
    return Bad("method", "for type distill put the method under student.method");
  }
  if (spec.has_lora()) return Bad("lora", "for type distill put the lora block under student.lora");
  if (spec.has_ranks()) return Bad("ranks", "for type distill give student.ranks and teacher.ranks");
  if (spec.teacher().model().empty() && spec.teacher().cache().empty()) {
    return Bad("teacher.model",
               "required: the teacher's Hugging Face model directory (or teacher.cache, a teacher "
               "cache to read)");
  }
  RETURN_IF_ERROR(ValidateTeacherCache(spec.teacher(), spec.distill()));
  const auto& st = spec.student();
  RETURN_IF_ERROR(ValidateModelSource("student.", st.model(), st.init(), st.method(), st.has_lora(), st.lora()));
  return ValidateDistill(spec.distill());
}

absl::Status ValidateFinetuneJob(const JobSpec& spec) {
  if (spec.has_teacher()) return Bad("teacher", "given, but type is not distill");
  if (spec.has_student()) return Bad("student", "given, but type is not distill (put the model at the top level)");
  if (spec.has_distill()) return Bad("distill", "given, but type is not distill");
  return ValidateModelSource("", spec.model(), spec.init(), spec.method(), spec.has_lora(), spec.lora());
}

}  // namespace

const std::vector<std::string>& LoraTargetModuleNames() {
  static const auto* names = new std::vector<std::string>{
      "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  return *names;
}

absl::StatusOr<JobSpec> ParseJobSpec(absl::string_view text, absl::string_view source) {
  JobSpec spec;
  absl::StatusOr<std::string> normal = NormalizeSweepYaml(text);  // sweep: map -> list form
  RETURN_IF_ERROR(WithPrefix(normal.status(), source));
  RETURN_IF_ERROR(YamlToProto(*normal, source, &spec));
  return spec;
}

namespace {

// The LoRA defaults, shared by finetune's `lora` and distill's `student.lora`.
void LoraDefaults(distill::v1::LoraSpec* lora) {
  if (!lora->has_rank()) lora->set_rank(8);
  if (!lora->has_alpha()) lora->set_alpha(2.0 * lora->rank());
  if (!lora->has_dropout()) lora->set_dropout(0.0);
  if (lora->target_modules_size() == 0) {
    lora->add_target_modules("q_proj");
    lora->add_target_modules("v_proj");
  }
  if (!lora->has_rslora()) lora->set_rslora(false);
}

void DistillDefaults(JobSpec* s) {
  auto* st = s->mutable_student();
  if (st->method() == distill::v1::TRAIN_METHOD_UNSPECIFIED) st->set_method(distill::v1::FULL);
  // Only for a LoRA student, so that a defaulted spec still validates.
  if (st->method() == distill::v1::LORA) LoraDefaults(st->mutable_lora());
  if (!st->has_ranks()) st->set_ranks(1);
  if (!s->teacher().has_ranks()) s->mutable_teacher()->set_ranks(0);
  auto* d = s->mutable_distill();
  if (!d->has_temperature()) d->set_temperature(2.0);
  if (!d->has_alpha()) d->set_alpha(0.5);
  if (!d->has_t2_scale()) d->set_t2_scale(true);
  if (d->loss() == distill::v1::DISTILL_LOSS_UNSPECIFIED) d->set_loss(distill::v1::FORWARD_KL);
  if (!d->has_beta()) d->set_beta(0.5);
  auto* t = s->mutable_teacher();
  if (!t->cache().empty()) {
    // A cache holds top-k logits, exact unless asked otherwise.
    if (d->logits() == distill::v1::LOGIT_TRANSPORT_UNSPECIFIED) d->set_logits(distill::v1::TOPK);
    if (t->cache_encoding() == distill::v1::CACHE_ENCODING_UNSPECIFIED) t->set_cache_encoding(distill::v1::EXACT);
  }
  if (d->logits() == distill::v1::LOGIT_TRANSPORT_UNSPECIFIED) d->set_logits(distill::v1::DENSE);
  if (!d->has_top_k()) d->set_top_k(64);
  if (!d->has_feature_weight()) d->set_feature_weight(1.0);
  if (!d->has_chunk_tokens()) d->set_chunk_tokens(1024);
  for (auto& f : *d->mutable_features()) {
    if (f.loss() == distill::v1::FEATURE_LOSS_UNSPECIFIED) f.set_loss(distill::v1::MSE);
    if (!f.has_weight()) f.set_weight(1.0);
  }
}

}  // namespace

JobSpec WithDefaults(const JobSpec& in) {
  JobSpec s = in;
  // The trained model's method decides the default learning rate below.
  distill::v1::TrainMethod method;
  if (s.type() == distill::v1::DISTILL) {
    DistillDefaults(&s);
    method = s.student().method();
  } else {
    if (s.method() == distill::v1::TRAIN_METHOD_UNSPECIFIED) s.set_method(distill::v1::FULL);
    // Only for LoRA, so that a defaulted spec still validates (a lora block
    // with method full is an error).
    if (s.method() == distill::v1::LORA) LoraDefaults(s.mutable_lora());
    if (!s.has_ranks()) s.set_ranks(1);
    method = s.method();
  }
  auto* data = s.mutable_data();
  auto* rt = s.mutable_runtime();
  if (!rt->has_timeout_s()) rt->set_timeout_s(60.0);
  if (!rt->has_bucket_mb()) rt->set_bucket_mb(25.0);
  if (!rt->has_prefetch()) rt->set_prefetch(2);
  if (!rt->has_sync_check_every()) rt->set_sync_check_every(50);
  if (!rt->has_zero()) rt->set_zero(0);
  if (!data->has_seq_len()) data->set_seq_len(256);
  if (!data->has_tokenizer()) data->set_tokenizer("bytes");
  if (!data->has_text_field()) data->set_text_field("text");
  if (data->format() == distill::v1::DATA_FORMAT_UNSPECIFIED) data->set_format(distill::v1::TEXT);
  if (data->loss_on() == distill::v1::LOSS_ON_UNSPECIFIED) data->set_loss_on(distill::v1::ASSISTANT);
  if (data->overflow() == distill::v1::OVERFLOW_UNSPECIFIED) data->set_overflow(distill::v1::TRUNCATE);
  if (!data->has_packing()) data->set_packing(true);
  auto* t = s.mutable_train();
  if (!t->has_steps()) t->set_steps(100);
  if (!t->has_micro_batch()) t->set_micro_batch(8);
  if (!t->has_grad_accum()) t->set_grad_accum(1);
  if (!t->has_lr()) t->set_lr(method == distill::v1::LORA ? 1e-3 : 3e-4);
  if (!t->has_min_lr()) t->set_min_lr(t->lr() / 10);
  if (!t->has_warmup()) t->set_warmup(0);
  if (t->schedule() == distill::v1::LR_SCHEDULE_UNSPECIFIED) t->set_schedule(distill::v1::LR_SCHEDULE_COSINE);
  if (!t->has_weight_decay()) t->set_weight_decay(0.0);
  if (!t->has_clip()) t->set_clip(1.0);
  if (!t->has_seed()) t->set_seed(0);
  if (!t->has_eval_every()) t->set_eval_every(0);
  if (!t->has_log_every()) t->set_log_every(10);
  if (!t->has_eval_batches()) t->set_eval_batches(0);
  if (!t->has_threads()) t->set_threads(0);
  if (!t->has_activation_checkpointing()) t->set_activation_checkpointing(false);
  if (!t->has_device()) t->set_device("auto");
  if (!t->has_beta1()) t->set_beta1(0.9);
  if (!t->has_beta2()) t->set_beta2(0.999);
  if (!t->has_eps()) t->set_eps(1e-8);
  auto* c = s.mutable_checkpoint();
  if (!c->has_every()) c->set_every(0);
  if (!c->has_keep()) c->set_keep(2);
  if (!c->has_resume()) c->set_resume(true);
  return s;
}

namespace {

// The instruction-data fields: only with chat or prompt_completion data;
// chat needs a tokenizer with a chat template; instruction data is JSONL.
absl::Status ValidateDataFormat(const distill::v1::DataSpec& data) {
  const bool instruction = data.format() == distill::v1::CHAT || data.format() == distill::v1::PROMPT_COMPLETION;
  if (!instruction) {
    // Their defaults are harmless (WithDefaults fills them in for text too).
    const char* only = "applies to chat and prompt_completion data only (data.format)";
    if (data.loss_on() == distill::v1::ALL) return Bad("data.loss_on", only);
    if (data.overflow() == distill::v1::DROP) return Bad("data.overflow", only);
    if (data.has_packing() && !data.packing()) return Bad("data.packing", only);
    return absl::OkStatus();
  }
  if (data.format() == distill::v1::CHAT && (!data.has_tokenizer() || data.tokenizer() == "bytes")) {
    return Bad("data.tokenizer",
               "chat data needs a tokenizer with a chat template: the path of a tokenizer.json or of its "
               "directory (with tokenizer_config.json), not bytes");
  }
  for (const auto* files : {&data.train(), &data.eval()}) {
    for (const std::string& path : *files) {
      if (!absl::EndsWith(path, ".jsonl")) {
        return Bad(files == &data.train() ? "data.train" : "data.eval",
                   absl::StrCat("'", path, "': chat and prompt_completion data are .jsonl files"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckSpecSize(const JobSpec& spec) {
  if (spec.name().size() > kMaxSpecNameBytes) {
    return Bad("name", absl::StrCat("at most ", kMaxSpecNameBytes, " bytes, got ", spec.name().size()));
  }
  const size_t bytes = spec.ByteSizeLong();
  if (bytes > kMaxSpecBytes) {
    return Bad("spec", absl::StrCat("at most ", kMaxSpecBytes, " bytes serialized, got ", bytes));
  }
  return absl::OkStatus();
}

absl::Status ValidateJobSpec(const JobSpec& spec) {
  RETURN_IF_ERROR(CheckSpecSize(spec));
  if (spec.sweep_size() > 0) {
    return Bad("sweep", "submit a sweep with distillctl submit; the coordinator expands it");
  }
  switch (spec.type()) {
    case distill::v1::FINETUNE:
      RETURN_IF_ERROR(ValidateFinetuneJob(spec));
      break;
    case distill::v1::DISTILL:
      RETURN_IF_ERROR(ValidateDistillJob(spec));
      break;
    default:
      return Bad("type", "required: finetune or distill");
  }
  if (spec.data().train_size() == 0) return Bad("data.train", "required: at least one token shard (.bin)");
  for (int i = 0; i < spec.data().train_size(); ++i) {
    if (spec.data().train(i).empty()) return Bad(absl::StrCat("data.train[", i, "]"), "empty path");
  }
  for (int i = 0; i < spec.data().eval_size(); ++i) {
    if (spec.data().eval(i).empty()) return Bad(absl::StrCat("data.eval[", i, "]"), "empty path");
  }
  if (spec.data().has_tokenizer() && spec.data().tokenizer().empty()) {
    return Bad("data.tokenizer", "empty: use bytes or the path of a tokenizer.json");
  }
  if (spec.data().has_text_field() && spec.data().text_field().empty()) return Bad("data.text_field", "empty");
  RETURN_IF_ERROR(ValidateDataFormat(spec.data()));
  if (spec.data().has_seq_len())
    RETURN_IF_ERROR(InRange<int32_t>("data.seq_len", spec.data().seq_len(), 1, kMaxSeqLen));
  const int64_t batch_tokens =
      int64_t{spec.train().has_micro_batch() ? spec.train().micro_batch() : 8} *
      (spec.data().has_seq_len() ? spec.data().seq_len() : 256);
  if (batch_tokens > kMaxBatchTokens) {
    return Bad("train.micro_batch", absl::StrCat("micro_batch x data.seq_len is ", batch_tokens,
                                                 " tokens, more than ", kMaxBatchTokens));
  }
  RETURN_IF_ERROR(ValidateTrain(spec.train()));
  if (spec.checkpoint().has_every()) RETURN_IF_ERROR(AtLeast<int64_t>("checkpoint.every", spec.checkpoint().every(), 0));
  if (spec.checkpoint().has_keep()) RETURN_IF_ERROR(AtLeast<int32_t>("checkpoint.keep", spec.checkpoint().keep(), 1));
  if (spec.output().empty()) return Bad("output", "required: the output directory");
  return ValidateRanks(spec);
}

namespace {

// Calls fn(field, &path, output) for every path field of *spec (SpecPathFields),
// touching only present blocks: creating an absent one would change the spec.
template <typename Fn>
void VisitPathFields(JobSpec* spec, Fn fn) {
  fn("model", spec->mutable_model(), false);
  fn("init", spec->mutable_init(), false);
  if (spec->has_teacher()) {
    fn("teacher.model", spec->mutable_teacher()->mutable_model(), false);
    // Written by the capture a teacher.model implies, read otherwise.
    const bool written = !spec->teacher().model().empty();
    fn("teacher.cache", spec->mutable_teacher()->mutable_cache(), written);
  }
  if (spec->has_student()) {
    fn("student.model", spec->mutable_student()->mutable_model(), false);
    fn("student.init", spec->mutable_student()->mutable_init(), false);
  }
  auto* data = spec->mutable_data();
  for (int i = 0; i < data->train_size(); ++i)
    fn(absl::StrCat("data.train[", i, "]"), data->mutable_train(i), false);
  for (int i = 0; i < data->eval_size(); ++i)
    fn(absl::StrCat("data.eval[", i, "]"), data->mutable_eval(i), false);
  if (data->has_tokenizer() && data->tokenizer() != "bytes")
    fn("data.tokenizer", data->mutable_tokenizer(), false);
  fn("output", spec->mutable_output(), true);
}

}  // namespace

std::vector<PathField> SpecPathFields(const JobSpec& spec) {
  std::vector<PathField> out;
  JobSpec copy = spec;
  VisitPathFields(&copy, [&](const std::string& field, std::string* path, bool output) {
    if (!path->empty()) out.push_back({field, *path, output});
  });
  return out;
}

void ResolveSpecPaths(const std::string& base_dir, JobSpec* spec) {
  VisitPathFields(spec, [&](const std::string&, std::string* p, bool) {
    if (!p->empty() && fs::path(*p).is_relative()) *p = (fs::path(base_dir) / *p).lexically_normal().string();
  });
}

absl::StatusOr<JobSpec> LoadJobSpec(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  ASSIGN_OR_RETURN(JobSpec spec, ParseJobSpec(text, path));
  absl::Status st = ValidateJobSpec(spec);
  RETURN_IF_ERROR(WithPrefix(st, path));
  std::error_code ec;
  fs::path base = fs::absolute(fs::path(path), ec).parent_path();
  ResolveSpecPaths(base.string(), &spec);
  return WithDefaults(spec);
}

}  // namespace distill::common
