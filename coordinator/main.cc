// distill-coordinator: parses flags, starts the Server, waits for SIGTERM or
// SIGINT, then stops accepting and exits 0 (running jobs keep running and are
// adopted by the next start).
#include <signal.h>
#include <unistd.h>

#include <climits>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/version.h"
#include "coordinator/server.h"

namespace distill::coordinator {
namespace {

constexpr char kUsage[] =
    "usage: distill-coordinator [options]   (--version: version, LibTorch, CUDA)\n"
    "  --listen ADDR            gRPC address (default 127.0.0.1:50051)\n"
    "  --metrics-listen ADDR    /metrics address, '' = off (default 127.0.0.1:9464)\n"
    "  --advertise ADDR         address the ranks report to (default: the listen address)\n"
    "  --state-dir DIR          coordinator.db and jobs/ID/ (default ./var)\n"
    "  --slots N                ranks this host runs at once (default: number of cores)\n"
    "  --hosts-file FILE        inventory, lines 'HOST slots=N [gpus=G]' (instead of --slots)\n"
    "  --max-retries N          retries of a failed attempt (default 2)\n"
    "  --heartbeat-timeout D    e.g. 60s (default 60s)\n"
    "  --grace-period D         SIGTERM to SIGKILL on cancel (default 30s)\n"
    "  --retry-backoff D        first retry delay, doubling (default 2s)\n"
    "  --data-root DIR          inputs must lie under DIR (default: anywhere)\n"
    "  --output-root DIR        outputs must lie under DIR (default: anywhere)\n"
    "  --auth-token-file FILE   require 'authorization: Bearer TOKEN'\n"
    "  --tls-cert PEM --tls-key PEM   serve TLS; the ranks report over TLS too, trusting\n"
    "                           PEM (passed as DISTILL_COORDINATOR_CA)\n"
    "  --worker-bin PATH        worker binary (default: distill-worker next to this binary, else "
    "on PATH)\n"
    "  --mpirun PATH            mpirun binary (default: mpirun on PATH)\n";

absl::StatusOr<absl::Duration> ParseDurationFlag(const std::string& name, const std::string& v) {
  absl::Duration d;
  double seconds;
  if (absl::SimpleAtod(v, &seconds)) {
    d = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(v, &d)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, ": expected a duration like 30s, got '", v, "'"));
  }
  if (d <= absl::ZeroDuration())
    return absl::InvalidArgumentError(absl::StrCat("--", name, ": must be > 0"));
  return d;
}

absl::StatusOr<int> ParseIntFlag(const std::string& name, const std::string& v, int min) {
  int n;
  if (!absl::SimpleAtoi(v, &n) || n < min) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, ": expected an integer >= ", min, ", got '", v, "'"));
  }
  return n;
}

std::string DefaultWorkerBin() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    std::filesystem::path next = self.parent_path() / "distill-worker";
    if (std::filesystem::exists(next, ec)) return next.string();
  }
  return "distill-worker";
}

absl::StatusOr<ServerOptions> ParseFlags(int argc, char** argv) {
  ServerOptions o;
  o.slots = std::max(1u, std::thread::hardware_concurrency());
  o.mpirun.worker_bin = DefaultWorkerBin();
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0)
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    std::string name = arg.substr(2), value;
    size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else {
      if (i + 1 >= argc)
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      value = argv[++i];
    }
    if (name == "listen") {
      o.listen = value;
    } else if (name == "metrics-listen") {
      o.metrics_listen = value;
    } else if (name == "advertise") {
      o.advertise = value;
    } else if (name == "state-dir") {
      o.state_dir = value;
    } else if (name == "slots") {
      auto n = ParseIntFlag(name, value, 1);
      if (!n.ok()) return n.status();
      o.slots = *n;
    } else if (name == "hosts-file") {
      o.hosts_file = value;
    } else if (name == "max-retries") {
      auto n = ParseIntFlag(name, value, 0);
      if (!n.ok()) return n.status();
      o.coordinator.max_retries = *n;
    } else if (name == "heartbeat-timeout" || name == "grace-period" || name == "retry-backoff") {
      auto d = ParseDurationFlag(name, value);
      if (!d.ok()) return d.status();
      (name == "heartbeat-timeout" ? o.coordinator.health.heartbeat_timeout
       : name == "grace-period"    ? o.coordinator.health.grace_period
                                   : o.coordinator.health.retry_backoff) = *d;
    } else if (name == "data-root") {
      o.service.data_root = value;
    } else if (name == "output-root") {
      o.service.output_root = value;
    } else if (name == "auth-token-file") {
      o.auth_token_file = value;
    } else if (name == "tls-cert") {
      o.tls_cert = value;
    } else if (name == "tls-key") {
      o.tls_key = value;
    } else if (name == "worker-bin") {
      o.mpirun.worker_bin = value;
    } else if (name == "mpirun") {
      o.mpirun.mpirun = value;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown option --", name));
    }
  }
  return o;
}

int Main(int argc, char** argv) {
  if (argc > 1 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::cout << kUsage;
    return 0;
  }
  if (argc > 1 && std::string(argv[1]) == "--version") {
    std::cout << common::VersionLine("distill-coordinator") << "\n";
    return 0;
  }
  absl::StatusOr<ServerOptions> options = ParseFlags(argc, argv);
  if (!options.ok()) {
    std::cerr << "distill-coordinator: " << options.status().message() << "\n" << kUsage;
    return 2;
  }
  // Every thread inherits the blocked signals; main() takes them with sigwait.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(*options);
  if (!server.ok()) {
    std::cerr << "distill-coordinator: error: " << server.status().message() << std::endl;
    return 1;
  }
  std::cerr << "distill-coordinator: serving on port " << (*server)->port() << " (metrics port "
            << (*server)->metrics_port() << "), state in " << options->state_dir << ", worker "
            << options->mpirun.worker_bin << std::endl;
  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::cerr << "distill-coordinator: signal " << sig << ", stopping (running jobs keep running)"
            << std::endl;
  (*server)->Shutdown();
  return 0;
}

}  // namespace
}  // namespace distill::coordinator

int main(int argc, char** argv) { return distill::coordinator::Main(argc, argv); }
