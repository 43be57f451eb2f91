// SlurmLauncher: runs each attempt as one Slurm batch job (all its ranks in
// one allocation), submitted with `sbatch --parsable --ntasks=RANKS` of
// deploy/slurm/distill.sbatch (built into the binary; --slurm-script to use
// another), which execs mpirun (or srun) inside the allocation. The launch id
// is the Slurm job id, also written to WORK_DIR/slurm_job_id (Poll and
// Terminate act only on the id it names: Note [Slurm job id file]), so a
// restarted coordinator adopts the job by asking Slurm (`scontrol show job`,
// then `sacct` once slurmctld has forgotten it). Cancel: `scancel --signal=USR1
// --full` (a checkpoint, see the script's "Stopping"), kill: `scancel`.
// Rank output goes to WORK_DIR/logs/1/rank.N/stdout, Slurm's (and mpirun's
// messages) to WORK_DIR/slurm.out, the allocation to WORK_DIR/hostfile, so a
// failed job names its failed rank or lost node (mpirun_failure.h; for
// NODE_FAIL, the node Slurm has down); a node marked down (Note [Lost hosts])
// is --exclude'd from later submissions, which are --no-requeue (the
// coordinator retries). The Slurm commands run synchronously (tens of ms;
// Poll asks Slurm at most once per `poll_interval` per job).
// Thread-compatible.
#ifndef DISTILL_COORDINATOR_SLURM_LAUNCHER_H_
#define DISTILL_COORDINATOR_SLURM_LAUNCHER_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "coordinator/launcher.h"

namespace distill::coordinator {

struct SlurmOptions {
  // The worker binary, as the nodes see it (the script's DISTILL_WORKER).
  std::string worker_bin = "distill-worker";
  // How the script starts the ranks: "mpirun" (Open MPI inside the
  // allocation) or "srun" (srun --mpi=pmix; Open MPI built with PMIx).
  std::string launch = "mpirun";
  std::string partition;   // sbatch --partition; empty = the cluster's default.
  std::string account;     // sbatch --account; empty = the user's default.
  std::string time_limit;  // sbatch --time (e.g. "12:00:00"); empty = the partition's.
  // More sbatch arguments, e.g. {"--gpus-per-task=1", "--cpus-per-task=8"}.
  std::vector<std::string> sbatch_args;
  // The batch script; empty = the built-in deploy/slurm/distill.sbatch,
  // written into each attempt's work dir.
  std::string script;
  // Where sbatch, scontrol, sacct and scancel are; empty = PATH.
  std::string bin_dir;
  // The shortest time between two questions to Slurm about one job.
  absl::Duration poll_interval = absl::Seconds(1);
};

class SlurmLauncher : public Launcher {
 public:
  explicit SlurmLauncher(SlurmOptions options) : options_(std::move(options)) {}

  // Submits the attempt; returns the Slurm job id. Unavailable (with sbatch's
  // message) when sbatch fails.
  absl::StatusOr<int64_t> Launch(const LaunchSpec& spec) override;
  LaunchStatus Poll(int64_t job_id, const std::string& work_dir) override;
  void Terminate(int64_t job_id, const std::string& work_dir, bool force) override;
  void SetHostDown(const std::string& host, bool down) override;
  std::string RankLogPath(const std::string& work_dir, int rank) const override;
  int64_t RecordedLaunchId(const std::string& work_dir) const override;

  // sbatch's arguments (after the binary) for `spec` with the script at
  // `script` (for logs and tests); --exclude names the nodes marked down.
  std::vector<std::string> SbatchArgs(const LaunchSpec& spec, const std::string& script) const;

 private:
  std::string Bin(const std::string& name) const;
  // Asks Slurm about `job_id`: kRunning also while it is pending or when
  // Slurm cannot be reached (the next poll asks again). A job that ended
  // NODE_FAIL has failed_host set to the node that went down (DownNode).
  LaunchStatus Query(int64_t job_id);
  // The first of `nodes` (Slurm's hostlist, "n[0-1]") that Slurm has down,
  // failed or not responding; "" when none or Slurm cannot say.
  std::string DownNode(const std::string& nodes);

  struct Cached {
    LaunchStatus status;
    std::string slurm_state;
    absl::Time at;
  };
  SlurmOptions options_;
  std::map<int64_t, Cached> cache_;   // the last answer per job id.
  std::set<std::string> down_nodes_;  // Note [Lost hosts]: --exclude'd.
};

// The launch status of a Slurm job in `state` (JobState: PENDING, RUNNING,
// COMPLETED, FAILED, CANCELLED, TIMEOUT, ...) with `exit_code` as Slurm writes
// it ("EXIT:SIGNAL"). Ended states other than COMPLETED give a non-zero code
// (128+SIGNAL when a signal ended it) and a detail naming the state, so the
// coordinator's retry rules apply.
LaunchStatus SlurmJobStatus(int64_t job_id, const std::string& state, const std::string& exit_code);

// The value of `key` in `scontrol show job -o` output ("Key=value ..."); empty
// when absent.
std::string ScontrolField(const std::string& line, const std::string& key);

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_SLURM_LAUNCHER_H_
