// AdamW with its state sharded over the data-parallel student ranks (ZeRO
// stages 1 and 2), and with fp32 master weights for bf16 weights.
//
// Note [ZeRO layout]: the trainable parameters are cut into the gradient
// reducer's buckets (grad_reducer.h: reverse registration order, about
// runtime.bucket_mb each). Bucket k of N_k elements is padded to P_k, a
// multiple of S, and rank r owns its chunk [r P_k / S, (r + 1) P_k / S)
// (elements past N_k are padding). A rank's shard is its chunks of every
// bucket, one after another: the exp_avg and exp_avg_sq of those elements
// (float32) and, when the weights are bf16, their float32 master copy. A chunk
// crosses parameters, so the shard is a list of segments (parameter, offset,
// length); AdamW runs on each with AdamWUpdate, the same per-element math as
// unsharded AdamW. Then the bucket's chunks are all-gathered into every rank's
// parameters (bf16 weights take the master rounded to bf16).
//
// Stage 1 reads the gradient of its segments from .grad (the reducer
// all-reduced it, as without ZeRO) and clips like ClipGradNorm over the full
// gradient: in fp32 it gives plain data parallelism's weights bit for bit.
// Stage 2 reads the reducer's reduce-scattered gradient chunks (the full
// gradient never exists on a rank); the clipping norm is the all-reduced sum
// of the chunks' squares.
//
// One rank alone (S = 1) with bf16 weights is the same optimizer with one
// chunk per bucket: master weights without sharding. Not thread-safe: the
// training thread owns it.
#ifndef DISTILL_WORKER_TRAIN_SHARDED_ADAMW_H_
#define DISTILL_WORKER_TRAIN_SHARDED_ADAMW_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/comm/communicator.h"
#include "worker/comm/grad_reducer.h"
#include "worker/train/optimizer.h"

namespace distill::worker {

// One piece of a rank's shard: elements [offset, offset + length) of
// parameter `param`'s flattened tensor, at `shard_offset` in the shard and
// `chunk_offset` in its bucket's chunk.
struct ShardSegment {
  int64_t param = 0;
  int64_t offset = 0;
  int64_t length = 0;
  int64_t bucket = 0;
  int64_t chunk_offset = 0;
  int64_t shard_offset = 0;
};

// Note [ZeRO layout] for `buckets` (parameter indices, GradReducer::Plan)
// of parameters with `numels`, on rank `rank` of `ranks`.
struct ShardLayout {
  std::vector<int64_t> chunk;        // by bucket: P_k / S
  std::vector<int64_t> bucket_numel;  // by bucket: N_k
  std::vector<std::vector<int64_t>> buckets;
  std::vector<ShardSegment> segments;  // in shard order
  int64_t shard_numel = 0;             // sum of the chunks

  static ShardLayout Make(const std::vector<std::vector<int64_t>>& buckets,
                          const std::vector<int64_t>& numels, int rank, int ranks);
};

class ShardedAdamW : public Optimizer {
 public:
  // `params` as for AdamW, identical on every rank of `comm` (which must
  // outlive the optimizer); `buckets` the reducer's layout (GradReducer::Plan
  // of the same parameters and bucket size). `reducer` (stage 2) holds the
  // gradient chunks; null for stage 1, whose gradients are in .grad. bf16
  // parameters get float32 master weights in the shard.
  static absl::StatusOr<std::unique_ptr<ShardedAdamW>> Create(std::vector<NamedParam> params,
                                                              const std::vector<std::vector<int64_t>>& buckets,
                                                              Communicator& comm, GradReducer* reducer,
                                                              const AdamWOptions& options);

  void ZeroGrad() override;
  absl::StatusOr<double> ClipGradients(double max_norm) override;
  absl::Status Update(double lr) override;
  int64_t step_count() const override { return step_; }
  int64_t StateBytes() const override;
  std::string StateFile(int rank) const override;
  std::vector<std::pair<std::string, torch::Tensor>> StateTensors() const override;
  absl::Status LoadState(const OptimizerStateReader& reader) override;

  const ShardLayout& layout() const { return layout_; }
  bool has_master() const { return master_.defined(); }

 private:
  ShardedAdamW(std::vector<NamedParam> params, Communicator& comm, GradReducer* reducer,
               const AdamWOptions& options);
  // The flattened parameter (detached, writable view) and its gradient.
  torch::Tensor Flat(int64_t param) const;
  // Segment s's gradient: of .grad (stage 1) or the reducer's chunk (stage 2);
  // undefined when a stage-1 parameter has none.
  torch::Tensor SegmentGrad(const ShardSegment& s) const;
  // All-gathers every bucket's updated chunk into the parameters.
  absl::Status Gather();
  absl::Status GatherBucket(int64_t k);

  std::vector<NamedParam> params_;
  Communicator& comm_;
  GradReducer* reducer_;
  AdamWOptions options_;
  ShardLayout layout_;
  torch::Tensor exp_avg_, exp_avg_sq_;  // [shard_numel] float32
  torch::Tensor master_;                // [shard_numel] float32, bf16 weights only
  int64_t step_ = 0;
};

}  // namespace distill::worker

#endif  // DISTILL_WORKER_TRAIN_SHARDED_ADAMW_H_
