// The fine-tuning loop of one process: model (HF dir or random init), optional
// LoRA, AdamW with warmup + cosine, gradient accumulation and clipping, eval
// every N steps, checkpoints every N steps with resume, and the final model
// (HF dir) or adapter (PEFT dir) in the output directory.
//
// Note [Deterministic resume]: everything random in step s is a function of
// (seed, s): the data order comes from the sampler position and dropout from a
// generator reseeded at every step. So a run resumed from a checkpoint at step
// k repeats the uninterrupted run's steps k+1.. bit for bit on CPU.
// Runs on the calling thread; LibTorch errors are turned into Status here.
#ifndef DISTILL_WORKER_TRAIN_TRAINER_H_
#define DISTILL_WORKER_TRAIN_TRAINER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "distill/v1/job.pb.h"
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
};

struct TrainResult {
  int64_t steps_done = 0;       // optimizer steps completed in total (including before resume)
  bool finished = false;        // reached train.steps (else stopped early)
  int64_t resumed_from = 0;     // step of the checkpoint resumed from, 0 if none
  double final_train_loss = 0;  // loss of the last step
  bool has_eval = false;
  double eval_loss = 0, eval_ppl = 0;
  double tokens_per_s = 0;      // training tokens per second over this run
  int64_t trainable_params = 0;
  int64_t total_params = 0;
  std::string output_path;      // OUTPUT/model (full) or OUTPUT/adapter (lora)
  int64_t output_bytes = 0;     // size of the saved weights file
};

// Runs a validated, defaults-filled finetune spec (common::LoadJobSpec).
absl::StatusOr<TrainResult> RunFinetune(const distill::v1::JobSpec& spec, const TrainOptions& options);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_TRAIN_TRAINER_H_
