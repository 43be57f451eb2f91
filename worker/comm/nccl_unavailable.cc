// Built when NCCL is not found (worker/CMakeLists.txt): comm: nccl is refused
// with a clear error and auto falls back to MPI.
#include "worker/comm/nccl_communicator.h"

namespace distill::worker {

bool NcclAvailable() { return false; }
std::string NcclVersion() { return ""; }

absl::StatusOr<std::unique_ptr<Communicator>> MakeNcclCommunicator(Communicator&, int, double) {
  return absl::UnimplementedError("comm: nccl requested, but this build has no NCCL (nccl.h and libnccl were not found "
                                  "when it was configured); use comm: mpi");
}

}  // namespace distill::worker
