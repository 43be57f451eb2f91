#include "worker/train/trainer.h"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/worker_metrics.h"
#include "worker/comm/grad_reducer.h"
#include "worker/model/hf_io.h"
#include "worker/train/checkpoint.h"
#include "worker/train/device_stats.h"
#include "worker/train/finetune.h"

namespace distill::worker {
namespace fs = std::filesystem;
using distill::v1::JobSpec;

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

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// splitmix64 of (seed, step): the per-step RNG seed (Note [Deterministic resume]).
uint64_t StepSeed(uint64_t seed, int64_t step) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(step + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

// Note [Data-parallel step]: with S student ranks each rank draws its own b
// windows of every global micro-batch of b*S (sampler.h), so S ranks of
// micro-batch b see exactly the windows one rank of micro-batch b*S sees. The
// step's last micro-step is armed: its backward hands finished gradient
// buckets to the all-reduce (average) while it goes on (grad_reducer.h);
// accumulation micro-steps communicate nothing. After it every rank holds the
// same averaged gradient, so clipping and AdamW keep the weights identical
// (checked by checksum every runtime.sync_check_every steps). The reported
// losses are averaged over the ranks (one small all-reduce per step); the
// stop flag is agreed on by another before each step, so every rank stops at
// the same step. A process alone has a loopback communicator of one rank
// (those all-reduces are identities) and no gradient reducer: its gradient is
// already the average, and the reducer's buckets would double its gradient
// memory and give parameters without a gradient a zero one.
//
// With runtime.zero the update is sharded (Note [ZeRO layout] in
// sharded_adamw.h): each rank updates its 1/S of the parameters' elements with
// its 1/S of the AdamW state and all-gathers the result. Stage 1 reduces as
// above; stage 2 reduce-scatters every micro-step's buckets, so a rank keeps
// only its chunk of the gradient. bf16 weights (train.precision bf16) take the
// same optimizer, with fp32 master weights in the shard, on one rank too.

// One optimizer step, as llm.c reads: next batch, forward and loss, backward
// (accumulated over micro-batches), reduce over the students, clip, update.
// Its randomness is a function of (seed, step) (Note [Deterministic resume]).
absl::Status Trainer::Step(StepTally* tally) {
  // Rank 0 draws what a single process draws; other ranks their own masks.
  torch::manual_seed(StepSeed(t_.seed(), step_) ^
                     (static_cast<uint64_t>(rank_) * 0xD1B54A32D192ED03ull));
  const double lr =
      LearningRate(step_, t_.steps(), t_.warmup(), t_.lr(), t_.min_lr(), ScheduleOf(t_.schedule()));
  optimizer_->ZeroGrad();
  ASSIGN_OR_RETURN(const std::vector<double> weights, MicroBatchWeights());
  for (int32_t micro = 0; micro < t_.grad_accum(); ++micro) {
    ASSIGN_OR_RETURN(Batch batch, NextBatch());
    ASSIGN_OR_RETURN(LossParts loss, objective_.Loss(model_, batch));
    const bool last = micro + 1 == t_.grad_accum();
    RETURN_IF_ERROR(Backward(weights.empty() ? loss.total / t_.grad_accum()
                                             : loss.total * weights[static_cast<size_t>(micro)],
                             last));
    tally->Add(loss);
  }
  RETURN_IF_ERROR(Reduce(tally));
  ASSIGN_OR_RETURN(const double grad_norm, optimizer_->ClipGradients(t_.clip()));
  RETURN_IF_ERROR(optimizer_->Update(lr));
  ++step_;
  tokens_ += tokens_per_step_;
  tally->SetUpdate(lr, grad_norm);
  return absl::OkStatus();
}

// One micro-step's backward. The last one of the step is armed: its backward
// hands finished buckets to the reducer. ZeRO-2 reduce-scatters every
// micro-step's gradient (a rank never holds the full gradient, so it cannot
// accumulate one); Reduce() finishes the last.
absl::Status Trainer::Backward(const torch::Tensor& loss, bool last_micro) {
  const bool reduce = reducer_ != nullptr && (last_micro || zero_ == 2);
  if (reduce) reducer_->Arm();
  loss.backward();
  if (!reduce || last_micro) return absl::OkStatus();
  const auto start = Clock::now();
  RETURN_IF_ERROR(reducer_->Finish());
  allreduce_s_since_ += Seconds(start, Clock::now());
  return absl::OkStatus();
}

// Note [Token-weighted accumulation]: a micro-batch's loss is the mean over
// its counted targets. Plain text windows count every target, so each
// micro-batch weighs 1 / grad_accum. Packed instruction data counts a varying
// number n_i: the step's gradient is that of the sum over all its counted
// targets, on every rank, divided by their total C (as transformers' Trainer
// does with num_items_in_batch), so micro-batch i weighs n_i * S / C (the
// gradient all-reduce then averages over the S ranks). C costs one small
// all-reduce per step; the step's micro-batches are drawn first to count it.
// Empty: the plain 1 / grad_accum.
absl::StatusOr<std::vector<double>> Trainer::MicroBatchWeights() {
  if (!train_data_->packed()) return std::vector<double>();
  RETURN_IF_ERROR(DrawAhead(static_cast<size_t>(t_.grad_accum())));
  std::vector<double> counts;
  for (size_t i = 0; i < ahead_.size() && i < static_cast<size_t>(t_.grad_accum()); ++i) {
    counts.push_back(static_cast<double>(ahead_[i].counted.numel()));
  }
  torch::Tensor total = torch::tensor({std::accumulate(counts.begin(), counts.end(), 0.0)}, torch::kDouble);
  RETURN_IF_ERROR(students_->AllReduce(total, ReduceOp::kSum, "counted targets of the step"));
  const double c = total.item<double>();
  for (double& n : counts) n = c > 0 ? n * ranks_ / c : 0.0;
  counts.resize(static_cast<size_t>(t_.grad_accum()), 0.0);
  return counts;
}

// Draws micro-batches until `n` are ahead (or this run's are all drawn).
absl::Status Trainer::DrawAhead(size_t n) {
  while (micro_left_ > 0 && ahead_.size() < n) {
    Batch batch = MakeBatch(*train_data_, sampler_->NextRows(t_.micro_batch()), device_);
    --micro_left_;
    if (objective_.Lookahead() > 0) RETURN_IF_ERROR(objective_.Enqueue(batch));
    ahead_.push_back(std::move(batch));
  }
  return absl::OkStatus();
}

// The next micro-batch, drawing ahead what the objective's lookahead asks.
absl::StatusOr<Trainer::Batch> Trainer::NextBatch() {
  RETURN_IF_ERROR(DrawAhead(static_cast<size_t>(1 + objective_.Lookahead())));
  Batch batch = std::move(ahead_.front());
  ahead_.pop_front();
  return batch;
}

// Gradients and reported values: the students' average (Note [Data-parallel step]).
absl::Status Trainer::Reduce(StepTally* tally) {
  tally->Finish(t_.grad_accum());
  const auto start = Clock::now();
  if (reducer_) RETURN_IF_ERROR(reducer_->Finish());
  RETURN_IF_ERROR(tally->AverageOver(*students_));
  allreduce_s_since_ += Seconds(start, Clock::now());
  return absl::OkStatus();
}

// Every rank stops at the same step boundary (a signal may reach the ranks at
// different times).
absl::StatusOr<bool> Trainer::AgreeToStop() {
  const bool stop = options_.stop_requested && options_.stop_requested->load();
  torch::Tensor flag = torch::tensor(std::vector<double>{stop ? 1.0 : 0.0}, torch::kDouble);
  RETURN_IF_ERROR(students_->AllReduce(flag, ReduceOp::kSum, "stop flag"));
  return flag.item<double>() > 0.5;
}

absl::StatusOr<TrainResult> Trainer::Run() {
  if (start_step_ >= t_.steps() && fs::exists(final_output_)) {
    report_.OnMessage(
        absl::StrCat("already complete at step ", start_step_, "; output in ", final_output_));
    result_.steps_done = start_step_;
    result_.finished = true;
    result_.output_path = final_output_;
    return result_;
  }
  run_start_ = last_log_ = Clock::now();
  last_log_step_ = step_ = start_step_;
  report_.OnStepDone(step_);
  while (step_ < end_step_) {
    ASSIGN_OR_RETURN(bool stop, AgreeToStop());
    if (stop) break;
    StepTally tally(device_);
    const auto start = Clock::now();
    const double allreduce_before = allreduce_s_since_;
    RETURN_IF_ERROR(Step(&tally));
    CountStep(Seconds(start, Clock::now()), tally.rank_wait_s(), allreduce_s_since_ - allreduce_before);
    RETURN_IF_ERROR(AfterStep(tally));
  }
  return Finish();
}

// Around each step: divergence and sync checks, the step record, eval and
// checkpoint triggers.
absl::Status Trainer::AfterStep(const StepTally& tally) {
  report_.OnStepDone(step_);
  wait_s_since_ += tally.wait_s();
  result_.final_train_loss = tally.loss();
  if (!std::isfinite(tally.loss())) {
    return absl::InternalError(absl::StrCat("training diverged: loss is ", tally.loss(),
                                            " at step ", step_,
                                            " (lower train.lr or enable train.clip)"));
  }
  if (ranks_ > 1 && options_.sync_check_every > 0 && step_ % options_.sync_check_every == 0) {
    RETURN_IF_ERROR(GradReducer::CheckInSync(param_tensors_, *students_, step_));
  }
  if (step_ % t_.log_every() == 0 || step_ == t_.steps()) ReportStep(tally);
  const bool last = step_ == t_.steps();
  if (t_.eval_every() > 0 && step_ % t_.eval_every() == 0 && !last) RETURN_IF_ERROR(Evaluate());
  const int64_t every = spec_.checkpoint().every();
  if (every > 0 && step_ % every == 0 && !last) RETURN_IF_ERROR(SaveCheckpoint());
  return absl::OkStatus();
}

// One step into this rank's totals: its wall time split into the teacher
// wait, the all-reduce and the rest (compute).
void Trainer::CountStep(double step_s, double wait_s, double allreduce_s) {
  totals_.set_steps(totals_.steps() + 1);
  totals_.set_tokens(totals_.tokens() + tokens_per_step_ / ranks_);
  totals_.set_teacher_wait_seconds(totals_.teacher_wait_seconds() + wait_s);
  totals_.set_allreduce_seconds(totals_.allreduce_seconds() + allreduce_s);
  totals_.set_compute_seconds(totals_.compute_seconds() + std::max(0.0, step_s - wait_s - allreduce_s));
  common::AddStepDuration(step_s, &totals_);
}

void Trainer::ReportStep(const StepTally& tally) {
  const auto now = Clock::now();
  const double dt = Seconds(last_log_, now);
  const double steps_since = static_cast<double>(step_ - last_log_step_);
  StepRecord r;
  r.step = step_;
  r.total_steps = t_.steps();
  r.loss = tally.loss();
  r.lr = tally.lr();
  r.grad_norm = tally.grad_norm();
  r.tokens = tokens_;
  r.tokens_per_s =
      dt > 0 ? static_cast<double>((step_ - last_log_step_) * tokens_per_step_) / dt : 0;
  r.elapsed_s = Seconds(run_start_, now);
  r.eta_s = r.elapsed_s / static_cast<double>(step_ - start_step_) *
            static_cast<double>(t_.steps() - step_);
  r.step_s = dt / steps_since;
  r.peak_rss_bytes = PeakRssBytes();
  r.trainable_params = result_.trainable_params;
  r.ranks = ranks_;
  r.allreduce_s = allreduce_s_since_ / steps_since;
  r.wait_s = wait_s_since_ / steps_since;
  r.compute_s = std::max(0.0, r.step_s - r.allreduce_s - r.wait_s);
  objective_.AddStepFields(tally.values(int64_t{t_.micro_batch()} * seq_len_), &r);
  const double rank_tokens = static_cast<double>((step_ - last_log_step_) * tokens_per_step_ / ranks_);
  totals_.set_stream_bytes(totals_.stream_bytes() + r.fields.Scalar("stream_bytes_per_token") * rank_tokens);
  r.totals = totals_;
  if (peak_flops_ > 0 && dt > 0) r.mfu = rank_tokens / dt * flops_per_token_ / peak_flops_;
  if (device_.is_cuda()) r.gpu_memory_peak_bytes = CudaPeakAllocatedBytes(device_.index());
  report_.OnStep(r);
  wait_s_since_ = 0;
  allreduce_s_since_ = 0;
  last_log_ = now;
  last_log_step_ = step_;
}

absl::Status Trainer::Evaluate() {
  if (!eval_data_) return absl::OkStatus();
  const int64_t max_rows = t_.eval_batches() > 0 ? int64_t{t_.eval_batches()} * t_.micro_batch() : 0;
  ASSIGN_OR_RETURN(EvalRecord r, objective_.Evaluate(model_, *eval_data_, t_.micro_batch(), max_rows, step_,
                                                     EvalShard{rank_, ranks_}));
  RETURN_IF_ERROR(CombineEval(*students_, &r));
  objective_.FinishEval(&r);
  report_.OnEval(r);
  result_.has_eval = true;
  result_.eval_loss = r.loss;
  result_.eval_ppl = r.ppl;
  result_.eval_fields = r.fields;
  return absl::OkStatus();
}

// Collective over the students: each writes its optimizer shard, if any.
absl::Status Trainer::SaveCheckpoint() {
  // Windows drawn ahead for the lookahead are not consumed yet.
  const int64_t consumed =
      sampler_->position() - static_cast<int64_t>(ahead_.size()) * t_.micro_batch() * ranks_;
  CheckpointState st{step_,
                     consumed,
                     tokens_,
                     t_.seed(),
                     lora_ ? "lora" : "full",
                     objective_.job_type(),
                     common::IdentityOf(spec_)};
  ASSIGN_OR_RETURN(std::string dir,
                   distill::worker::SaveCheckpoint(ckpt_root_, st, params_, *optimizer_,
                                                   spec_.checkpoint().keep(), *students_));
  if (writer_) report_.OnMessage(absl::StrCat("checkpoint ", dir));
  return absl::OkStatus();
}

// After the loop: a checkpoint if stopped early, else the final eval, the
// output and a checkpoint of the last step (a rerun of a finished job is a
// no-op).
absl::StatusOr<TrainResult> Trainer::Finish() {
  const double run_seconds = Seconds(run_start_, Clock::now());
  result_.steps_done = step_;
  result_.tokens_per_s =
      run_seconds > 0 ? static_cast<double>((step_ - start_step_) * tokens_per_step_) / run_seconds
                      : 0;
  result_.finished = step_ >= t_.steps();
  if (!result_.finished) {
    if (step_ > start_step_) RETURN_IF_ERROR(SaveCheckpoint());
    report_.OnMessage(absl::StrCat("stopped at step ", step_, " of ", t_.steps()));
    return result_;
  }
  RETURN_IF_ERROR(Evaluate());
  result_.output_path = final_output_;
  RETURN_IF_ERROR(SaveCheckpoint());
  if (!writer_) return result_;
  RETURN_IF_ERROR(SaveOutput());
  report_.OnMessage(absl::StrCat("saved ", result_.output_path));
  return result_;
}

// The trained student on the CPU: an HF model (full) or a PEFT adapter (lora).
absl::Status Trainer::SaveOutput() {
  model_->to(torch::kCPU);
  const fs::path out(final_output_);
  if (lora_) {
    RETURN_IF_ERROR(SaveAdapter(model_, lora_config_, final_output_, base_model_));
    result_.output_bytes = static_cast<int64_t>(fs::file_size(out / "adapter_model.safetensors"));
  } else {
    // bf16 weights give a bf16 model (config torch_dtype bfloat16).
    RETURN_IF_ERROR(SaveHfModel(model_, final_output_, bf16_ ? torch::kBFloat16 : torch::kFloat));
    result_.output_bytes = static_cast<int64_t>(fs::file_size(out / "model.safetensors"));
  }
  return absl::OkStatus();
}

absl::StatusOr<TrainResult> RunTraining(const JobSpec& spec, const TrainOptions& options,
                                        TrainObjective& objective) {
  try {
    ASSIGN_OR_RETURN(std::unique_ptr<Trainer> trainer, Trainer::Create(spec, options, objective));
    return trainer->Run();
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("LibTorch error during training: ", e.what_without_backtrace()));
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
