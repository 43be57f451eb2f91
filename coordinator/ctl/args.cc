#include "coordinator/ctl/args.h"

#include <optional>
#include <set>
#include <utility>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "coordinator/flag_parse.h"

// Every distillctl option; "submit: ..." in the help means only `submit`
// takes it (Grammar() below). Written with dashes on the command line.
ABSL_FLAG(std::string, coordinator, "",
          "host:port of the coordinator ('' = env DISTILL_COORDINATOR, else 127.0.0.1:50051)");
ABSL_FLAG(std::string, token, "", "bearer token ('' = env DISTILL_TOKEN)");
ABSL_FLAG(std::string, token_file, "", "read the bearer token from this file (not with --token)");
ABSL_FLAG(std::string, tls_ca, "",
          "connect with TLS, trusting the CA certificates in this PEM file ('' = plaintext)");
ABSL_FLAG(bool, watch, false,
          "submit: then watch the job to its end (exit 0 only if it succeeded)");
ABSL_FLAG(bool, capture, false,
          "submit: a capture job: run the spec's teacher (teacher.model) once and fill its "
          "teacher.cache");
ABSL_FLAG(int, priority, 0, "submit: the job's priority, higher runs first");
ABSL_FLAG(std::string, request_id, "",
          "submit: idempotency key ('' = a fresh random one, so a retry never queues twice)");
ABSL_FLAG(std::optional<int>, max_retries, std::nullopt,
          "submit: retries of a failed attempt (unset: the coordinator's --max-retries)");
ABSL_FLAG(bool, json, false, "get, list: print the Job message(s) as JSON");
ABSL_FLAG(std::string, state, "",
          "list: only jobs in this state: queued, starting, running, succeeded, failed, "
          "cancelled ('' = all)");
ABSL_FLAG(int, page_size, 0, "list: jobs per request (0 = the coordinator's default)");
ABSL_FLAG(bool, force, false,
          "cancel: kill at once instead of the graceful stop (ranks checkpoint and exit)");
ABSL_FLAG(bool, follow, false, "logs (also -f): follow the output until the job ends");
ABSL_FLAG(std::optional<int>, rank, std::nullopt, "logs: only this rank's output (unset: all)");
ABSL_FLAG(int, attempt, 0, "logs: which attempt, 1 for the first (0 = the latest)");
ABSL_FLAG(std::string, out, "",
          "report: the directory to write the report into (created; its files replaced)");

namespace distill::coordinator::ctl {
namespace {

// ParseFlags and FlagsHelp take the flags defined in this file only.
constexpr char kFlagsFile[] = "coordinator/ctl/args.cc";

struct CommandGrammar {
  int positional;               // exact number of positional arguments (at least, if variadic)
  const char* positional_name;  // for the usage error
  std::set<std::string> flags;  // the flags it takes besides the global ones (defined names)
  bool variadic = false;        // more positionals than `positional` are allowed
};

const std::map<std::string, CommandGrammar>& Grammar() {
  static const auto* grammar = new std::map<std::string, CommandGrammar>{
      {"submit", {1, "SPEC", {"watch", "capture", "priority", "request_id", "max_retries"}}},
      {"get", {1, "ID", {"json"}}},
      {"list", {0, "", {"json", "state", "page_size"}}},
      {"watch", {1, "ID", {}}},
      {"cancel", {1, "ID", {"force"}}},
      {"delete", {1, "ID", {}}},
      {"logs", {1, "ID", {"follow", "rank", "attempt"}}},
      {"report", {1, "ID", {"out"}, /*variadic=*/true}},
  };
  return *grammar;
}

const std::set<std::string>& GlobalFlags() {
  static const auto* globals =
      new std::set<std::string>{"coordinator", "token", "token_file", "tls_ca"};
  return *globals;
}

std::string Dashed(absl::string_view name) { return absl::StrReplaceAll(name, {{"_", "-"}}); }

// distillctl's flag `name` (dashes or underscores), or null.
const absl::CommandLineFlag* CtlFlag(absl::string_view name) {
  const absl::CommandLineFlag* flag =
      absl::FindCommandLineFlag(absl::StrReplaceAll(name, {{"-", "_"}}));
  if (flag == nullptr || !absl::EndsWith(flag->Filename(), kFlagsFile)) return nullptr;
  return flag;
}

}  // namespace

std::string CtlArgs::Get(const std::string& flag, const std::string& fallback) const {
  auto it = flags.find(flag);
  return it == flags.end() ? fallback : it->second;
}

absl::StatusOr<int> CtlArgs::Int(const std::string& flag, int fallback) const {
  auto it = flags.find(flag);
  if (it == flags.end()) return fallback;
  int v = 0;
  if (!absl::SimpleAtoi(it->second, &v)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": not an integer: '", it->second, "'"));
  }
  return v;
}

namespace {

// The command line split before the command's grammar is known (global
// options may come first).
struct SplitArgs {
  std::vector<std::string> flag_args;  // for ParseFlags: each option with its value
  std::string unknown;                 // the first option that is none of ours
  std::string switch_with_value;       // the first switch given `=value`
};

// First pass: the command and its positionals (into `args`), -h/--help,
// and the options with their values (`--name value` when the flag is not a
// bool) for ParseFlags; `-f` is `--follow`, as in tail.
absl::Status CollectArgs(const std::vector<std::string>& argv, CtlArgs& args, SplitArgs& split) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "-h" || a == "--help") {
      args.help = true;
    } else if (a == "-f") {
      split.flag_args.push_back("--follow");
    } else if (absl::StartsWith(a, "--") && a.size() > 2) {
      const size_t eq = a.find('=');
      const std::string name = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
      const absl::CommandLineFlag* flag = CtlFlag(name);
      if (flag == nullptr) {
        if (split.unknown.empty()) split.unknown = name;
        continue;
      }
      const bool is_switch = flag->IsOfType<bool>();
      if (is_switch && eq != std::string::npos) {
        if (split.switch_with_value.empty()) split.switch_with_value = name;
        continue;
      }
      split.flag_args.push_back(a);
      if (!is_switch && eq == std::string::npos && i + 1 < argv.size()) {
        split.flag_args.push_back(argv[++i]);
      }
    } else if (absl::StartsWith(a, "-") && a.size() > 1) {
      return absl::InvalidArgumentError(absl::StrCat("unknown option '", a, "'"));
    } else if (args.command.empty()) {
      args.command = a;
    } else {
      args.positional.push_back(a);
    }
  }
  return absl::OkStatus();
}

// Second pass: the options onto the absl flags, then the flags given and the
// positionals against the command's grammar; the values into `args`.
absl::Status ApplyGrammar(const CommandGrammar& grammar, const SplitArgs& split, CtlArgs& args) {
  // Reported only now, as before: `help` and the command come first.
  if (!split.switch_with_value.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", split.switch_with_value, " takes no value"));
  }
  if (!split.unknown.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(args.command, ": unknown option '--", split.unknown, "'"));
  }
  std::set<std::string> given;
  // flag_args holds options and their values only: nothing is left over.
  RETURN_IF_ERROR(ParseFlags(split.flag_args, kFlagsFile, &given).status());
  // Only the flags given are read: what an earlier parse left does not count.
  for (const std::string& name : given) {
    if (GlobalFlags().count(name) > 0) continue;
    if (grammar.flags.count(name) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(args.command, ": unknown option '--", Dashed(name), "'"));
    }
    args.flags[Dashed(name)] = absl::FindCommandLineFlag(name)->CurrentValue();
  }
  if (given.count("coordinator") > 0) args.coordinator = absl::GetFlag(FLAGS_coordinator);
  if (given.count("token") > 0) args.token = absl::GetFlag(FLAGS_token);
  if (given.count("token_file") > 0) args.token_file = absl::GetFlag(FLAGS_token_file);
  if (given.count("tls_ca") > 0) args.tls_ca = absl::GetFlag(FLAGS_tls_ca);
  const int given_positional = static_cast<int>(args.positional.size());
  if (given_positional != grammar.positional &&
      !(grammar.variadic && given_positional > grammar.positional)) {
    if (grammar.positional == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(args.command, ": unexpected argument '", args.positional[0], "'"));
    }
    return absl::InvalidArgumentError(
        args.positional.empty()
            ? absl::StrCat(args.command, ": missing ", grammar.positional_name)
            : absl::StrCat(args.command, ": expected one ", grammar.positional_name, ", got ",
                           args.positional.size(), " arguments"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CtlArgs> ParseArgs(const std::vector<std::string>& argv) {
  CtlArgs args;
  SplitArgs split;
  RETURN_IF_ERROR(CollectArgs(argv, args, split));
  if (args.command == "help") {
    args.help = true;
    args.command.clear();
  }
  if (args.help) return args;
  if (args.command.empty()) return absl::InvalidArgumentError("no command given");
  auto it = Grammar().find(args.command);
  if (it == Grammar().end()) {
    return absl::InvalidArgumentError(absl::StrCat("unknown command '", args.command, "'"));
  }
  RETURN_IF_ERROR(ApplyGrammar(it->second, split, args));
  return args;
}

std::string UsageText() {
  return FlagsHelp(
      "usage: distillctl [OPTIONS] COMMAND [ARGS] [OPTIONS]\n\n"
      "commands:\n"
      "  submit SPEC   queue the job in SPEC (YAML or JSON; relative paths are relative\n"
      "                to the file); prints the job id (a sweep: then its children)\n"
      "  get ID        one job: a summary (a sweep: and its children), or the Job as JSON\n"
      "  list          jobs, newest first, a sweep's children under it\n"
      "  watch ID      live progress until the job ends; exit 0 only if it succeeded\n"
      "  cancel ID     graceful (ranks checkpoint and exit) unless --force; a sweep: all\n"
      "                its unfinished children\n"
      "  delete ID     a finished job now, with its events and logs (never its output);\n"
      "                a sweep: with its children (the coordinator's --retention does\n"
      "                this by itself)\n"
      "  logs ID       the job's worker output\n"
      "  report ID...  a sweep's (or one job's) results into --out DIR: CSV and\n"
      "                Markdown tables (mean and 95% interval over seeds), PNG plots;\n"
      "                several IDs: their runs side by side, grouped by job name too\n\n"
      "exit status: 0 success; 1 an error (printed as \"distillctl: CODE: message\") or\n"
      "a watched job that did not succeed; 2 a usage error.\n\n"
      "options (\"submit: ...\": only that command takes it; the others go anywhere):",
      kFlagsFile);
}

absl::StatusOr<ConnectionOptions> ResolveConnection(
    const CtlArgs& args, const std::function<std::string(const char*)>& getenv) {
  ConnectionOptions c;
  if (!args.coordinator.empty()) {
    c.address = args.coordinator;
  } else if (std::string env = getenv("DISTILL_COORDINATOR"); !env.empty()) {
    c.address = env;
  }
  if (!args.token.empty() && !args.token_file.empty()) {
    return absl::InvalidArgumentError("--token and --token-file are exclusive");
  }
  if (!args.token.empty()) {
    c.token = args.token;
  } else if (!args.token_file.empty()) {
    ASSIGN_OR_RETURN(std::string text, common::ReadFileToString(args.token_file));
    c.token = std::string(absl::StripAsciiWhitespace(text));
    if (c.token.empty())
      return absl::InvalidArgumentError(absl::StrCat(args.token_file, ": empty token file"));
  } else {
    c.token = getenv("DISTILL_TOKEN");
  }
  if (!args.tls_ca.empty()) {
    ASSIGN_OR_RETURN(c.tls_ca_pem, common::ReadFileToString(args.tls_ca));
    if (c.tls_ca_pem.empty())
      return absl::InvalidArgumentError(absl::StrCat(args.tls_ca, ": empty CA file"));
  }
  return c;
}

}  // namespace distill::coordinator::ctl
