// Data-parallel gradient averaging among the student ranks (DDP).
//
// The trainable parameters (LoRA adapters only, for LoRA; plus any objective
// parameters such as feature projections) are laid out in buckets of about
// `bucket_bytes` (default 25 MiB), in reverse registration order, since
// backward produces the last layers' gradients first. A hook on every
// parameter sees its gradient as backward produces it; during a synchronised
// backward (the last micro-step of an optimizer step, armed by Arm()) the hook
// copies (accumulated .grad + this gradient) into the parameter's slot of
// its bucket's flat buffer and, once a bucket is complete, launches its
// asynchronous all-reduce (avg), so communication overlaps the rest of
// backward. Buckets launch strictly in index order, the same on every rank
// (collectives match by order). Accumulation micro-steps are not armed: no
// communication. Finish() launches whatever did not fill (parameters that got
// no gradient contribute their .grad, or zeros), waits for every bucket, and
// writes the averaged gradients into .grad.
//
// With reduce_scatter (ZeRO stage 2, Note [ZeRO layout] in
// worker/train/sharded_adamw.h) every backward is armed and each bucket, padded
// to a multiple of S elements, is reduce-scattered instead: rank r gets its
// chunk of the averaged bucket, which Finish() adds into a float32 chunk
// buffer (ZeroChunks() starts a step). The full gradient is never kept:
// a parameter's .grad is dropped once its bucket slot holds it, a bucket's flat
// buffer exists only from its first gradient until its reduce-scatter is done
// (at most two buckets in flight while backward runs), and .grad is
// left undefined.
//
// CheckInSync compares a float64 checksum of the parameters across ranks
// (every rank ends an optimizer step with identical weights) and fails
// loudly, on every rank, naming the step and the ranks that differ.
// Not thread-safe: the training thread owns it.
#ifndef DISTILL_WORKER_COMM_GRAD_REDUCER_H_
#define DISTILL_WORKER_COMM_GRAD_REDUCER_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/comm/communicator.h"

namespace distill::worker {

struct GradReducerOptions {
  int64_t bucket_bytes = 25ll << 20;
  bool reduce_scatter = false;  // ZeRO stage 2
};

struct GradReducerStats {
  int64_t buckets = 0;           // number of buckets
  int64_t launched_in_backward = 0;  // buckets of the last Finish launched by hooks (overlapped)
  int64_t max_live_buckets = 0;      // reduce_scatter: most bucket buffers alive at once in the last step
  double finish_wait_s = 0.0;    // seconds Finish() spent waiting (communication not hidden)
  int64_t bytes = 0;             // bytes reduced per synchronised step
};

class GradReducer {
 public:
  // `params` in registration order, identical (names, shapes, dtypes) on
  // every rank of `comm`; all must require grad and share a device and dtype
  // per bucket (a bucket is cut where dtype or device changes). `comm` must
  // outlive the reducer. Registers the hooks.
  static absl::StatusOr<std::unique_ptr<GradReducer>> Create(std::vector<torch::Tensor> params,
                                                             Communicator& comm,
                                                             const GradReducerOptions& options);
  ~GradReducer();

  // The bucket layout Create() makes for `params` (parameter indices, reverse
  // registration order; a bucket is cut at bucket_bytes or where dtype or
  // device changes).
  static std::vector<std::vector<int64_t>> Plan(const std::vector<torch::Tensor>& params,
                                                int64_t bucket_bytes);

  // The next backward is the step's last micro-step: hooks launch buckets.
  void Arm();
  // After that backward: completes every bucket and writes the averaged
  // gradients into .grad (without Arm, every bucket is launched here from
  // .grad). Errors (timeouts) name the bucket; after an error the reducer
  // refuses further use (FailedPrecondition): end the job with Abort().
  absl::Status Finish();

  // reduce_scatter: bucket k's averaged gradient chunk summed since
  // ZeroChunks() (float32, P_k / S elements), and the reset.
  const torch::Tensor& chunk(int64_t k) const;
  void ZeroChunks();

  const GradReducerStats& stats() const { return stats_; }
  // Bucket layout, for tests: the parameter indices of each bucket.
  std::vector<std::vector<int64_t>> BucketLayout() const;

  // Collective over `comm`: every rank's checksum of `params` equals rank
  // 0's, else Internal "step S: student weights differ across ranks (rank 1
  // checksum ... vs rank 0 ...)" on every rank. The comparison is exact and
  // independent of reduction order (a weighted sum of the elements' bits
  // modulo 2^64: any single changed element shows); the float64 sum is shown
  // for people. CUDA parameters are copied to the host for it.
  static absl::Status CheckInSync(const std::vector<torch::Tensor>& params, Communicator& comm,
                                  int64_t step);

 private:
  struct Impl;
  explicit GradReducer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  GradReducerStats stats_;
};

}  // namespace distill::worker

#endif  // DISTILL_WORKER_COMM_GRAD_REDUCER_H_
