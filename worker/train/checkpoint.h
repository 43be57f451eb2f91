// Training checkpoints: OUTPUT/checkpoints/step_<8 digits>/ holding
// weights.safetensors (the trainable parameters, plus a distill job's feature
// projections), the optimizer state (optimizer.safetensors, or one shard file
// per rank under ZeRO: Note [Optimizer state files]) and state.json (step,
// data position, seed, method, job type, optimizer files).
//
// Note [Checkpoint atomicity]: a checkpoint is written into a staging dir and
// renamed into place, so a step_* directory is always complete; readers take
// the newest one. Ranks that write optimizer shards put them into
// checkpoints/.pending_step_<8 digits>/ first; after a barrier rank 0 moves the
// expected files into its staging dir before the rename, and a second
// barrier holds every rank until the pending dir is gone. Thread-compatible.
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
#include "common/output_owner.h"
#include "worker/comm/communicator.h"
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
  // The run that wrote it (Note [Output ownership] in common/output_owner.h);
  // absent in checkpoints written before the field.
  std::optional<common::RunIdentity> identity;
};

// Collective over `ranks` (the students): writes a checkpoint of `params`
// (by name, from rank 0) and `optimizer` (each rank its StateFile) for
// `state.step` under `checkpoint_root`; rank 0 then deletes all but the
// newest `keep`. Returns the checkpoint's directory.
absl::StatusOr<std::string> SaveCheckpoint(const std::string& checkpoint_root, const CheckpointState& state,
                                           const std::vector<NamedParam>& params, const Optimizer& optimizer,
                                           int keep, Communicator& ranks);

// The newest complete checkpoint directory under `checkpoint_root`, if any.
std::optional<std::string> LatestCheckpoint(const std::string& checkpoint_root);

// Restores parameters (by name; every one must be present with its shape) and
// this rank's optimizer state (from a checkpoint of any rank count); returns
// the saved state. Errors name the file.
absl::StatusOr<CheckpointState> LoadCheckpoint(const std::string& dir, const std::vector<NamedParam>& params,
                                               Optimizer& optimizer);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_TRAIN_CHECKPOINT_H_
