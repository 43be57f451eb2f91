// The MPI backend of Communicator (Open MPI): CPU tensors directly, CUDA
// tensors through host staging. Nonblocking MPI calls (MPI_Iallreduce,
// MPI_Ireduce_scatter_block, MPI_Iallgather, MPI_Ibcast, MPI_Isend,
// MPI_Irecv) behind Work handles whose Wait polls MPI_Test with a short sleep
// between polls, so an oversubscribed machine is not burnt by spinning, until
// the timeout (Note [Comm timeout] in communicator.h).
// float32/float64/bfloat16/int64/int32/uint8 tensors; sum and avg (avg
// divides after the sum).
#ifndef DISTILL_WORKER_COMM_MPI_COMMUNICATOR_H_
#define DISTILL_WORKER_COMM_MPI_COMMUNICATOR_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/comm/communicator.h"

namespace distill::worker {

// Initialises MPI once per process (MPI_Init_thread, MPI_THREAD_FUNNELED) and
// finalises it at exit. Idempotent. Only call it when launched by mpirun or
// when a multi-rank job is requested (a singleton MPI_Init is slow).
absl::Status InitMpi(int* argc, char*** argv);
// Whether this process was started by mpirun (OMPI_COMM_WORLD_SIZE or
// PMI/PMIX variables present).
bool LaunchedByMpirun();

// The world communicator. `timeout_s` bounds every wait. InitMpi first.
absl::StatusOr<std::unique_ptr<Communicator>> MpiWorld(double timeout_s);

// Describes ranks in messages ("rank 3 (teacher stage 1)"); set once the
// layout is known. Shared by all MPI communicators of the process; the names
// are by world rank: full descriptions as RankLayout::RankNames() gives them
// (a bare role such as "student 0" is shown as "rank 0 (student 0)"). Ranks
// without a name appear as "rank 3".
void SetMpiRankNames(std::vector<std::string> names_by_world_rank);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_COMM_MPI_COMMUNICATOR_H_
