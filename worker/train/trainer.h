// The training loop of one process: the student (HF dir or random init),
// optional LoRA, AdamW with warmup and a schedule, gradient accumulation and
// clipping, data-parallel students, eval every N steps, checkpoints every N
// steps with resume, and the final model (HF dir) or adapter (PEFT dir) in
// the output directory. Job types differ by their TrainObjective
// (objective.h): finetune trains on cross-entropy (RunFinetune), distill
// (worker/distill/distill_trainer.h) on the teacher.
//
// Note [Deterministic resume]: everything random in step s is a function of
// (seed, s): the data order comes from the sampler position and dropout from a
// generator reseeded at every step. So a run resumed from a checkpoint at step
// k repeats the uninterrupted run's steps k+1.. bit for bit on CPU.
// Runs on the calling thread; LibTorch errors are turned into Status here.
#ifndef DISTILL_WORKER_TRAIN_TRAINER_H_
#define DISTILL_WORKER_TRAIN_TRAINER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "distill/v1/job.pb.h"
#include "worker/comm/communicator.h"
#include "worker/data/open_data.h"
#include "worker/data/sampler.h"
#include "worker/data/sequence_data.h"
#include "worker/model/llama.h"
#include "worker/model/lora.h"
#include "worker/train/eval.h"
#include "worker/train/objective.h"
#include "worker/train/optimizer.h"
#include "worker/train/report.h"
#include "worker/train/step_tally.h"

namespace distill::worker {

class GradReducer;

struct TrainOptions {
  // Stop (with a checkpoint) after this many steps of this run; 0 = run to
  // the end. Simulates a preemption; used by resume tests.
  int64_t max_steps_this_run = 0;
  // Set asynchronously (e.g. by SIGTERM): the loop checkpoints and stops at
  // the next step boundary. May be null.
  const std::atomic<bool>* stop_requested = nullptr;
  // Extra sinks besides OUTPUT/metrics.jsonl (e.g. the console).
  std::vector<ReportSink*> sinks;

  // Data-parallel students (worker/runtime/runtime.h); null: this process
  // trains alone (a loopback communicator of one rank stands in).
  // `students` (MPI) carries the control values (stop flag, reported losses,
  // eval sums, weight checksums), `grads` the gradient all-reduce (NCCL or
  // MPI; null: `students`). Student 0 writes metrics.jsonl, checkpoints and
  // the output; every student restores the checkpoint. Note [Data-parallel
  // step] in trainer.cc.
  Communicator* students = nullptr;
  Communicator* grads = nullptr;
  int64_t bucket_bytes = 25ll << 20;
  int sync_check_every = 50;  // steps between weight checksums; 0 = never
  int cuda_device = 0;        // the CUDA device of this rank (train.device cuda/auto)
  // The coordinator's job id ("" for a run without one): student 0 claims the
  // output directory for it (Note [Output ownership], common/output_owner.h).
  std::string job_id;
};

struct TrainResult {
  int64_t steps_done = 0;       // optimizer steps completed in total (including before resume)
  bool finished = false;        // reached train.steps (else stopped early)
  int64_t resumed_from = 0;     // step of the checkpoint resumed from, 0 if none
  double final_train_loss = 0;  // loss of the last step
  bool has_eval = false;
  double eval_loss = 0, eval_ppl = 0;
  ObjectiveFields eval_fields;  // the objective's fields of the last eval (distill: "kl", "teacher_ppl"...)
  double tokens_per_s = 0;      // training tokens per second over this run
  int64_t trainable_params = 0;
  int64_t total_params = 0;
  std::string output_path;      // OUTPUT/model (full) or OUTPUT/adapter (lora)
  int64_t output_bytes = 0;     // size of the saved weights file
};

// The defaults-filled spec's data block as OpenSequenceData's options
// (`threads` encoder threads): what the trainer and the teacher cache's
// capture read the rows with.
DataOptions DataOptionsOf(const distill::v1::DataSpec& d, int threads);

// Runs a validated, defaults-filled finetune spec (common::LoadJobSpec).
absl::StatusOr<TrainResult> RunFinetune(const distill::v1::JobSpec& spec, const TrainOptions& options);

// Runs a validated, defaults-filled spec of either type with `objective`.
absl::StatusOr<TrainResult> RunTraining(const distill::v1::JobSpec& spec, const TrainOptions& options,
                                        TrainObjective& objective);

// Peak resident set size of this process in bytes (0 if unknown).
int64_t PeakRssBytes();

// One run of the loop. Create() builds the student, opens the data, makes
// the optimizer and resumes from the newest checkpoint; Run() steps to the
// end (or a stop) with reporting, evaluation, checkpoints and the stop
// agreement around each Step(), then saves the output. `spec`, `options` and
// `objective` must outlive the trainer. LibTorch may throw (RunTraining
// catches).
class Trainer {
 public:
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(const distill::v1::JobSpec& spec,
                                                         const TrainOptions& options, TrainObjective& objective);
  ~Trainer();
  absl::StatusOr<TrainResult> Run();

 private:
  using Clock = std::chrono::steady_clock;
  using Batch = TokenBatch;

  Trainer(const distill::v1::JobSpec& spec, const TrainOptions& options, TrainObjective& objective);
  // Create's parts, in this order (the seeds they draw depend on it).
  absl::Status SetUpDevice();
  absl::Status BuildStudent();
  absl::Status OpenData();
  absl::Status BuildOptimizer();
  absl::Status Resume();
  absl::Status ClaimOutput();
  absl::Status OpenReporting();

  // The loop and what goes around each step.
  absl::StatusOr<bool> AgreeToStop();
  absl::Status Step(StepTally* tally);
  absl::StatusOr<Batch> NextBatch();
  absl::Status DrawAhead(size_t n);
  absl::StatusOr<std::vector<double>> MicroBatchWeights();
  absl::Status Backward(const torch::Tensor& loss, bool last_micro);
  absl::Status Reduce(StepTally* tally);
  absl::Status AfterStep(const StepTally& tally);
  void CountStep(double step_s, double wait_s, double allreduce_s);
  void ReportStep(const StepTally& tally);
  absl::Status Evaluate();
  absl::Status SaveCheckpoint();
  absl::StatusOr<TrainResult> Finish();
  absl::Status SaveOutput();

  const distill::v1::JobSpec& spec_;
  const distill::v1::TrainSpec& t_;
  const TrainOptions& options_;
  TrainObjective& objective_;

  // Ranks: options_.students, or `loopback_` for a process alone.
  std::unique_ptr<Communicator> loopback_;
  Communicator* students_ = nullptr;
  int ranks_ = 1, rank_ = 0;
  bool writer_ = true;  // rank 0: metrics, checkpoints, output
  torch::Device device_{torch::kCPU};
  bool bf16_ = false;

  LlamaForCausalLM model_{nullptr};
  bool lora_ = false;
  LoraConfig lora_config_;
  std::string base_model_;  // the adapter's base (PEFT's base_model_name_or_path)
  int64_t seq_len_ = 0;
  std::unique_ptr<SequenceData> train_data_, eval_data_;
  std::optional<WindowSampler> sampler_;
  std::deque<Batch> ahead_;    // drawn for the objective's lookahead, not yet trained on
  int64_t micro_left_ = 0;     // micro-batches of this run not yet drawn

  std::vector<NamedParam> params_;
  std::vector<torch::Tensor> param_tensors_;
  std::unique_ptr<Optimizer> optimizer_;  // AdamW, or ShardedAdamW (ZeRO, bf16 weights)
  std::unique_ptr<GradReducer> reducer_;  // null for one rank (nothing to average)
  Communicator* grads_ = nullptr;         // options_.grads, else students_
  std::unique_ptr<Communicator> optimizer_loopback_;  // bf16 without ZeRO: unsharded master weights
  int zero_ = 0;                          // runtime.zero in effect (0 for one rank)

  std::string out_dir_, ckpt_root_, final_output_;
  int64_t start_step_ = 0, step_ = 0, end_step_ = 0;
  int64_t tokens_ = 0, tokens_per_step_ = 0;
  TrainResult result_;
  std::unique_ptr<JsonLinesSink> jsonl_;
  Fanout report_;  // options_.sinks, and on rank 0 jsonl_

  // Timing since the last step record.
  Clock::time_point run_start_, last_log_;
  int64_t last_log_step_ = 0;
  double allreduce_s_since_ = 0, wait_s_since_ = 0;
  // This rank's totals (StepRecord::totals) and what its MFU needs.
  distill::v1::RankTotals totals_;
  double flops_per_token_ = 0, peak_flops_ = 0;  // peak 0: unknown
};

}  // namespace distill::worker

#endif  // DISTILL_WORKER_TRAIN_TRAINER_H_
