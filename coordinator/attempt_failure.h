// What a failed attempt says about itself beyond mpirun's words: the failing
// rank's own error line, and whether a retry would fail the same way.
//
// Note [Failure classes]: a failed attempt is retried (up to max_retries,
// from its last checkpoint) unless the failure is deterministic, which a
// retry would only repeat (FailureReason DETERMINISTIC, the job FAILED at
// once):
//   - the failing rank exited with 65 (Note [Exit codes]): bad input, an
//     output owned by another job, a checkpoint of another run;
//   - its error line says the disk refused (full, read-only, quota,
//     permission), which a worker may see as an Internal error of a library;
//   - it failed the same way (the same rank failure, in mpirun's words) at
//     the same step as the attempt before it: a crash on the data at that
//     step, say, which resuming from the checkpoint would replay.
// A lost host, a vanished launch, a timeout or a cancel is never
// deterministic: the next attempt may run elsewhere or in time.
//
// Note [Unnamed rank failure]: when the launcher cannot name the failed rank
// (mpirun's message unknown, a Slurm srun launch), the error line is the
// first one found in the ranks' logs in rank order, so the job still says
// what went wrong rather than only "exit code 1".
//
// Pure functions but for reading the logs; thread-safe.
#ifndef DISTILL_COORDINATOR_ATTEMPT_FAILURE_H_
#define DISTILL_COORDINATOR_ATTEMPT_FAILURE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "coordinator/launcher.h"

namespace distill::coordinator {

// The error line of a rank's log: the last line that says "error" (the
// worker's one-line "distill-worker train: error: ..."), else the last
// non-empty line; from the log's last 64 KiB, cut to 500 bytes. "" when the
// log is missing or empty.
std::string LastErrorLine(const std::string& log_path);

// The error line of a failed attempt of `ranks` ranks: the named failed
// rank's (status.failed_ranks), else Note [Unnamed rank failure]. `*rank`
// gets the rank it came from (-1 when none). `log_of` maps a rank to its log.
std::string AttemptErrorLine(const LaunchStatus& status, int ranks,
                             const std::function<std::string(int)>& log_of, int* rank);

// How a rank failure happened, to compare two attempts (Note [Failure
// classes]): the step it happened at (-1 when unknown) and mpirun's words.
struct FailureMark {
  int64_t step = -1;
  std::string how;
};

// Note [Failure classes]: why a failed attempt (a rank failure, not a lost
// host, a timeout or a cancel) is deterministic, in words ("" when it may
// be retried). `previous` is the attempt before's mark, if it failed so.
std::string DeterministicCause(const LaunchStatus& status, absl::string_view error_line,
                               const FailureMark& mark, const std::optional<FailureMark>& previous);

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_ATTEMPT_FAILURE_H_
