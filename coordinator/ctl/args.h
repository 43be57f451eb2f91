// distillctl's command line: the global connection options and one command
// with its positional arguments and flags. The options are absl flags
// (ABSL_FLAG in args.cc, put on the command line by coordinator/flag_parse.h,
// dashed names); the grammar says which command takes which. Parsing is
// separate from running so the grammar is unit-tested; every error is
// InvalidArgument, which the caller reports as a usage error (exit 2).
// Not thread-safe: ParseArgs sets the absl flags (its result depends only on
// argv), so call it from main() or a single-threaded test.
#ifndef DISTILL_COORDINATOR_CTL_ARGS_H_
#define DISTILL_COORDINATOR_CTL_ARGS_H_

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace distill::coordinator::ctl {

inline constexpr char kDefaultCoordinator[] = "127.0.0.1:50051";

struct CtlArgs {
  // Global options; empty = not given on the command line.
  std::string coordinator;  // --coordinator ADDR
  std::string token;        // --token TOKEN
  std::string token_file;   // --token-file FILE
  std::string tls_ca;       // --tls-ca FILE (PEM): use TLS, trusting these roots
  bool help = false;        // -h, --help or `help`

  std::string command;  // submit, get, list, watch, cancel, delete, logs, report
  std::vector<std::string> positional;
  // The command's flags given on the command line, by dashed name, their
  // values as absl prints them ("true" for switches).
  std::map<std::string, std::string> flags;

  bool Has(const std::string& flag) const { return flags.count(flag) > 0; }
  std::string Get(const std::string& flag, const std::string& fallback = "") const;
  // InvalidArgument "--NAME: not an integer: 'x'" for a malformed value.
  absl::StatusOr<int> Int(const std::string& flag, int fallback) const;
};

// Parses argv without the program name. Options may appear before or after
// the command; `--flag=value` and `--flag value` are both accepted, a switch
// takes no value. Errors name the option: "CMD: unknown option '--x'" (also
// for an option the command does not take), "--x needs a value",
// "--x takes no value", "--x: ..." (a bad value).
absl::StatusOr<CtlArgs> ParseArgs(const std::vector<std::string>& argv);

// The usage line, the commands, and every option with its help and default
// (generated from the absl flags).
std::string UsageText();

// Where and how to connect, after applying flags over the environment.
struct ConnectionOptions {
  std::string address = kDefaultCoordinator;
  std::string token;       // bearer token; empty = none
  std::string tls_ca_pem;  // root certificates; empty = plaintext
  // Deadline of each unary call; streams (watch, logs -f) have none.
  std::chrono::milliseconds rpc_timeout{30000};
};

// Precedence: flag, then environment (DISTILL_COORDINATOR, DISTILL_TOKEN),
// then the default. `--token` and `--token-file` are exclusive. Reads the
// token and CA files; NotFound/InvalidArgument naming the file on failure.
// `getenv` is injected for tests.
absl::StatusOr<ConnectionOptions> ResolveConnection(
    const CtlArgs& args, const std::function<std::string(const char*)>& getenv);

}  // namespace distill::coordinator::ctl

#endif  // DISTILL_COORDINATOR_CTL_ARGS_H_
