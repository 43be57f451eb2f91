// RunCommand: a short command (sbatch, scontrol, `distill-worker --version`)
// run to its end, its output kept. Thread-compatible.
#ifndef DISTILL_COORDINATOR_RUN_COMMAND_H_
#define DISTILL_COORDINATOR_RUN_COMMAND_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace distill::coordinator {

struct CommandResult {
  int exit_code = 0;   // 128+N when killed by signal N
  std::string output;  // stdout and stderr
};

// Runs `argv` (argv[0] looked up on PATH) with the coordinator's environment
// plus `env`, stdin from /dev/null, and waits. Unavailable when it cannot be
// started (not found, not executable), with the reason.
// A command still running after `timeout` is killed (SIGKILL):
// DeadlineExceeded naming it.
absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         const std::map<std::string, std::string>& env = {},
                                         absl::Duration timeout = absl::InfiniteDuration());

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_RUN_COMMAND_H_
