// Note [Preflight]: before it serves, the coordinator checks that it can run
// what every job needs, so that a missing binary is one clear error at start
// instead of every job failing (and being retried) with "mpirun exit code
// 134" while the cause sits in a log: the worker binary and mpirun (launcher
// mpirun), or sbatch (launcher slurm; mpirun runs on the Slurm hosts). Each
// is found as a launch would find it (a path, or a name on PATH) and run with
// --version, which must exit 0.
#ifndef DISTILL_COORDINATOR_PREFLIGHT_H_
#define DISTILL_COORDINATOR_PREFLIGHT_H_

#include <string>

#include "absl/status/status.h"

namespace distill::coordinator {

// `binary` (a path, or a name looked up on PATH) runs `binary --version` with
// exit 0. FailedPrecondition naming `what` (e.g. "the worker"), the binary,
// the reason and `hint` (e.g. "set --worker-bin") otherwise.
absl::Status CheckRunnable(const std::string& what, const std::string& binary,
                           const std::string& hint);

// The worker binary when --worker-bin is not given: distill-worker beside
// the coordinator's own binary (an installed pair), else in ../worker/
// beside it (the build tree: build/coordinator/distill-coordinator and
// build/worker/distill-worker), else "distill-worker" on PATH.
std::string DefaultWorkerBin();

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_PREFLIGHT_H_
