// distillctl's commands: each turns parsed arguments into calls on a
// CoordinatorClient and output, and returns the process exit code. Errors are
// printed to `err` as "distillctl: CODE: message". Single-threaded.
#ifndef DISTILL_COORDINATOR_CTL_COMMANDS_H_
#define DISTILL_COORDINATOR_CTL_COMMANDS_H_

#include <map>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coordinator/ctl/args.h"
#include "coordinator/ctl/client.h"
#include "distill/v1/coordinator.pb.h"

namespace distill::coordinator::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitError =
    1;  // server error, bad spec, or a watched job that did not succeed
inline constexpr int kExitUsage = 2;

// Where output goes, and what it is connected to.
struct Terminal {
  std::ostream* out;
  std::ostream* err;
  bool tty = false;  // stdout is a terminal: draw the live progress bar
  int width = 80;    // its columns
};

// "distillctl: NOT_FOUND: job j-1 not found".
std::string ErrorLine(const absl::Status& status);

// The SubmitJobRequest for `submit SPEC`: the spec parsed, its relative paths
// resolved against the spec file's directory, validated; the flags applied.
// A fresh random request id unless --request-id is given, so a retried call
// never queues the job twice. InvalidArgument naming the file and field.
absl::StatusOr<distill::v1::SubmitJobRequest> BuildSubmitRequest(const CtlArgs& args);

// Runs `args.command`. Returns kExitOk, kExitError or kExitUsage.
int RunCommand(const CtlArgs& args, CoordinatorClient& client, const Terminal& term);

// Writes log chunks of several ranks as whole lines, each prefixed with
// "[rank N] " when `prefix` (so concurrent ranks do not interleave mid-line);
// without the prefix the bytes pass through unchanged.
class LogWriter {
 public:
  LogWriter(std::ostream& out, bool prefix) : out_(out), prefix_(prefix) {}
  void Write(const distill::v1::LogChunk& chunk);
  // Writes what is left of unterminated lines.
  void Flush();

 private:
  std::ostream& out_;
  const bool prefix_;
  std::map<int, std::string> partial_;  // per rank: bytes after the last newline
};

}  // namespace distill::coordinator::ctl

#endif  // DISTILL_COORDINATOR_CTL_COMMANDS_H_
