// The worker's exit codes, shared with the coordinator that reads them.
//
// Note [Exit codes]: a worker (every rank of it: an MPI rank's error ends
// the launch through MPI_Abort with the same code) exits
//   0   done;
//   1   a failure a retry may not repeat (a lost peer, a timeout, a crash);
//   2   a usage error on its command line;
//   65  (EX_DATAERR) a failure a retry would repeat: the input is wrong
//       (spec, data, model, tokenizer: InvalidArgument, NotFound,
//       FailedPrecondition, OutOfRange, AlreadyExists), it may not write
//       (PermissionDenied), or the disk refuses (full, read-only, quota);
//   130 stopped by a signal (SIGTERM, SIGINT, SIGUSR1) after its checkpoint.
// The coordinator does not retry a 65 (FailureReason DETERMINISTIC); nor an
// attempt whose failing rank's error line names a full or read-only disk,
// which the worker may see as an Internal error from a library.
#ifndef DISTILL_COMMON_EXIT_CODES_H_
#define DISTILL_COMMON_EXIT_CODES_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace distill::common {

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitDeterministic = 65;
constexpr int kExitStopped = 130;

// The exit code of a command that ended with `status` (0 when OK).
int ExitCodeFor(const absl::Status& status);

// Whether an error text says the disk refused the write, in the words of
// strerror: "No space left on device", "Read-only file system", "Disk quota
// exceeded"; or "Permission denied". A retry would meet the same refusal.
bool NamesDiskRefusal(absl::string_view text);

}  // namespace distill::common

#endif  // DISTILL_COMMON_EXIT_CODES_H_
