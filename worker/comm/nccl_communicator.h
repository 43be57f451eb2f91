// The NCCL backend of Communicator: CUDA tensors, one GPU per rank. The
// unique id is made by rank 0 and broadcast over an MPI communicator of the
// same ranks; collectives run on a dedicated CUDA stream that first waits on
// an event recorded on the caller's current stream, and Wait() makes the
// caller's current stream wait on the operation's completion event (and polls
// cudaEventQuery with the communicator's timeout; on timeout the NCCL
// communicator is aborted, Note [Comm timeout]). Reduce-scatter and
// all-gather are ncclReduceScatter / ncclAllGather (avg: ncclAvg, as
// all-reduce). Send/Recv use ncclSend/ncclRecv (matched by order; the tag
// only appears in messages); Probe is Unimplemented.
//
// Built whenever nccl.h and libnccl are found (CMake option
// DISTILL_WITH_NCCL): here against CUDA 13 under /usr/local/cuda with CPU
// LibTorch (the caller's stream is then the legacy default stream, and
// creating a communicator without a GPU is FailedPrecondition), on the GPU
// machine against CUDA LibTorch (the current c10 stream).
#ifndef DISTILL_WORKER_COMM_NCCL_COMMUNICATOR_H_
#define DISTILL_WORKER_COMM_NCCL_COMMUNICATOR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/comm/communicator.h"

namespace distill::worker {

// Whether this binary was built with the NCCL backend.
bool NcclAvailable();
// NCCL's runtime version as "2.28.3" (empty without NCCL).
std::string NcclVersion();

// A NCCL communicator over the ranks of `bootstrap` (an MPI communicator:
// the unique id travels over it, and Abort goes through it, so it must
// outlive the NCCL communicator), each on CUDA device `device`. Unimplemented
// when built without NCCL; FailedPrecondition naming the device when there
// is no such CUDA device.
absl::StatusOr<std::unique_ptr<Communicator>> MakeNcclCommunicator(Communicator& bootstrap, int device,
                                                                   double timeout_s);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_COMM_NCCL_COMMUNICATOR_H_
