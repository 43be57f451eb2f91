// MpirunLauncher: runs an attempt as
//   sh -c 'echo $$ > pid; mpirun ... WORKER train --spec SPEC; echo $? > exit_code'
// in its own session and process group, so it outlives the coordinator and
// a restarted one can adopt it (poll the pid, then read WORK_DIR/exit_code).
// Rank output goes to WORK_DIR/logs/1/rank.N/stdout (Open MPI 4.1
// --output-filename with stderr merged), mpirun's own messages to
// WORK_DIR/mpirun.log. Environment reaches the ranks by `-x NAME` (Open MPI
// ranks inherit nothing else). Thread-compatible.
#ifndef DISTILL_COORDINATOR_MPIRUN_LAUNCHER_H_
#define DISTILL_COORDINATOR_MPIRUN_LAUNCHER_H_

#include <string>
#include <vector>

#include "coordinator/launcher.h"

namespace distill::coordinator {

struct MpirunOptions {
  std::string mpirun = "mpirun";  // binary, looked up on PATH.
  // The worker command; the launcher appends `train --spec SPEC`.
  std::string worker_bin = "distill-worker";
  // Extra arguments placed before the worker (e.g. "--bind-to none").
  std::vector<std::string> extra_args;
};

class MpirunLauncher : public Launcher {
 public:
  explicit MpirunLauncher(MpirunOptions options) : options_(std::move(options)) {}

  absl::StatusOr<int64_t> Launch(const LaunchSpec& spec) override;
  LaunchStatus Poll(int64_t pid, const std::string& work_dir) override;
  void Terminate(int64_t pid, const std::string& work_dir, bool force) override;
  std::string RankLogPath(const std::string& work_dir, int rank) const override;
  // The pid the launch shell wrote first thing (WORK_DIR/pid).
  int64_t RecordedLaunchId(const std::string& work_dir) const override;

  // The shell command the launch runs (for logs and tests).
  std::string Command(const LaunchSpec& spec) const;

 private:
  MpirunOptions options_;
};

// Single-quotes `s` for /bin/sh.
std::string ShellQuote(const std::string& s);

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_MPIRUN_LAUNCHER_H_
