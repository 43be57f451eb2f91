// Launcher: starts a job attempt's ranks, watches them and stops them.
// Backends: local/hostfile mpirun (mpirun_launcher.h), Slurm batch jobs
// (slurm_launcher.h).
//
// Every attempt owns a work directory (spec, logs, exit code). The launch is
// identified by a launch id (mpirun: the launch's process id; Slurm: the job
// id), which the coordinator stores (as the job's launch_pid), so a restarted
// coordinator can adopt a launch it did not start (Poll works on any id).
// Implementations are thread-compatible; the coordinator calls them under
// its lock.
#ifndef DISTILL_COORDINATOR_LAUNCHER_H_
#define DISTILL_COORDINATOR_LAUNCHER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/scheduler.h"

namespace distill::coordinator {

struct LaunchSpec {
  std::string job_id;
  int attempt = 1;
  int ranks = 1;
  Allocation allocation;  // where the ranks run; sums to `ranks`.
  std::string work_dir;   // the attempt's directory; created by the caller.
  std::string spec_path;  // the worker's job spec.
  // The worker's command: "train", or "capture" for a CAPTURE job (fills
  // the spec's teacher.cache).
  std::string command = "train";
  // Passed to every rank (and kept off command lines: values may be secret).
  std::map<std::string, std::string> env;
};

struct LaunchStatus {
  enum State { kRunning, kExited, kVanished };
  State state = kRunning;
  int exit_code = 0;   // kExited: the launch's exit status (128+N for signal N).
  std::string detail;  // human-readable ("exit code 17", "killed by signal 9").
  // A failed launch, as far as the launcher can tell: the host that failed
  // or ran the failed rank ("" when unknown), the ranks that failed there
  // (the first failed rank, or every rank of a lost host; empty when
  // unknown), whether the host itself failed (its daemon lost or not
  // startable: unreachable), not only a process on it, and how, in words
  // ("exit code 17", "lost contact with its daemon"; "" when unknown).
  std::string failed_host;
  std::vector<int> failed_ranks;
  bool host_lost = false;
  std::string failed_how;
  // The failed rank's own exit code (its MPI_Abort error code), when the
  // launcher can tell; -1 when not. Note [Exit codes] (common/exit_codes.h).
  int failed_exit_code = -1;
  // kRunning, but still waiting in the launcher's own queue (a pending Slurm
  // job): not started yet, so the start timeout does not run.
  bool queued = false;
};

class Launcher {
 public:
  virtual ~Launcher() = default;

  // Starts the attempt in the background and returns its launch id.
  // Unavailable when it cannot be started.
  virtual absl::StatusOr<int64_t> Launch(const LaunchSpec& spec) = 0;

  // Whether the launch `id` (with work dir `work_dir`) still runs (or is
  // still starting), exited (with its code), or vanished without leaving one.
  virtual LaunchStatus Poll(int64_t id, const std::string& work_dir) = 0;

  // Graceful: the ranks are asked to stop (they checkpoint and exit). Force:
  // every process of the launch is killed.
  virtual void Terminate(int64_t id, const std::string& work_dir, bool force) = 0;

  // The launch id the launch wrote into `work_dir` as soon as it was known
  // (for a coordinator that stopped before recording it); 0 when none.
  virtual int64_t RecordedLaunchId(const std::string& work_dir) const = 0;

  // Note [Lost hosts]: the coordinator marks a host an attempt lost down
  // (down = true), and up again after its host_down_for. A launcher that
  // places ranks itself (Slurm) keeps later launches off it; by default
  // nothing, since the scheduler's allocation already leaves it out.
  virtual void SetHostDown(const std::string& /*host*/, bool /*down*/) {}

  // Where rank `rank`'s output (stdout and stderr merged) of the attempt in
  // `work_dir` is written.
  virtual std::string RankLogPath(const std::string& work_dir, int rank) const = 0;
};

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_LAUNCHER_H_
