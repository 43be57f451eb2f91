// A Communicator of one rank (world size 1), for a process that trains
// alone: code written for S data-parallel ranks runs unchanged with S = 1.
// All-reduce (sum or avg), broadcast from root 0 and barrier are identities
// that complete at once (the caller's tensor already holds the result);
// reduce-scatter and all-gather copy the input into the output at once;
// point-to-point messages have no peer, so send, recv and probe are errors,
// worded like the MPI backend's ("send of teacher logits: ..."), as are a
// peer or root out of range. The same tensor checks as MPI (defined,
// contiguous; no avg of integer tensors) keep code that passes here valid on
// real ranks. Nothing waits, so nothing times out (Note [Comm timeout]).
// Thread-compatible, like every Communicator.
#ifndef DISTILL_WORKER_COMM_LOOPBACK_COMMUNICATOR_H_
#define DISTILL_WORKER_COMM_LOOPBACK_COMMUNICATOR_H_

#include <memory>

#include "worker/comm/communicator.h"

namespace distill::worker {

// rank() 0, size() 1, backend() "loopback".
std::unique_ptr<Communicator> MakeLoopbackCommunicator();

}  // namespace distill::worker

#endif  // DISTILL_WORKER_COMM_LOOPBACK_COMMUNICATOR_H_
