#include "worker/train/trainer.h"

#include <sys/resource.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/comm/grad_reducer.h"
#include "worker/data/sampler.h"
#include "worker/data/text_source.h"
#include "worker/data/token_shard.h"
#include "worker/model/hf_io.h"
#include "worker/model/lora.h"
#include "worker/train/autocast.h"
#include "worker/train/checkpoint.h"
#include "worker/train/eval.h"
#include "worker/train/optimizer.h"

namespace distill::worker {
namespace fs = std::filesystem;
using distill::v1::JobSpec;
using Clock = std::chrono::steady_clock;

namespace {

// The spec's schedule (defaulted to cosine by common/spec) as the optimizer's.
LrSchedule ScheduleOf(distill::v1::LrSchedule s) {
  switch (s) {
    case distill::v1::LR_SCHEDULE_LINEAR:
      return LrSchedule::kLinear;
    case distill::v1::LR_SCHEDULE_CONSTANT:
      return LrSchedule::kConstant;
    default:
      return LrSchedule::kCosine;
  }
}

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// splitmix64 of (seed, step): the per-step RNG seed (Note [Deterministic resume]).
uint64_t StepSeed(uint64_t seed, int64_t step) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(step + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

absl::StatusOr<torch::Device> PickDevice(const std::string& name, int index) {
  const bool cuda = torch::cuda::is_available();
  if (name == "cpu" || (name == "auto" && !cuda)) return torch::Device(torch::kCPU);
  if (!cuda) return absl::FailedPreconditionError("train.device: cuda requested but no CUDA device is available");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

void SetThreads(int threads) {
  int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(n);
}

// All sinks at once.
class Fanout {
 public:
  explicit Fanout(std::vector<ReportSink*> sinks) : sinks_(std::move(sinks)) {}
  void Step(const StepRecord& r) { for (auto* s : sinks_) s->OnStep(r); }
  void Eval(const EvalRecord& r) { for (auto* s : sinks_) s->OnEval(r); }
  void Message(const std::string& m) { for (auto* s : sinks_) s->OnMessage(m); }

 private:
  std::vector<ReportSink*> sinks_;
};

// The trained model's source: finetune keeps it at the top level, distill
// under `student`.
struct StudentSource {
  std::string model, init;
  bool lora = false;
  distill::v1::LoraSpec lora_spec;
};

StudentSource GetStudentSource(const JobSpec& spec) {
  if (spec.type() == distill::v1::DISTILL) {
    const auto& st = spec.student();
    return {st.model(), st.init(), st.method() == distill::v1::LORA, st.lora()};
  }
  return {spec.model(), spec.init(), spec.method() == distill::v1::LORA, spec.lora()};
}

// Finetune: next-token cross-entropy.
class CrossEntropyObjective : public TrainObjective {
 public:
  std::string job_type() const override { return "finetune"; }
  absl::Status Prepare(LlamaForCausalLM&, const torch::Device&, bool bf16) override {
    bf16_ = bf16;
    return absl::OkStatus();
  }
  absl::StatusOr<LossParts> Loss(LlamaForCausalLM& model, const torch::Tensor& inputs,
                                 const torch::Tensor& targets) override {
    AutocastGuard autocast(bf16_);
    LossParts parts;
    parts.total = CausalLmLoss(model->forward(inputs), targets);
    return parts;
  }
  absl::StatusOr<EvalRecord> Evaluate(LlamaForCausalLM& model, const TokenDataset& data, int64_t seq_len,
                                      int64_t batch, int64_t max_windows, int64_t step, EvalShard shard) override {
    AutocastGuard autocast(bf16_);
    const torch::Device device = model->LmHeadWeight().device();
    ASSIGN_OR_RETURN(EvalResult r, EvaluateLm(model, data, seq_len, batch, max_windows, device, shard));
    EvalRecord rec;
    rec.step = step;
    rec.loss = r.loss;
    rec.ppl = r.ppl;
    rec.tokens = r.tokens;
    return rec;
  }

 private:
  bool bf16_ = false;
};

// Sums of the reported loss parts over the steps since the last record.
struct SplitSums {
  double ce = 0, kd = 0, teacher_s = 0, stream_bytes = 0;
  std::map<std::string, double> features;
  int64_t micro_batches = 0;
  void Add(const LossParts& p) {
    ce += p.ce;
    kd += p.kd;
    teacher_s += p.teacher_s;
    stream_bytes += p.stream_bytes;
    for (const auto& [name, v] : p.features) features[name] += v;
    ++micro_batches;
  }
};

// Note [Data-parallel step]: with S student ranks each rank draws its own b
// windows of every global micro-batch of b*S (sampler.h), so S ranks of
// micro-batch b see exactly the windows one rank of micro-batch b*S sees. The
// step's last micro-step is armed: its backward hands finished gradient
// buckets to the all-reduce (average) while it goes on (grad_reducer.h);
// accumulation micro-steps communicate nothing. After it every rank holds the
// same averaged gradient, so clipping and AdamW keep the weights identical
// (checked by checksum every runtime.sync_check_every steps). The reported
// losses are averaged over the ranks (one small all-reduce per step, which
// also carries the stop flag so every rank stops at the same step).

// The reported per-step values, averaged over the student ranks. `values`
// is laid out by Pack and read back by Unpack.
struct StepValues {
  double loss = 0;
  SplitSums split;
};

torch::Tensor Pack(const StepValues& v) {
  std::vector<double> x = {v.loss, v.split.ce, v.split.kd, v.split.teacher_s, v.split.stream_bytes};
  for (const auto& [name, f] : v.split.features) x.push_back(f);
  return torch::tensor(x, torch::kDouble);
}

void Unpack(const torch::Tensor& t, StepValues* v) {
  const double* x = t.data_ptr<double>();
  v->loss = x[0];
  v->split.ce = x[1];
  v->split.kd = x[2];
  v->split.teacher_s = x[3];
  v->split.stream_bytes = x[4];
  int i = 5;
  for (auto& [name, f] : v->split.features) f = x[i++];
}

// Combines the ranks' eval shards, weighted by target counts.
absl::Status CombineEval(Communicator& comm, EvalRecord* r) {
  const double n = static_cast<double>(r->tokens);
  torch::Tensor x = torch::tensor(std::vector<double>{r->loss * n, n, r->kl * n, r->top1_agreement * n,
                                                      r->teacher_loss * n},
                                  torch::kDouble);
  RETURN_IF_ERROR(comm.AllReduce(x, ReduceOp::kSum, "eval sums"));
  const double* v = x.data_ptr<double>();
  const double total = std::max(1.0, v[1]);
  r->tokens = static_cast<int64_t>(v[1]);
  r->loss = v[0] / total;
  r->ppl = std::exp(r->loss);
  r->kl = v[2] / total;
  r->top1_agreement = v[3] / total;
  r->teacher_loss = v[4] / total;
  r->teacher_ppl = std::exp(r->teacher_loss);
  return absl::OkStatus();
}

absl::StatusOr<TrainResult> RunTrainingImpl(const JobSpec& spec, const TrainOptions& options,
                                            TrainObjective& objective) {
  const auto& t = spec.train();
  SetThreads(t.threads());
  ASSIGN_OR_RETURN(torch::Device device, PickDevice(t.device(), options.cuda_device));
  Communicator* students = options.students;
  const int ranks = students ? students->size() : 1;
  const int my_rank = students ? students->rank() : 0;
  const bool writer = my_rank == 0;  // metrics, checkpoints, output
  const bool bf16 = t.precision() == distill::v1::BF16 ||
                    (t.precision() == distill::v1::PRECISION_UNSPECIFIED && device.is_cuda());
  if (bf16 && !device.is_cuda()) {
    return absl::InvalidArgumentError("train.precision: bf16 needs a CUDA device; use fp32 on cpu");
  }

  // Model.
  const StudentSource source = GetStudentSource(spec);
  LlamaForCausalLM model{nullptr};
  if (!source.model.empty()) {
    ASSIGN_OR_RETURN(model, LoadHfModel(source.model));
  } else {
    ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(source.init));
    model = InitModel(config, t.seed());
  }
  const bool lora = source.lora;
  LoraConfig lora_config;
  if (lora) {
    lora_config.rank = source.lora_spec.rank();
    lora_config.alpha = source.lora_spec.alpha();
    lora_config.dropout = source.lora_spec.dropout();
    lora_config.target_modules.assign(source.lora_spec.target_modules().begin(),
                                      source.lora_spec.target_modules().end());
    lora_config.rslora = source.lora_spec.rslora();
    RETURN_IF_ERROR(ApplyLora(model, lora_config, t.seed()));
  }
  model->to(device);
  model->train();
  RETURN_IF_ERROR(objective.Prepare(model, device, bf16));

  // Data.
  const int64_t seq_len = spec.data().seq_len();
  const int64_t vocab = model->config().vocab_size;
  auto shards = [&](const auto& paths) -> absl::StatusOr<std::vector<std::string>> {
    std::vector<std::string> out;
    for (const std::string& p : paths) {
      ASSIGN_OR_RETURN(std::string shard, EnsureTokenShard(p, spec.data().tokenizer(), spec.data().text_field(),
                                                           at::get_num_threads()));
      out.push_back(shard);
    }
    return out;
  };
  ASSIGN_OR_RETURN(std::vector<std::string> train_paths, shards(spec.data().train()));
  ASSIGN_OR_RETURN(TokenDataset train_data, TokenDataset::Open(train_paths));
  RETURN_IF_ERROR(train_data.CheckVocab(vocab));
  std::optional<TokenDataset> eval_data;
  if (spec.data().eval_size() > 0) {
    ASSIGN_OR_RETURN(std::vector<std::string> eval_paths, shards(spec.data().eval()));
    ASSIGN_OR_RETURN(eval_data, TokenDataset::Open(eval_paths));
    RETURN_IF_ERROR(eval_data->CheckVocab(vocab));
  }
  SamplerOptions sopt;
  sopt.seq_len = seq_len;
  sopt.seed = t.seed();
  sopt.rank = my_rank;
  sopt.world = ranks;
  ASSIGN_OR_RETURN(WindowSampler sampler, WindowSampler::Create(train_data.size(), sopt));

  // Optimizer.
  std::vector<NamedParam> params = TrainableParams(*model);
  for (NamedParam& p : objective.ExtraParams()) params.push_back(std::move(p));
  AdamWOptions aopt;
  aopt.beta1 = t.beta1();
  aopt.beta2 = t.beta2();
  aopt.eps = t.eps();
  aopt.weight_decay = t.weight_decay();
  AdamW optimizer(params, aopt);
  std::unique_ptr<GradReducer> reducer;
  std::vector<torch::Tensor> param_tensors;
  for (const NamedParam& p : params) param_tensors.push_back(p.param);
  if (students) {
    GradReducerOptions ropt;
    ropt.bucket_bytes = options.bucket_bytes;
    ASSIGN_OR_RETURN(reducer, GradReducer::Create(param_tensors, options.grads ? *options.grads : *students, ropt));
  }

  // Output, resume, reporting.
  const fs::path out_dir(spec.output());
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(spec.output(), ": cannot create output directory: ", ec.message()));
  const std::string ckpt_root = (out_dir / "checkpoints").string();
  int64_t start_step = 0;
  int64_t tokens = 0;
  TrainResult result;
  if (spec.checkpoint().resume()) {
    if (auto latest = LatestCheckpoint(ckpt_root)) {
      ASSIGN_OR_RETURN(CheckpointState st, LoadCheckpoint(*latest, params, optimizer));
      if (st.job_type != objective.job_type()) {
        return absl::FailedPreconditionError(absl::StrCat(*latest, ": checkpoint is of a ", st.job_type,
                                                          " job, the spec is type ", objective.job_type()));
      }
      if (st.method != (lora ? "lora" : "full")) {
        return absl::FailedPreconditionError(absl::StrCat(*latest, ": checkpoint is for method ", st.method,
                                                          ", the spec says ", lora ? "lora" : "full"));
      }
      start_step = st.step;
      tokens = st.tokens;
      sampler.set_position(st.sampler_position);
      result.resumed_from = st.step;
    }
  }
  std::unique_ptr<JsonLinesSink> jsonl;
  std::vector<ReportSink*> sinks;
  if (writer) {
    ASSIGN_OR_RETURN(jsonl, JsonLinesSink::Open((out_dir / "metrics.jsonl").string(), start_step));
    sinks = options.sinks;
    sinks.push_back(jsonl.get());
  }
  Fanout report(sinks);
  result.trainable_params = CountTrainableParameters(*model);
  for (const auto& p : model->parameters()) result.total_params += p.numel();
  if (start_step > 0) report.Message(absl::StrCat("resumed from checkpoint at step ", start_step));
  std::string dp;
  if (students) {
    dp = absl::StrFormat(", %d data-parallel ranks (%s all-reduce, %d buckets)", ranks,
                         options.grads ? options.grads->backend() : students->backend(), reducer->stats().buckets);
  }
  report.Message(absl::StrFormat("training %s: %d parameters, %d trainable, %d train tokens, device %s, %d threads%s%s",
                                 lora ? "lora" : "full", result.total_params, result.trainable_params,
                                 train_data.size(), device.str(), at::get_num_threads(), dp, objective.Describe()));

  const fs::path final_output = out_dir / (lora ? "adapter" : "model");
  if (start_step >= t.steps() && fs::exists(final_output)) {
    report.Message(absl::StrCat("already complete at step ", start_step, "; output in ", final_output.string()));
    result.steps_done = start_step;
    result.finished = true;
    result.output_path = final_output.string();
    return result;
  }

  // Windows drawn ahead for the objective's lookahead: not yet consumed.
  struct Ahead {
    torch::Tensor inputs, targets;
  };
  std::deque<Ahead> ahead;
  auto save_checkpoint = [&](int64_t step) -> absl::Status {
    if (!writer) return absl::OkStatus();
    const int64_t consumed = sampler.position() - static_cast<int64_t>(ahead.size()) * t.micro_batch() * ranks;
    CheckpointState st{step, consumed, tokens, t.seed(), lora ? "lora" : "full", objective.job_type()};
    ASSIGN_OR_RETURN(std::string dir, SaveCheckpoint(ckpt_root, st, params, optimizer, spec.checkpoint().keep()));
    report.Message(absl::StrCat("checkpoint ", dir));
    return absl::OkStatus();
  };
  auto evaluate = [&](int64_t step) -> absl::Status {
    if (!eval_data) return absl::OkStatus();
    const int64_t max_windows = t.eval_batches() > 0 ? int64_t{t.eval_batches()} * t.micro_batch() : 0;
    ASSIGN_OR_RETURN(EvalRecord r, objective.Evaluate(model, *eval_data, seq_len, t.micro_batch(), max_windows, step,
                                                      EvalShard{my_rank, ranks}));
    if (students) RETURN_IF_ERROR(CombineEval(*students, &r));
    report.Eval(r);
    result.has_eval = true;
    result.eval_loss = r.loss;
    result.eval_ppl = r.ppl;
    result.eval_has_teacher = r.has_teacher;
    result.eval_kl = r.kl;
    result.eval_top1_agreement = r.top1_agreement;
    result.teacher_ppl = r.teacher_ppl;
    return absl::OkStatus();
  };

  // The loop: next batch, forward, backward (accumulated), clip, update.
  const int64_t total = t.steps();
  const int64_t tokens_per_step = int64_t{t.micro_batch()} * t.grad_accum() * seq_len * ranks;
  const int64_t end_step =
      options.max_steps_this_run > 0 ? std::min(total, start_step + options.max_steps_this_run) : total;
  int64_t micro_left = (end_step - start_step) * t.grad_accum();  // not yet drawn
  const auto draw = [&]() -> absl::Status {
    auto [inputs, targets] = MakeBatch(train_data, sampler.Next(t.micro_batch()), seq_len, device);
    --micro_left;
    if (objective.Lookahead() > 0) RETURN_IF_ERROR(objective.Enqueue(inputs));
    ahead.push_back({inputs, targets});
    return absl::OkStatus();
  };
  const auto run_start = Clock::now();
  auto last_log = run_start;
  int64_t last_log_step = start_step;
  int64_t step = start_step;
  torch::Tensor step_loss = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device));
  StepValues values;           // of the current step, reported as its `loss` is
  double teacher_s_since = 0;  // teacher seconds since the last record
  double allreduce_s_since = 0;
  bool has_split = false;
  while (step < end_step) {
    bool stop = options.stop_requested && options.stop_requested->load();
    if (students) {
      // Every rank stops at the same step boundary (a signal may reach the
      // ranks at different times).
      torch::Tensor flag = torch::tensor(std::vector<double>{stop ? 1.0 : 0.0}, torch::kDouble);
      RETURN_IF_ERROR(students->AllReduce(flag, ReduceOp::kSum, "stop flag"));
      stop = flag.item<double>() > 0.5;
    }
    if (stop) break;
    // Rank 0 draws what a single process draws; other ranks their own masks.
    torch::manual_seed(StepSeed(t.seed(), step) ^ (static_cast<uint64_t>(my_rank) * 0xD1B54A32D192ED03ull));
    const double lr = LearningRate(step, total, t.warmup(), t.lr(), t.min_lr(), ScheduleOf(t.schedule()));
    optimizer.ZeroGrad();
    step_loss.zero_();
    values = StepValues();
    for (int32_t micro = 0; micro < t.grad_accum(); ++micro) {
      while (micro_left > 0 && (ahead.empty() || static_cast<int>(ahead.size()) < 1 + objective.Lookahead())) {
        RETURN_IF_ERROR(draw());
      }
      Ahead batch = std::move(ahead.front());
      ahead.pop_front();
      ASSIGN_OR_RETURN(LossParts loss, objective.Loss(model, batch.inputs, batch.targets));
      if (reducer && micro + 1 == t.grad_accum()) reducer->Arm();
      (loss.total / t.grad_accum()).backward();
      step_loss += loss.total.detach().to(torch::kDouble);
      has_split = loss.has_split;
      values.split.Add(loss);
    }
    values.loss = step_loss.item<double>() / t.grad_accum();
    if (students) {
      const auto comm_start = Clock::now();
      RETURN_IF_ERROR(reducer->Finish());
      torch::Tensor packed = Pack(values);
      RETURN_IF_ERROR(students->AllReduce(packed, ReduceOp::kAvg, "reported losses"));
      Unpack(packed, &values);
      allreduce_s_since += Seconds(comm_start, Clock::now());
    }
    const double grad_norm = ClipGradNorm(params, t.clip());
    optimizer.Step(lr);
    ++step;
    tokens += tokens_per_step;
    const SplitSums& split = values.split;
    teacher_s_since += split.teacher_s;
    const double loss_value = values.loss;
    result.final_train_loss = loss_value;
    if (!std::isfinite(loss_value)) {
      return absl::InternalError(absl::StrCat("training diverged: loss is ", loss_value, " at step ", step,
                                              " (lower train.lr or enable train.clip)"));
    }
    if (students && options.sync_check_every > 0 && step % options.sync_check_every == 0) {
      RETURN_IF_ERROR(GradReducer::CheckInSync(param_tensors, *students, step));
    }
    if (step % t.log_every() == 0 || step == total) {
      const auto now = Clock::now();
      const double dt = Seconds(last_log, now);
      StepRecord r;
      r.step = step;
      r.total_steps = total;
      r.loss = loss_value;
      r.lr = lr;
      r.grad_norm = grad_norm;
      r.tokens = tokens;
      r.tokens_per_s = dt > 0 ? static_cast<double>((step - last_log_step) * tokens_per_step) / dt : 0;
      r.elapsed_s = Seconds(run_start, now);
      r.eta_s = r.elapsed_s / static_cast<double>(step - start_step) * static_cast<double>(total - step);
      const double steps_since = static_cast<double>(step - last_log_step);
      r.step_s = dt / steps_since;
      r.peak_rss_bytes = PeakRssBytes();
      r.ranks = ranks;
      r.allreduce_s = allreduce_s_since / steps_since;
      r.teacher_s = teacher_s_since / steps_since;
      r.compute_s = std::max(0.0, r.step_s - r.allreduce_s - r.teacher_s);
      if (has_split) {
        const double micro = static_cast<double>(std::max<int64_t>(1, split.micro_batches));
        r.distill = true;
        r.ce_loss = split.ce / micro;
        r.kd_loss = split.kd / micro;
        for (const auto& [name, v] : split.features) r.feature_losses[name] = v / micro;
        r.stream_bytes_per_token =
            split.stream_bytes / (micro * static_cast<double>(t.micro_batch()) * static_cast<double>(seq_len));
      } else {
        r.ce_loss = loss_value;
      }
      report.Step(r);
      teacher_s_since = 0;
      allreduce_s_since = 0;
      last_log = now;
      last_log_step = step;
    }
    if (t.eval_every() > 0 && step % t.eval_every() == 0 && step != total) RETURN_IF_ERROR(evaluate(step));
    if (spec.checkpoint().every() > 0 && step % spec.checkpoint().every() == 0 && step != total) {
      RETURN_IF_ERROR(save_checkpoint(step));
    }
  }
  const double run_seconds = Seconds(run_start, Clock::now());
  result.steps_done = step;
  result.tokens_per_s = run_seconds > 0 ? static_cast<double>((step - start_step) * tokens_per_step) / run_seconds : 0;
  result.finished = step >= total;
  if (!result.finished) {
    if (step > start_step) RETURN_IF_ERROR(save_checkpoint(step));
    report.Message(absl::StrCat("stopped at step ", step, " of ", total));
    return result;
  }

  RETURN_IF_ERROR(evaluate(step));
  result.output_path = final_output.string();
  if (!writer) return result;
  model->to(torch::kCPU);
  if (lora) {
    result.output_path = final_output.string();
    const std::string base = source.model.empty() ? source.init : source.model;
    RETURN_IF_ERROR(SaveAdapter(model, lora_config, result.output_path, base));
    result.output_bytes = static_cast<int64_t>(fs::file_size(fs::path(result.output_path) / "adapter_model.safetensors"));
  } else {
    result.output_path = final_output.string();
    RETURN_IF_ERROR(SaveHfModel(model, result.output_path));
    result.output_bytes = static_cast<int64_t>(fs::file_size(fs::path(result.output_path) / "model.safetensors"));
  }
  // The last step is checkpointed too, so a rerun of a finished job is a no-op.
  RETURN_IF_ERROR(save_checkpoint(step));
  report.Message(absl::StrCat("saved ", result.output_path));
  return result;
}

}  // namespace

absl::StatusOr<TrainResult> RunTraining(const JobSpec& spec, const TrainOptions& options, TrainObjective& objective) {
  try {
    return RunTrainingImpl(spec, options, objective);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("LibTorch error during training: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<TrainResult> RunFinetune(const JobSpec& spec, const TrainOptions& options) {
  CrossEntropyObjective objective;
  return RunTraining(spec, options, objective);
}

int64_t PeakRssBytes() {
  struct rusage usage {};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

}  // namespace distill::worker
