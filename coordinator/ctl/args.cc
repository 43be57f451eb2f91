#include "coordinator/ctl/args.h"

#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/fs_util.h"
#include "common/status_macros.h"

namespace distill::coordinator::ctl {
namespace {

struct CommandGrammar {
  int positional;                  // exact number of positional arguments
  const char* positional_name;     // for the usage error
  std::set<std::string> switches;  // flags without a value
  std::set<std::string> valued;    // flags that take a value
};

const std::map<std::string, CommandGrammar>& Grammar() {
  static const auto* grammar = new std::map<std::string, CommandGrammar>{
      {"submit", {1, "SPEC", {"watch"}, {"priority", "request-id", "max-retries"}}},
      {"get", {1, "ID", {"json"}, {}}},
      {"list", {0, "", {"json"}, {"state", "page-size"}}},
      {"watch", {1, "ID", {}, {}}},
      {"cancel", {1, "ID", {"force"}, {}}},
      {"logs", {1, "ID", {"follow"}, {"rank", "attempt"}}},
  };
  return *grammar;
}

const std::set<std::string>& GlobalValued() {
  static const auto* globals =
      new std::set<std::string>{"coordinator", "token", "token-file", "tls-ca"};
  return *globals;
}

void SetGlobal(CtlArgs& args, const std::string& name, std::string value) {
  if (name == "coordinator") args.coordinator = std::move(value);
  if (name == "token") args.token = std::move(value);
  if (name == "token-file") args.token_file = std::move(value);
  if (name == "tls-ca") args.tls_ca = std::move(value);
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

// A flag seen on the command line, before the command's grammar is known.
struct PendingFlag {
  std::string name;
  std::string value;
  bool has_value = false;
};

// First pass: the command, its positionals, the global options (set in
// `args`) and every other flag (into `pending`); -h/--help sets args.help.
absl::Status CollectArgs(const std::vector<std::string>& argv, CtlArgs& args,
                         std::vector<PendingFlag>& pending) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "-h" || a == "--help") {
      args.help = true;
      continue;
    }
    if (a == "-f") {  // `logs -f`, as in tail
      pending.push_back({"follow", "", false});
      continue;
    }
    if (absl::StartsWith(a, "--") && a.size() > 2) {
      PendingFlag f{a.substr(2), "", false};
      if (auto eq = f.name.find('='); eq != std::string::npos) {
        f.value = f.name.substr(eq + 1);
        f.name = f.name.substr(0, eq);
        f.has_value = true;
      }
      const CommandGrammar* grammar = nullptr;
      if (auto it = Grammar().find(args.command); it != Grammar().end()) grammar = &it->second;
      const bool takes_value = GlobalValued().count(f.name) > 0 ||
                               (grammar != nullptr && grammar->valued.count(f.name) > 0);
      if (takes_value && !f.has_value) {
        if (i + 1 >= argv.size())
          return absl::InvalidArgumentError(absl::StrCat("--", f.name, " needs a value"));
        f.value = argv[++i];
        f.has_value = true;
      }
      if (GlobalValued().count(f.name) > 0) {
        SetGlobal(args, f.name, f.value);
      } else {
        pending.push_back(std::move(f));
      }
      continue;
    }
    if (absl::StartsWith(a, "-") && a.size() > 1) {
      return absl::InvalidArgumentError(absl::StrCat("unknown option '", a, "'"));
    }
    if (args.command.empty()) {
      args.command = a;
    } else {
      args.positional.push_back(a);
    }
  }
  return absl::OkStatus();
}

// Second pass: the pending flags and the positionals against the command's
// grammar.
absl::Status ApplyGrammar(const CommandGrammar& grammar, const std::vector<PendingFlag>& pending,
                          CtlArgs& args) {
  for (const PendingFlag& f : pending) {
    if (grammar.switches.count(f.name) > 0) {
      if (f.has_value) {
        return absl::InvalidArgumentError(absl::StrCat("--", f.name, " takes no value"));
      }
      args.flags[f.name] = "true";
    } else if (grammar.valued.count(f.name) > 0) {
      // A valued flag seen before the command was known took no value yet.
      if (!f.has_value) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", f.name, " needs a value (put it after the command)"));
      }
      args.flags[f.name] = f.value;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(args.command, ": unknown option '--", f.name, "'"));
    }
  }
  if (static_cast<int>(args.positional.size()) != grammar.positional) {
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
  // Flags are collected before the command is known (globals may come first).
  std::vector<PendingFlag> pending;
  RETURN_IF_ERROR(CollectArgs(argv, args, pending));
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
  RETURN_IF_ERROR(ApplyGrammar(it->second, pending, args));
  return args;
}

std::string UsageText() {
  return R"(usage: distillctl [GLOBAL OPTIONS] COMMAND [ARGS]

commands:
  submit SPEC [--watch] [--priority P] [--request-id ID] [--max-retries N]
                      queue the job in SPEC (YAML or JSON; relative paths are
                      relative to the file); prints the job id
  get ID [--json]     one job: a summary, or the Job message as JSON
  list [--state S] [--page-size N] [--json]
                      jobs, newest first (S: queued, starting, running,
                      succeeded, failed, cancelled)
  watch ID            live progress until the job ends; exit 0 only if it
                      succeeded
  cancel ID [--force] graceful (ranks checkpoint and exit) unless --force
  logs ID [-f] [--rank R] [--attempt A]
                      the job's worker output (-f: follow until the job ends)

global options:
  --coordinator ADDR  host:port (env DISTILL_COORDINATOR; default 127.0.0.1:50051)
  --token TOKEN       bearer token (env DISTILL_TOKEN)
  --token-file FILE   read the bearer token from FILE
  --tls-ca FILE       connect with TLS, trusting the CA certificates in FILE

exit status: 0 success; 1 an error (printed as "distillctl: CODE: message") or
a watched job that did not succeed; 2 a usage error.
)";
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
