// Training checkpoints: OUTPUT/checkpoints/step_<8 digits>/ holding
// weights.safetensors (the trainable parameters, plus a distill job's feature
// projections), optimizer.safetensors (AdamW state) and state.json (step, data
// position, seed, method, job type).
//
// Note [Checkpoint atomicity]: a checkpoint is written into a staging dir and
// renamed into place, so a step_* directory is always complete; readers take
// the newest one. Thread-compatible.
#ifndef DISTILL_WORKER_TRAIN_CHECKPOINT_H_
#define DISTILL_WORKER_TRAIN_CHECKPOINT_H_

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/train/optimizer.h"

namespace distill::worker {

struct CheckpointState {
  int64_t step = 0;              // optimizer steps completed
  int64_t sampler_position = 0;  // WindowSampler::position()
  int64_t tokens = 0;            // training tokens consumed
  uint64_t seed = 0;
  std::string method;            // "full" or "lora"
  // "finetune" or "distill": a distill checkpoint also holds the feature
  // projections, and resuming one job type from the other's checkpoint is a
  // different run. Checkpoints written before the field read as "finetune".
  std::string job_type = "finetune";
};

// Writes a checkpoint of `params` (by name) and `optimizer` for `state.step`
// under `checkpoint_root`, then deletes all but the newest `keep`.
// Returns the checkpoint's directory.
absl::StatusOr<std::string> SaveCheckpoint(const std::string& checkpoint_root, const CheckpointState& state,
                                           const std::vector<NamedParam>& params, const AdamW& optimizer,
                                           int keep);

// The newest complete checkpoint directory under `checkpoint_root`, if any.
std::optional<std::string> LatestCheckpoint(const std::string& checkpoint_root);

// Restores parameters (by name; every one must be present with its shape) and
// optimizer state; returns the saved state. Errors name the file.
absl::StatusOr<CheckpointState> LoadCheckpoint(const std::string& dir, const std::vector<NamedParam>& params,
                                               AdamW& optimizer);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_TRAIN_CHECKPOINT_H_
