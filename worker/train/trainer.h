// The fine-tuning loop of one process: model (HF dir or random init), optional
// LoRA, AdamW with warmup + cosine, gradient accumulation and clipping, eval
// every N steps, checkpoints every N steps with resume, and the final model
// (HF dir) or adapter (PEFT dir) in the output directory.
//
// Note [Deterministic resume]: everything random in step s is a function of
// (seed, s): the data order comes from the sampler position and dropout from a
// generator reseeded at every step. So a run resumed from a checkpoint at step
// k repeats the uninterrupted run's steps k+1.. bit for bit on CPU.
// The loop is shared by job types through TrainObjective: finetune trains on
// cross-entropy, distill (worker/distill/distill_trainer.h) on the teacher.
// Runs on the calling thread; LibTorch errors are turned into Status here.
#ifndef DISTILL_WORKER_TRAIN_TRAINER_H_
#define DISTILL_WORKER_TRAIN_TRAINER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <map>

#include "absl/status/statusor.h"
#include "distill/v1/job.pb.h"
#include "worker/comm/communicator.h"
#include "worker/data/token_shard.h"
#include "worker/model/llama.h"
#include "worker/train/optimizer.h"
#include "worker/train/eval.h"
#include "worker/train/report.h"

namespace distill::worker {

struct TrainOptions {
  // Stop (with a checkpoint) after this many steps of this run; 0 = run to
  // the end. Simulates a preemption; used by resume tests.
  int64_t max_steps_this_run = 0;
  // Set asynchronously (e.g. by SIGTERM): the loop checkpoints and stops at
  // the next step boundary. May be null.
  const std::atomic<bool>* stop_requested = nullptr;
  // Extra sinks besides OUTPUT/metrics.jsonl (e.g. the console).
  std::vector<ReportSink*> sinks;

  // Data-parallel students (worker/runtime/runtime.h); null: one process.
  // `students` (MPI) carries the control values (stop flag, reported losses,
  // eval sums, weight checksums), `grads` the gradient all-reduce (NCCL or
  // MPI). Student 0 writes metrics.jsonl, checkpoints and the output; every
  // student restores the checkpoint. Note [Data-parallel step] in trainer.cc.
  Communicator* students = nullptr;
  Communicator* grads = nullptr;
  int64_t bucket_bytes = 25ll << 20;
  int sync_check_every = 50;  // steps between weight checksums; 0 = never
  int cuda_device = 0;        // the CUDA device of this rank (train.device cuda/auto)
};

struct TrainResult {
  int64_t steps_done = 0;       // optimizer steps completed in total (including before resume)
  bool finished = false;        // reached train.steps (else stopped early)
  int64_t resumed_from = 0;     // step of the checkpoint resumed from, 0 if none
  double final_train_loss = 0;  // loss of the last step
  bool has_eval = false;
  double eval_loss = 0, eval_ppl = 0;
  bool eval_has_teacher = false;  // distill: the fields below are set
  double eval_kl = 0, eval_top1_agreement = 0, teacher_ppl = 0;
  double tokens_per_s = 0;      // training tokens per second over this run
  int64_t trainable_params = 0;
  int64_t total_params = 0;
  std::string output_path;      // OUTPUT/model (full) or OUTPUT/adapter (lora)
  int64_t output_bytes = 0;     // size of the saved weights file
};

// Runs a validated, defaults-filled finetune spec (common::LoadJobSpec).
absl::StatusOr<TrainResult> RunFinetune(const distill::v1::JobSpec& spec, const TrainOptions& options);

// One micro-batch's loss. `total` is the scalar to backpropagate; the rest is
// for reporting.
struct LossParts {
  torch::Tensor total;
  bool has_split = false;  // false: the whole loss is cross-entropy (finetune)
  double ce = 0.0;         // unweighted mean cross-entropy
  double kd = 0.0;         // soft loss (with T^2 when t2_scale)
  std::map<std::string, double> features;  // per pair, unweighted
  double teacher_s = 0.0;     // wall seconds in the teacher forward (dedicated teacher: waiting for it)
  double stream_bytes = 0.0;  // bytes of teacher output for this micro-batch
};

// What differs between job types. The loop owns the student (built from the
// spec's model/init or student block, LoRA applied), data, AdamW, schedule,
// accumulation, clipping, checkpoints and output; the objective owns the loss,
// evaluation and any parameters it trains besides the student. Called on the
// training thread only.
class TrainObjective {
 public:
  virtual ~TrainObjective() = default;
  // "finetune" or "distill": recorded in checkpoints.
  virtual std::string job_type() const = 0;
  // Once, after the student is built and moved to `device`, before data,
  // optimizer and resume. Spec errors found here name the field.
  virtual absl::Status Prepare(LlamaForCausalLM& student, const torch::Device& device, bool bf16) = 0;
  // Trained with the student (optimizer and checkpoints), never exported.
  virtual std::vector<NamedParam> ExtraParams() { return {}; }
  // inputs and targets [B, L] int64 on the device.
  virtual absl::StatusOr<LossParts> Loss(LlamaForCausalLM& student, const torch::Tensor& inputs,
                                         const torch::Tensor& targets) = 0;
  // Evaluation over this rank's `shard` of `data` (EvaluateLm's window
  // contract); `step` is copied. The loop combines the shards.
  virtual absl::StatusOr<EvalRecord> Evaluate(LlamaForCausalLM& student, const TokenDataset& data, int64_t seq_len,
                                              int64_t batch, int64_t max_windows, int64_t step,
                                              EvalShard shard) = 0;
  // Micro-batches the loop hands to Enqueue before their Loss (a teacher on
  // other ranks computes them meanwhile); 0 = none.
  virtual int Lookahead() const { return 0; }
  // inputs [B, L] of a micro-batch whose Loss comes later, in order.
  virtual absl::Status Enqueue(const torch::Tensor& inputs) { return absl::OkStatus(); }
  // Appended to the "training ..." start line.
  virtual std::string Describe() const { return ""; }
};

// Runs a validated, defaults-filled spec of either type with `objective`.
absl::StatusOr<TrainResult> RunTraining(const distill::v1::JobSpec& spec, const TrainOptions& options,
                                        TrainObjective& objective);

// Peak resident set size of this process in bytes (0 if unknown).
int64_t PeakRssBytes();

}  // namespace distill::worker

#endif  // DISTILL_WORKER_TRAIN_TRAINER_H_
