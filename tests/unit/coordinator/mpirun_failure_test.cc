// ParseMpirunLog on Open MPI 4.1.4's own messages, copied from real runs
// over ssh to hosts in network namespaces (tests/integration/netns_lib.sh)
// and under Slurm with a slurmd per such host, Note [Rank placement]'s rank
// <-> host mapping, and ExplainMpirunFailure, which puts both together.
#include "coordinator/mpirun_failure.h"

#include <gtest/gtest.h>

namespace distill::coordinator {
namespace {

// Every process of host 10.77.8.3 killed while a 2 + 2 rank job ran.
constexpr char kLostDaemon[] =
    R"(--------------------------------------------------------------------------
ORTE has lost communication with a remote daemon.

  HNP daemon   : [[5913,0],0] on node vm
  Remote daemon: [[5913,0],2] on node 10.77.8.3

This is usually due to either a failure of the TCP network
connection to the node, or possibly an internal failure of
the daemon itself. We cannot recover from this failure, and
therefore will terminate the job.
--------------------------------------------------------------------------
)";

// The next launch onto the dead host (its sshd gone too).
constexpr char kNoDaemon[] = R"(ssh: connect to host 10.77.8.3 port 22: Connection refused
--------------------------------------------------------------------------
ORTE was unable to reliably start one or more daemons.
This usually is caused by:
--------------------------------------------------------------------------
--------------------------------------------------------------------------
ORTE does not know how to route a message to the specified daemon
located on the indicated node:

  my node:   vm
  target node:  10.77.8.2
)";

// Rank 2 exited 17.
constexpr char kExitCode[] =
    R"(--------------------------------------------------------------------------
Primary job  terminated normally, but 1 process returned
a non-zero exit code. Per user-direction, the job has been aborted.
--------------------------------------------------------------------------
--------------------------------------------------------------------------
mpirun detected that one or more processes exited with non-zero status, thus causing
the job to be terminated. The first process to do so was:

  Process name: [[26724,1],2]
  Exit code:    17
--------------------------------------------------------------------------
)";

constexpr char kSignal[] =
    R"(--------------------------------------------------------------------------
mpirun noticed that process rank 1 with PID 0 on node vm exited on signal 9 (Killed).
--------------------------------------------------------------------------
)";

constexpr char kAbort[] =
    R"(--------------------------------------------------------------------------
MPI_ABORT was invoked on rank 3 in communicator MPI_COMM_WORLD
with errorcode 1.

NOTE: invoking MPI_ABORT causes Open MPI to kill all MPI processes.
)";

// Under Slurm (mpirun in the batch script, its daemon on the second node
// started by srun): every process of node d7db8h1 killed while a 2 + 2 rank
// job ran; the nodes are named by their Slurm names.
constexpr char kLostSlurmNode[] =
    R"(--------------------------------------------------------------------------
ORTE has lost communication with a remote daemon.

  HNP daemon   : [[11083,0],0] on node d7db8h0
  Remote daemon: [[11083,0],1] on node d7db8h1

This is usually due to either a failure of the TCP network
connection to the node, or possibly an internal failure of
the daemon itself. We cannot recover from this failure, and
therefore will terminate the job.
--------------------------------------------------------------------------
)";

TEST(MpirunFailureTest, ALostDaemonNamesItsHost) {
  MpirunFailure f = ParseMpirunLog(kLostDaemon);
  EXPECT_EQ(f.kind, MpirunFailure::kHostLost);
  EXPECT_EQ(f.host, "10.77.8.3");
  EXPECT_EQ(f.rank, -1);
  EXPECT_EQ(f.what, "lost contact with its daemon");
}

TEST(MpirunFailureTest, ADaemonSshCannotStartIsAHostLostNotTheRoutedNoise) {
  MpirunFailure f = ParseMpirunLog(kNoDaemon);
  EXPECT_EQ(f.kind, MpirunFailure::kHostLost);
  EXPECT_EQ(f.host, "10.77.8.3");
  EXPECT_EQ(
      f.what,
      "could not start its daemon: ssh: connect to host 10.77.8.3 port 22: Connection refused");
  MpirunFailure unresolved =
      ParseMpirunLog("ssh: Could not resolve hostname node7: Name or service not known\n");
  EXPECT_EQ(unresolved.kind, MpirunFailure::kHostLost);
  EXPECT_EQ(unresolved.host, "node7");
}

TEST(MpirunFailureTest, RankFailuresNameTheRank) {
  MpirunFailure exit = ParseMpirunLog(kExitCode);
  EXPECT_EQ(exit.kind, MpirunFailure::kRankFailed);
  EXPECT_EQ(exit.rank, 2);
  EXPECT_EQ(exit.host, "");
  EXPECT_EQ(exit.what, "exit code 17");
  EXPECT_EQ(exit.exit_code, 17);
  MpirunFailure signal = ParseMpirunLog(kSignal);
  EXPECT_EQ(signal.kind, MpirunFailure::kRankFailed);
  EXPECT_EQ(signal.rank, 1);
  EXPECT_EQ(signal.host, "vm");
  EXPECT_EQ(signal.what, "exited on signal 9 (Killed)");
  EXPECT_EQ(signal.exit_code, -1);
  MpirunFailure abort = ParseMpirunLog(kAbort);
  EXPECT_EQ(abort.kind, MpirunFailure::kRankFailed);
  EXPECT_EQ(abort.rank, 3);
  EXPECT_EQ(abort.what, "called MPI_Abort (error code 1)");
  EXPECT_EQ(abort.exit_code, 1);
}

TEST(MpirunFailureTest, ALostHostWinsOverTheRankFailuresItCauses) {
  MpirunFailure f = ParseMpirunLog(std::string(kSignal) + kLostDaemon);
  EXPECT_EQ(f.kind, MpirunFailure::kHostLost);
  EXPECT_EQ(f.host, "10.77.8.3");
}

TEST(MpirunFailureTest, AnUnknownMessageIsUnknown) {
  EXPECT_EQ(ParseMpirunLog("").kind, MpirunFailure::kUnknown);
  EXPECT_EQ(ParseMpirunLog("mpirun was unable to find the specified executable\n").kind,
            MpirunFailure::kUnknown);
}

TEST(MpirunFailureTest, RanksFillTheHostsInOrder) {
  const Allocation a = {{"h0", 2}, {"h1", 3}, {"h2", 1}};
  EXPECT_EQ(RanksOnHost(a, "h0"), (std::vector<int>{0, 1}));
  EXPECT_EQ(RanksOnHost(a, "h1"), (std::vector<int>{2, 3, 4}));
  EXPECT_EQ(RanksOnHost(a, "h2"), (std::vector<int>{5}));
  EXPECT_TRUE(RanksOnHost(a, "nowhere").empty());
  EXPECT_EQ(HostOfRank(a, 0), "h0");
  EXPECT_EQ(HostOfRank(a, 4), "h1");
  EXPECT_EQ(HostOfRank(a, 5), "h2");
  EXPECT_EQ(HostOfRank(a, 6), "");
}

TEST(MpirunFailureTest, ExplainNamesTheLostNodeAndItsRanks) {
  LaunchStatus s;
  s.detail = "Slurm job 1 FAILED (exit code 205:0)";
  ExplainMpirunFailure(kLostSlurmNode, {{"d7db8h0", 2}, {"d7db8h1", 2}}, &s);
  EXPECT_TRUE(s.host_lost);
  EXPECT_EQ(s.failed_host, "d7db8h1");
  EXPECT_EQ(s.failed_ranks, (std::vector<int>{2, 3}));
  EXPECT_EQ(s.failed_how, "lost contact with its daemon");
  EXPECT_EQ(s.detail, "Slurm job 1 FAILED (exit code 205:0)");  // kept
}

TEST(MpirunFailureTest, ExplainNamesAFailedRanksHostFromTheAllocation) {
  LaunchStatus s;
  ExplainMpirunFailure(kExitCode, {{"h0", 2}, {"h1", 2}}, &s);
  EXPECT_FALSE(s.host_lost);
  EXPECT_EQ(s.failed_host, "h1");  // rank 2: the second host's first slot
  EXPECT_EQ(s.failed_ranks, (std::vector<int>{2}));
  EXPECT_EQ(s.failed_how, "exit code 17");
}

TEST(MpirunFailureTest, ExplainWithoutAnAllocationStillNamesTheHost) {
  LaunchStatus s;
  ExplainMpirunFailure(kLostSlurmNode, {}, &s);
  EXPECT_TRUE(s.host_lost);
  EXPECT_EQ(s.failed_host, "d7db8h1");
  EXPECT_TRUE(s.failed_ranks.empty());
}

TEST(MpirunFailureTest, ExplainLeavesAnUnknownFailureAlone) {
  LaunchStatus s;
  ExplainMpirunFailure("srun: error: something else\n", {{"h0", 2}}, &s);
  EXPECT_FALSE(s.host_lost);
  EXPECT_EQ(s.failed_host, "");
  EXPECT_TRUE(s.failed_ranks.empty());
  EXPECT_EQ(s.failed_how, "");
}

}  // namespace
}  // namespace distill::coordinator
