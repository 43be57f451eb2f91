// Command lines onto absl flags (ABSL_FLAG): the flags' types, defaults,
// value parsing and help come from absl; this adds what absl 20220623's
// ParseCommandLine does not do the way our binaries are used:
// - names with dashes (--metrics-listen) for flags defined with underscores
//   (metrics_listen); both spellings are accepted;
// - only the calling binary's own flags (those defined in files whose path
//   ends with `defined_in`), none of absl's internal ones;
// - errors returned as InvalidArgument naming the flag (the caller exits 2,
//   ParseCommandLine would exit 1 itself), and --help printed by the caller
//   (ParseCommandLine exits 1 after it).
// Not thread-safe: call from main() before any thread reads the flags.
#ifndef DISTILL_COORDINATOR_FLAG_PARSE_H_
#define DISTILL_COORDINATOR_FLAG_PARSE_H_

#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace distill::coordinator {

// Sets the flags named in `args` (`--name=value`, `--name value`; a bool
// flag also alone, `--name`), returns the other arguments in order. An
// ArgList flag given again appends; any other flag keeps its last value. When
// `given` is not null, the names (as defined, with underscores) of the flags
// set are added to it, for a caller whose flags apply only in some contexts.
// InvalidArgument "unknown option --NAME", "--NAME needs a value" or
// "--NAME: ..." (the value's error).
absl::StatusOr<std::vector<std::string>> ParseFlags(const std::vector<std::string>& args,
                                                    absl::string_view defined_in,
                                                    std::set<std::string>* given = nullptr);

// The flags defined in files ending with `defined_in`, one entry each
// (`--name-with-dashes VALUE  help (default: D)`), sorted by name, after
// `usage_line`.
std::string FlagsHelp(absl::string_view usage_line, absl::string_view defined_in);

// A flag that may be given several times, each value one element in order
// (--mpirun-arg=--mca --mpirun-arg=btl_tcp_if_include ...): never split on
// commas, which arguments contain. Its text form joins the values with
// newlines, so a value cannot hold one.
struct ArgList {
  std::vector<std::string> values;
};
bool AbslParseFlag(absl::string_view text, ArgList* list, std::string* error);
std::string AbslUnparseFlag(const ArgList& list);

// A positive duration flag: "30s", "1m30s", or plain seconds ("30", "0.5").
struct PositiveDuration {
  absl::Duration value;
};
bool AbslParseFlag(absl::string_view text, PositiveDuration* d, std::string* error);
std::string AbslUnparseFlag(PositiveDuration d);

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_FLAG_PARSE_H_
