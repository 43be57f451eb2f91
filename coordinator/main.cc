// distill-coordinator: parses flags, starts the Server, waits for SIGTERM or
// SIGINT, then stops accepting and exits 0 (running jobs keep running and are
// adopted by the next start). Flags are absl flags (ABSL_FLAG below), written
// with dashes on the command line (coordinator/flag_parse.h); --help lists them.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/main_guard.h"
#include "common/version.h"
#include "coordinator/flag_parse.h"
#include "coordinator/preflight.h"
#include "coordinator/server.h"

using distill::coordinator::PositiveDuration;

ABSL_FLAG(std::string, listen, "127.0.0.1:50051", "gRPC address");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9464", "/metrics address, '' = off");
ABSL_FLAG(std::string, advertise, "",
          "address the ranks report to ('' = the listen address with its real port)");
ABSL_FLAG(std::string, state_dir, "./var", "coordinator.db and jobs/ID/");
ABSL_FLAG(std::optional<int>, slots, std::nullopt,
          "ranks this host runs at once (unset: the number of cores)");
ABSL_FLAG(std::string, hosts_file, "",
          "inventory, lines 'HOST slots=N [gpus=G]' (instead of --slots)");
ABSL_FLAG(int, max_retries, 2, "retries of a failed attempt");
ABSL_FLAG(PositiveDuration, heartbeat_timeout, PositiveDuration{absl::Seconds(60)},
          "a RUNNING job silent this long is killed and retried (30s, 1m, or seconds)");
ABSL_FLAG(PositiveDuration, start_timeout, PositiveDuration{absl::Minutes(10)},
          "a STARTING job with no rank reporting this long after its launch (after its Slurm "
          "job left the queue) is killed and retried");
ABSL_FLAG(PositiveDuration, progress_timeout, PositiveDuration{absl::Minutes(30)},
          "a rank whose step stays the same this long (or 10x the attempt's slowest step, if "
          "longer) fails its attempt, naming the rank and step; must exceed the setup before the "
          "first step and the longest eval");
ABSL_FLAG(PositiveDuration, grace_period, PositiveDuration{absl::Seconds(30)},
          "SIGTERM to SIGKILL on a graceful cancel");
ABSL_FLAG(PositiveDuration, retry_backoff, PositiveDuration{absl::Seconds(2)},
          "first retry delay, doubling per retry");
ABSL_FLAG(std::string, data_root, "",
          "jobs' inputs must lie under this directory (required, or --allow-any-path)");
ABSL_FLAG(std::string, output_root, "",
          "jobs' outputs must lie under this directory (required, or --allow-any-path)");
ABSL_FLAG(bool, allow_any_path, false,
          "without --data-root/--output-root: let the jobs of anyone with the API token read and "
          "write wherever this coordinator's user can (Note [Roots required])");
ABSL_FLAG(std::string, sync, "normal",
          "normal: an answered submission survives a crash of this process; full: also a power "
          "loss (an fsync per group commit; docs/benchmarks.md)");
ABSL_FLAG(int, max_watchers, distill::coordinator::ServiceOptions().max_watchers,
          "WatchJob streams open at once; more are refused (RESOURCE_EXHAUSTED)");
ABSL_FLAG(std::string, auth_token_file, "", "require 'authorization: Bearer TOKEN' (first line)");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate: serve TLS (with --tls-key); the ranks report over TLS too, "
          "trusting it (passed as DISTILL_COORDINATOR_CA)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert");
ABSL_FLAG(std::optional<std::string>, worker_bin, std::nullopt,
          "worker binary (unset: distill-worker next to this binary, else on PATH)");
ABSL_FLAG(std::string, mpirun, "mpirun", "mpirun binary");
ABSL_FLAG(std::string, launcher, "mpirun",
          "mpirun: ranks on this host or --hosts-file under mpirun; slurm: each attempt one "
          "Slurm batch job (sbatch), --slots then caps the ranks submitted at once");
ABSL_FLAG(std::string, slurm_partition, "", "sbatch --partition ('' = the cluster's default)");
ABSL_FLAG(std::string, slurm_account, "", "sbatch --account ('' = the user's default)");
ABSL_FLAG(std::string, slurm_time, "", "sbatch --time, e.g. 12:00:00 ('' = the partition's)");
ABSL_FLAG(std::string, slurm_sbatch_args, "",
          "more sbatch arguments, space-separated, e.g. '--gpus-per-task=1 --cpus-per-task=8'");
ABSL_FLAG(std::string, slurm_launch, "mpirun",
          "how the batch script starts the ranks: mpirun, or srun (--mpi=pmix)");
ABSL_FLAG(std::string, slurm_script, "",
          "batch script ('' = the built-in deploy/slurm/distill.sbatch)");
ABSL_FLAG(distill::coordinator::ArgList, mpirun_arg, distill::coordinator::ArgList{},
          "an argument for every mpirun, before the worker; repeat it for more, in order "
          "(e.g. --mpirun-arg=--mca --mpirun-arg=plm_rsh_agent --mpirun-arg='ssh -i KEY')");
ABSL_FLAG(PositiveDuration, host_down_for, PositiveDuration{absl::Minutes(5)},
          "a host a job lost (unreachable, its MPI daemon lost) gets no jobs this long");
ABSL_FLAG(absl::Duration, retention, absl::Hours(24 * 30),
          "a finished job is deleted (with its events and logs, never its output) this long "
          "after it ended, e.g. 720h; 0 keeps jobs forever");

namespace distill::coordinator {
namespace {

constexpr char kUsageLine[] =
    "usage: distill-coordinator [options]   (--version: version, LibTorch, CUDA)";
constexpr char kFlagsFile[] = "coordinator/main.cc";
// --slots with --launcher slurm when unset: Slurm places and queues the ranks,
// the coordinator does not cap them.
constexpr int kSlurmDefaultSlots = 100000;

// The launcher flags into `o` (after its worker binary is set).
absl::Status LauncherFromFlags(bool slots_given, ServerOptions& o) {
  o.launcher = absl::GetFlag(FLAGS_launcher);
  if (o.launcher != "mpirun" && o.launcher != "slurm")
    return absl::InvalidArgumentError(
        absl::StrCat("--launcher: expected mpirun or slurm, got '", o.launcher, "'"));
  o.mpirun.mpirun = absl::GetFlag(FLAGS_mpirun);
  SlurmOptions& slurm = o.slurm;
  slurm.worker_bin = o.mpirun.worker_bin;
  slurm.partition = absl::GetFlag(FLAGS_slurm_partition);
  slurm.account = absl::GetFlag(FLAGS_slurm_account);
  slurm.time_limit = absl::GetFlag(FLAGS_slurm_time);
  slurm.sbatch_args =
      absl::StrSplit(absl::GetFlag(FLAGS_slurm_sbatch_args), ' ', absl::SkipWhitespace());
  slurm.launch = absl::GetFlag(FLAGS_slurm_launch);
  slurm.script = absl::GetFlag(FLAGS_slurm_script);
  if (slurm.launch != "mpirun" && slurm.launch != "srun")
    return absl::InvalidArgumentError(
        absl::StrCat("--slurm-launch: expected mpirun or srun, got '", slurm.launch, "'"));
  if (!slurm.script.empty() && !std::filesystem::exists(slurm.script))
    return absl::InvalidArgumentError(
        absl::StrCat("--slurm-script: no such file '", slurm.script, "'"));
  if (o.launcher != "slurm") return absl::OkStatus();
  if (!o.hosts_file.empty())
    return absl::InvalidArgumentError(
        "--hosts-file: not with --launcher slurm (Slurm places the ranks)");
  if (!slots_given) o.slots = kSlurmDefaultSlots;
  return absl::OkStatus();
}

std::string SbatchBin(const ServerOptions& o) {
  return o.slurm.bin_dir.empty() ? "sbatch" : absl::StrCat(o.slurm.bin_dir, "/sbatch");
}

// --data-root and --output-root into `o`, absolute (as the paths the service
// compares with them and the ranks open). Note [Roots required]: a
// coordinator serves whoever holds its token (or anyone, without one);
// without roots their jobs read and write anywhere this user can, so that
// takes an explicit --allow-any-path.
absl::Status RootsFromFlags(ServerOptions& o) {
  o.service.data_root = absl::GetFlag(FLAGS_data_root);
  o.service.output_root = absl::GetFlag(FLAGS_output_root);
  for (auto [flag, root] :
       {std::pair<const char*, std::string*>{"--data-root", &o.service.data_root},
        {"--output-root", &o.service.output_root}}) {
    if (root->empty()) continue;
    std::error_code ec;
    if (!std::filesystem::is_directory(*root, ec)) {
      return absl::InvalidArgumentError(absl::StrCat(flag, ": not a directory: '", *root, "'"));
    }
    *root = std::filesystem::absolute(*root).lexically_normal().string();
  }
  if ((o.service.data_root.empty() || o.service.output_root.empty()) &&
      !absl::GetFlag(FLAGS_allow_any_path)) {
    return absl::InvalidArgumentError(absl::StrCat(
        o.service.data_root.empty() ? "--data-root" : "--output-root",
        ": required: jobs may read only beneath --data-root DIR and write only beneath "
        "--output-root DIR; --allow-any-path lets them use any path this user can"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ServerOptions> OptionsFromFlags(int argc, char** argv) {
  absl::StatusOr<std::vector<std::string>> rest =
      ParseFlags(std::vector<std::string>(argv + 1, argv + argc), kFlagsFile);
  if (!rest.ok()) return rest.status();
  if (!rest->empty())
    return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", rest->front(), "'"));
  ServerOptions o;
  o.listen = absl::GetFlag(FLAGS_listen);
  o.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  o.advertise = absl::GetFlag(FLAGS_advertise);
  o.state_dir = absl::GetFlag(FLAGS_state_dir);
  const std::optional<int> slots = absl::GetFlag(FLAGS_slots);
  if (slots && *slots < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("--slots: expected an integer >= 1, got '", *slots, "'"));
  o.slots = slots ? *slots : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  o.hosts_file = absl::GetFlag(FLAGS_hosts_file);
  o.coordinator.max_retries = absl::GetFlag(FLAGS_max_retries);
  if (o.coordinator.max_retries < 0)
    return absl::InvalidArgumentError(absl::StrCat("--max-retries: expected an integer >= 0, got '",
                                                   o.coordinator.max_retries, "'"));
  o.coordinator.health.heartbeat_timeout = absl::GetFlag(FLAGS_heartbeat_timeout).value;
  o.coordinator.health.grace_period = absl::GetFlag(FLAGS_grace_period).value;
  o.coordinator.health.retry_backoff = absl::GetFlag(FLAGS_retry_backoff).value;
  o.coordinator.health.host_down_for = absl::GetFlag(FLAGS_host_down_for).value;
  o.coordinator.health.start_timeout = absl::GetFlag(FLAGS_start_timeout).value;
  o.coordinator.health.progress_timeout = absl::GetFlag(FLAGS_progress_timeout).value;
  absl::Status roots = RootsFromFlags(o);
  if (!roots.ok()) return roots;
  o.service.max_watchers = absl::GetFlag(FLAGS_max_watchers);
  if (o.service.max_watchers < 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "--max-watchers: expected an integer >= 1, got '", o.service.max_watchers, "'"));
  const std::string sync = absl::GetFlag(FLAGS_sync);
  if (sync != "normal" && sync != "full")
    return absl::InvalidArgumentError(
        absl::StrCat("--sync: expected normal or full, got '", sync, "'"));
  o.sync = sync == "full" ? SqliteJobStore::Sync::kFull : SqliteJobStore::Sync::kNormal;
  o.coordinator.retention = absl::GetFlag(FLAGS_retention);
  if (o.coordinator.retention < absl::ZeroDuration())
    return absl::InvalidArgumentError(absl::StrCat(
        "--retention: expected a duration >= 0, got '",
        absl::FormatDuration(o.coordinator.retention), "'"));
  o.auth_token_file = absl::GetFlag(FLAGS_auth_token_file);
  o.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key = absl::GetFlag(FLAGS_tls_key);
  o.mpirun.worker_bin = absl::GetFlag(FLAGS_worker_bin).value_or(DefaultWorkerBin());
  o.mpirun.extra_args = absl::GetFlag(FLAGS_mpirun_arg).values;
  absl::Status st = LauncherFromFlags(slots.has_value(), o);
  if (!st.ok()) return st;
  return o;
}

int Main(int argc, char** argv) {
  if (argc > 1 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::cout << FlagsHelp(kUsageLine, kFlagsFile);
    return 0;
  }
  if (argc > 1 && std::string(argv[1]) == "--version") {
    std::cout << common::VersionLine("distill-coordinator") << "\n";
    return 0;
  }
  absl::StatusOr<ServerOptions> options = OptionsFromFlags(argc, argv);
  if (!options.ok()) {
    std::cerr << "distill-coordinator: " << options.status().message() << "\n"
              << "(--help lists the options)\n";
    return 2;
  }
  // Every thread inherits the blocked signals; main() takes them with sigwait.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  // Note [Preflight] (coordinator/preflight.h).
  absl::Status can_run =
      options->launcher == "slurm"
          ? CheckRunnable("sbatch", SbatchBin(*options), "Slurm's client on PATH")
          : CheckRunnable("the worker", options->mpirun.worker_bin,
                          "set --worker-bin to build/worker/distill-worker");
  if (can_run.ok() && options->launcher != "slurm") {
    can_run = CheckRunnable("mpirun", options->mpirun.mpirun, "install Open MPI or set --mpirun");
  }
  if (!can_run.ok()) {
    std::cerr << "distill-coordinator: error: " << can_run.message() << std::endl;
    return 1;
  }
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(*options);
  if (!server.ok()) {
    std::cerr << "distill-coordinator: error: " << server.status().message() << std::endl;
    return 1;
  }
  std::cerr << "distill-coordinator: serving on port " << (*server)->port() << " (metrics port "
            << (*server)->metrics_port() << "), state in " << options->state_dir << ", worker "
            << options->mpirun.worker_bin << ", launcher " << options->launcher << std::endl;
  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::cerr << "distill-coordinator: signal " << sig << ", stopping (running jobs keep running)"
            << std::endl;
  (*server)->Shutdown();
  return 0;
}

}  // namespace
}  // namespace distill::coordinator

int main(int argc, char** argv) {
  return distill::common::RunCatchingExceptions(
      "distill-coordinator", [&] { return distill::coordinator::Main(argc, argv); });
}
