// distillctl: the command-line client of the distill coordinator. Parses the
// command line, connects, and hands over to RunCommand (commands.h).
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "common/main_guard.h"
#include "coordinator/ctl/args.h"
#include "coordinator/ctl/client.h"
#include "coordinator/ctl/commands.h"

namespace ctl = distill::coordinator::ctl;

namespace {

int Main(int argc, char** argv) {
  absl::StatusOr<ctl::CtlArgs> args =
      ctl::ParseArgs(std::vector<std::string>(argv + 1, argv + argc));
  if (!args.ok()) {
    // The whole usage only when no command was given; otherwise the one problem.
    if (argc == 1) {
      std::cerr << ctl::UsageText();
    } else {
      std::cerr << "distillctl: " << args.status().message() << " (distillctl --help for usage)\n";
    }
    return ctl::kExitUsage;
  }
  if (args->help) {
    std::cout << ctl::UsageText();
    return ctl::kExitOk;
  }
  absl::StatusOr<ctl::ConnectionOptions> connection =
      ctl::ResolveConnection(*args, [](const char* name) {
        const char* v = std::getenv(name);
        return std::string(v ? v : "");
      });
  if (!connection.ok()) {
    std::cerr << ctl::ErrorLine(connection.status()) << std::endl;
    return ctl::kExitUsage;
  }
  ctl::Terminal term{&std::cout, &std::cerr};
  term.tty = isatty(STDOUT_FILENO) == 1;
  if (winsize ws{}; term.tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
    term.width = ws.ws_col;
  }
  ctl::CoordinatorClient client(*connection);
  return ctl::RunCommand(*args, client, term);
}

}  // namespace

int main(int argc, char** argv) {
  return distill::common::RunCatchingExceptions("distillctl", [&] { return Main(argc, argv); });
}
