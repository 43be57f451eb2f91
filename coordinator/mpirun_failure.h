// What a failed mpirun says about its failure: which rank failed and how, or
// which host was lost. Reads Open MPI 4.1's messages in mpirun.log (texts in
// tests/unit/coordinator/mpirun_failure_test.cc, copied from real runs) and
// the attempt's hostfile, to name the host of a rank and the ranks of a
// host; both launchers use it (mpirun's mpirun.log, the Slurm job's
// slurm.out). Pure functions; thread-safe.
//
// Note [Rank placement]: with a hostfile the launcher passes `--map-by slot`,
// so mpirun fills the hostfile's hosts in order, each up to its slots: world
// ranks 0 .. s0-1 run on the first host, s0 .. s0+s1-1 on the second, and so
// on. The scheduler's allocation is written in that order, so a distill job
// whose students fill the first host's slots has its teacher stages on the
// next host(s). RanksOnHost / HostOfRank rely on this.
#ifndef DISTILL_COORDINATOR_MPIRUN_FAILURE_H_
#define DISTILL_COORDINATOR_MPIRUN_FAILURE_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "coordinator/launcher.h"
#include "coordinator/scheduler.h"

namespace distill::coordinator {

struct MpirunFailure {
  enum Kind {
    kUnknown,     // mpirun failed without a message this parser knows
    kRankFailed,  // a rank exited non-zero, called MPI_Abort or was killed
    kHostLost,    // a host's daemon was lost or could not be started on it
  };
  Kind kind = kUnknown;
  int rank = -1;     // kRankFailed: the world rank mpirun names
  std::string host;  // the host mpirun names (kHostLost always; empty if none)
  // How, in words: "exit code 17", "exited on signal 9 (Killed)", "called
  // MPI_Abort (error code 1)", "lost contact with its daemon", "ssh: connect
  // to host H port 22: Connection refused".
  std::string what;
  // kRankFailed: the rank's exit code or MPI_Abort error code (-1 for a
  // signal or when not named).
  int exit_code = -1;
};

// The first failure mpirun's output names; a lost host takes precedence over
// the rank failures it causes.
MpirunFailure ParseMpirunLog(absl::string_view log);

// Fills `status`'s failure fields (failed_host, failed_ranks, host_lost,
// failed_how) from what mpirun's output `log` names, with `allocation` (the
// attempt's hostfile, Note [Rank placement]) mapping a host to its ranks and a
// rank to its host; leaves them as they are when the log names nothing.
void ExplainMpirunFailure(absl::string_view log, const Allocation& allocation,
                          LaunchStatus* status);

// Note [Rank placement]: the world ranks that run on `host`, in order (empty
// when the allocation does not list it).
std::vector<int> RanksOnHost(const Allocation& allocation, absl::string_view host);
// The host that runs world rank `rank` ("" when beyond the allocation).
std::string HostOfRank(const Allocation& allocation, int rank);

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_MPIRUN_FAILURE_H_
