// The Communicator: collectives and point-to-point messages among the ranks
// of a job (or a sub-group of them), on LibTorch tensors. Two real backends:
//   - MPI (mpi_communicator.h): CPU tensors; CUDA tensors go through host
//     staging (copied to pinned host memory and back), so ranks that share one
//     GPU still talk. Every test here uses it.
//   - NCCL (nccl_communicator.h): CUDA tensors, one GPU per rank, collectives
//     on a dedicated stream ordered after the caller's current stream.
//
// Operations: all-reduce (sum or avg), reduce-scatter and all-gather (each
// rank holds one block of the whole: the sharded state of ZeRO), broadcast,
// tagged send / recv, probe, barrier and split. Every operation is
// asynchronous and returns a Work handle; the blocking forms wait on it.
// Tensors must be contiguous and stay alive (and unchanged, for sends and
// the inputs of reduce-scatter and all-gather) until the handle completes.
// Collectives must be issued in the same order on every rank of the
// communicator (MPI and NCCL both match them by order); sends and receives
// match by (peer, tag) on MPI and by order on NCCL.
//
// Note [Comm timeout]: no wait is endless. Each Wait polls until the
// communicator's timeout (runtime.timeout_s, default 60 s) and then returns
// DeadlineExceeded naming this rank, the peer(s) and what the operation was
// for, e.g. "rank 2 (student 0): timed out after 60 s waiting for recv of
// teacher logits from rank 0 (tag 7)". The caller ends the job with Abort()
// (MPI_Abort takes down every rank), so a dead or hung rank never leaves the
// others hanging; a rank that dies outright is reported by mpirun itself.
//
// Thread-compatible: one thread issues and waits on a communicator's
// operations.
#ifndef DISTILL_WORKER_COMM_COMMUNICATOR_H_
#define DISTILL_WORKER_COMM_COMMUNICATOR_H_

#include <torch/torch.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace distill::worker {

enum class ReduceOp { kSum, kAvg };

// An operation in flight.
class Work {
 public:
  virtual ~Work() = default;
  // Non-blocking: drives progress and returns true once complete (then Wait
  // returns at once). Errors surface in Wait.
  virtual bool Test() = 0;
  // Blocks until complete or the communicator's timeout (Note [Comm timeout]).
  // After it returns OK, received / reduced data is in the caller's tensor
  // (host staging copied back, the caller's CUDA stream ordered after it).
  virtual absl::Status Wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "mpi" or "nccl"

  // `what` names the operation's purpose in timeout and error messages
  // ("gradient bucket 3", "teacher logits").
  virtual absl::StatusOr<std::unique_ptr<Work>> AllReduceAsync(torch::Tensor& t, ReduceOp op,
                                                               const std::string& what) = 0;
  // Reduce-scatter: `input` (contiguous, numel = size() * output.numel()) is
  // reduced over the ranks with `op` and rank r receives elements
  // [r * n, (r + 1) * n) of the result in `output` (n = output.numel()).
  // Same dtype and device; `input` and `output` must not overlap.
  virtual absl::StatusOr<std::unique_ptr<Work>> ReduceScatterAsync(const torch::Tensor& input,
                                                                   torch::Tensor& output,
                                                                   ReduceOp op,
                                                                   const std::string& what) = 0;
  // All-gather: rank r's `input` (n elements) lands at [r * n, (r + 1) * n) of
  // every rank's `output` (contiguous, numel = size() * n). Same dtype and
  // device; no overlap.
  virtual absl::StatusOr<std::unique_ptr<Work>> AllGatherAsync(const torch::Tensor& input,
                                                               torch::Tensor& output,
                                                               const std::string& what) = 0;
  virtual absl::StatusOr<std::unique_ptr<Work>> BroadcastAsync(torch::Tensor& t, int root,
                                                               const std::string& what) = 0;
  virtual absl::StatusOr<std::unique_ptr<Work>> SendAsync(const torch::Tensor& t, int dst, int tag,
                                                          const std::string& what) = 0;
  // `t` is preallocated with the message's shape and dtype.
  virtual absl::StatusOr<std::unique_ptr<Work>> RecvAsync(torch::Tensor& t, int src, int tag,
                                                          const std::string& what) = 0;
  // Whether a message from `src` with `tag` is waiting to be received
  // (non-blocking). Unimplemented on NCCL.
  virtual absl::StatusOr<bool> Probe(int src, int tag) = 0;
  virtual absl::Status Barrier(const std::string& what) = 0;

  // Collective over this communicator: ranks passing the same color >= 0 form
  // a new communicator ordered by (key, rank); a negative color gets nullptr.
  virtual absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key) = 0;

  // Ends every rank of the job at once (MPI_Abort) after printing `message`
  // to stderr. Does not return.
  [[noreturn]] virtual void Abort(const std::string& message, int code) = 0;

  // Blocking forms.
  absl::Status AllReduce(torch::Tensor& t, ReduceOp op, const std::string& what);
  absl::Status ReduceScatter(const torch::Tensor& input, torch::Tensor& output, ReduceOp op,
                             const std::string& what);
  absl::Status AllGather(const torch::Tensor& input, torch::Tensor& output,
                         const std::string& what);
  absl::Status Broadcast(torch::Tensor& t, int root, const std::string& what);
  absl::Status Send(const torch::Tensor& t, int dst, int tag, const std::string& what);
  absl::Status Recv(torch::Tensor& t, int src, int tag, const std::string& what);
};

// For the backends: the pair of tensors of a reduce-scatter (`whole` is the
// input, `block` the output) or of an all-gather (`block` is the input,
// `whole` the output), each already checked on its own: the same dtype and
// device, `whole` of `ranks` times block's elements, and no shared memory.
// InvalidArgument starting with `context` ("reducescatter of gradient bucket
// 3") and naming what is wrong.
absl::Status CheckWholeAndBlock(const torch::Tensor& whole, const torch::Tensor& block, int ranks,
                                bool whole_is_input, const std::string& context);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_COMM_COMMUNICATOR_H_
