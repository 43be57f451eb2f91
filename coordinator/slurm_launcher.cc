#include "coordinator/slurm_launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/fs_util.h"
#include "coordinator/mpirun_failure.h"
#include "coordinator/run_command.h"
#include "coordinator/sbatch_script.h"  // generated (Note [One sbatch script])

namespace distill::coordinator {
namespace {

constexpr char kJobIdFile[] = "slurm_job_id";
constexpr char kHostfile[] = "hostfile";  // written by the script (DISTILL_HOSTFILE)

// Slurm's job states that mean "not ended yet".
bool StillRunning(const std::string& state) {
  static const auto* live = new std::set<std::string>{
      "PENDING",     "CONFIGURING",  "RUNNING",  "COMPLETING", "SUSPENDED", "REQUEUED",
      "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SIGNALING",  "STAGE_OUT", "RESV_DEL_HOLD"};
  return live->count(state) > 0;
}

// The attempt's allocation as the script wrote it (Note [Rank placement]);
// empty when it wrote none.
Allocation ReadAllocation(const std::string& work_dir) {
  Allocation allocation;
  absl::StatusOr<std::string> text = common::ReadFileToString(work_dir + "/" + kHostfile);
  if (!text.ok()) return allocation;
  absl::StatusOr<std::vector<Host>> hosts = ParseHostsFile(*text, kHostfile);
  if (!hosts.ok()) return allocation;
  for (const Host& h : *hosts) allocation.push_back({h.name, h.slots});
  return allocation;
}

// Fills s's failure fields: a node Slurm took down under the job (Query put
// it in s.failed_host: NODE_FAIL) is the cause, whatever mpirun said (when
// it is the batch host, mpirun died with it and said nothing); otherwise
// mpirun's messages in the job's output name the failed rank or lost node.
void ExplainFailure(const std::string& work_dir, LaunchStatus& s) {
  const Allocation allocation = ReadAllocation(work_dir);
  if (!s.failed_host.empty()) {
    s.host_lost = true;
    s.failed_ranks = RanksOnHost(allocation, s.failed_host);
    s.failed_how = "went down (Slurm: NODE_FAIL)";
    return;
  }
  absl::StatusOr<std::string> log = common::ReadFileToString(work_dir + "/slurm.out");
  if (log.ok()) ExplainMpirunFailure(*log, allocation, &s);
}

}  // namespace

std::string ScontrolField(const std::string& line, const std::string& key) {
  for (absl::string_view token : absl::StrSplit(line, absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&token, key + "=")) return std::string(token);
  }
  return "";
}

LaunchStatus SlurmJobStatus(int64_t job_id, const std::string& state,
                            const std::string& exit_code) {
  LaunchStatus s;
  // sacct writes "CANCELLED by 0"; the state is the first word.
  const std::string word = state.substr(0, state.find(' '));
  if (StillRunning(word)) return s;
  std::pair<std::string, std::string> parts = absl::StrSplit(exit_code, ':');
  int code = 0, signal = 0;
  if (!absl::SimpleAtoi(parts.first, &code)) code = 0;
  if (!absl::SimpleAtoi(parts.second, &signal)) signal = 0;
  s.state = LaunchStatus::kExited;
  if (word == "COMPLETED" && code == 0) {
    s.exit_code = 0;
  } else {
    s.exit_code = signal > 0 ? 128 + signal : code > 0 ? code : 1;
  }
  s.detail = absl::StrCat("Slurm job ", job_id, " ", word, " (exit code ", exit_code, ")");
  return s;
}

std::string SlurmLauncher::Bin(const std::string& name) const {
  return options_.bin_dir.empty() ? name : absl::StrCat(options_.bin_dir, "/", name);
}

std::string SlurmLauncher::RankLogPath(const std::string& work_dir, int rank) const {
  return absl::StrCat(work_dir, "/logs/1/rank.", rank, "/stdout");
}

int64_t SlurmLauncher::RecordedLaunchId(const std::string& work_dir) const {
  absl::StatusOr<std::string> text = common::ReadFileToString(work_dir + "/" + kJobIdFile);
  int64_t id = 0;
  if (!text.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &id)) return 0;
  return id;
}

std::vector<std::string> SlurmLauncher::SbatchArgs(const LaunchSpec& spec,
                                                   const std::string& script) const {
  std::vector<std::string> args = {
      "--parsable", absl::StrCat("--job-name=distill-", spec.job_id, "-", spec.attempt),
      absl::StrCat("--ntasks=", spec.ranks), "--chdir=" + spec.work_dir,
      "--output=" + spec.work_dir + "/slurm.out", "--export=ALL",
      // The coordinator retries (after a backoff, off lost nodes, counted):
      // Slurm must not requeue the job itself when a node fails.
      "--no-requeue"};
  if (!options_.partition.empty()) args.push_back("--partition=" + options_.partition);
  if (!options_.account.empty()) args.push_back("--account=" + options_.account);
  if (!options_.time_limit.empty()) args.push_back("--time=" + options_.time_limit);
  args.insert(args.end(), options_.sbatch_args.begin(), options_.sbatch_args.end());
  if (!down_nodes_.empty()) args.push_back("--exclude=" + absl::StrJoin(down_nodes_, ","));
  args.insert(args.end(), {script, spec.spec_path});
  return args;
}

absl::StatusOr<int64_t> SlurmLauncher::Launch(const LaunchSpec& spec) {
  std::string script = options_.script;
  if (script.empty()) {
    script = spec.work_dir + "/distill.sbatch";
    absl::Status st = common::WriteFileAtomically(script, kSbatchScript);
    if (!st.ok())
      return absl::UnavailableError(absl::StrCat("writing ", script, ": ", st.message()));
    chmod(script.c_str(), 0755);
  }
  // The environment reaches the job through sbatch (--export=ALL), never its
  // command line: values may be secret.
  std::map<std::string, std::string> env = spec.env;
  env["DISTILL_WORKER"] = options_.worker_bin;
  env["DISTILL_COMMAND"] = spec.command;
  env["DISTILL_LAUNCH"] = options_.launch;
  env["DISTILL_LOG_DIR"] = spec.work_dir + "/logs";
  env["DISTILL_HOSTFILE"] = absl::StrCat(spec.work_dir, "/", kHostfile);
  std::vector<std::string> argv = {Bin("sbatch")};
  for (std::string& a : SbatchArgs(spec, script)) argv.push_back(std::move(a));
  absl::StatusOr<CommandResult> r = RunCommand(argv, env);
  if (!r.ok()) return r.status();
  const std::string out(absl::StripAsciiWhitespace(r->output));
  int64_t job_id = 0;
  // --parsable: "ID" or "ID;CLUSTER" on the last line.
  const std::string last =
      out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
  if (r->exit_code != 0 || !absl::SimpleAtoi(last.substr(0, last.find(';')), &job_id)) {
    return absl::UnavailableError(
        absl::StrCat("sbatch failed (exit code ", r->exit_code, "): ", out));
  }
  // Note [Slurm job id file]: Poll and Terminate act only on the job id this
  // file names, so an id recorded by another launcher (a pid, after a restart
  // with --launcher changed) never reaches an unrelated Slurm job.
  absl::Status st =
      common::WriteFileAtomically(spec.work_dir + "/" + kJobIdFile, absl::StrCat(job_id, "\n"));
  if (!st.ok()) {
    RunCommand({Bin("scancel"), absl::StrCat(job_id)}).IgnoreError();
    return absl::UnavailableError(absl::StrCat("recording Slurm job ", job_id, ": ", st.message()));
  }
  return job_id;
}

std::string SlurmLauncher::DownNode(const std::string& nodes) {
  absl::StatusOr<CommandResult> r =
      RunCommand({Bin("sinfo"), "-h", "-N", "-n", nodes, "-t", "down,fail,no_respond", "-o", "%N"});
  if (!r.ok() || r->exit_code != 0) return "";
  const std::string out(absl::StripAsciiWhitespace(r->output));
  return out.substr(0, out.find('\n'));
}

LaunchStatus SlurmLauncher::Query(int64_t job_id) {
  const std::string id = absl::StrCat(job_id);
  absl::StatusOr<CommandResult> r = RunCommand({Bin("scontrol"), "show", "job", "-o", id});
  if (r.ok() && r->exit_code == 0) {
    const std::string state = ScontrolField(r->output, "JobState");
    LaunchStatus s = SlurmJobStatus(job_id, state, ScontrolField(r->output, "ExitCode"));
    cache_[job_id].slurm_state = state;
    s.queued = state == "PENDING" || state == "CONFIGURING" || state == "REQUEUED" ||
               state == "REQUEUE_HOLD" || state == "REQUEUE_FED" || state == "RESV_DEL_HOLD";
    if (state == "NODE_FAIL") s.failed_host = DownNode(ScontrolField(r->output, "NodeList"));
    return s;
  }
  if (!r.ok() || r->output.find("Invalid job id") == std::string::npos) return LaunchStatus();
  // Forgotten by slurmctld (MinJobAge): the accounting database, if any.
  r = RunCommand({Bin("sacct"), "-n", "-X", "-P", "-j", id, "-o", "State,ExitCode"});
  if (r.ok() && r->exit_code == 0) {
    std::string line(absl::StripAsciiWhitespace(r->output));
    line = line.substr(0, line.find('\n'));
    std::pair<std::string, std::string> f = absl::StrSplit(line, '|');
    if (!f.first.empty()) return SlurmJobStatus(job_id, f.first, f.second);
  }
  LaunchStatus s;
  s.state = LaunchStatus::kVanished;
  s.detail = absl::StrCat("Slurm job ", job_id, " is unknown to Slurm (scontrol, sacct)");
  return s;
}

LaunchStatus SlurmLauncher::Poll(int64_t job_id, const std::string& work_dir) {
  const absl::Time now = absl::Now();
  auto it = cache_.find(job_id);
  if (it != cache_.end() && now - it->second.at < options_.poll_interval) return it->second.status;
  if (job_id <= 0 || RecordedLaunchId(work_dir) != job_id) {  // Note [Slurm job id file]
    LaunchStatus s;
    s.state = LaunchStatus::kVanished;
    s.detail = absl::StrCat("no Slurm job ", job_id, " recorded in ", work_dir);
    return s;
  }
  LaunchStatus s = Query(job_id);
  if (s.state == LaunchStatus::kExited && s.exit_code != 0) ExplainFailure(work_dir, s);
  Cached& c = cache_[job_id];
  c.status = s;
  c.at = now;
  if (s.state != LaunchStatus::kRunning) cache_.erase(job_id);  // ended: polled no more
  return s;
}

void SlurmLauncher::SetHostDown(const std::string& host, bool down) {
  if (down) {
    down_nodes_.insert(host);
  } else {
    down_nodes_.erase(host);
  }
}

void SlurmLauncher::Terminate(int64_t job_id, const std::string& work_dir, bool force) {
  if (job_id <= 0 || RecordedLaunchId(work_dir) != job_id) return;  // Note [Slurm job id file]
  const std::string id = absl::StrCat(job_id);
  auto it = cache_.find(job_id);
  const bool pending = it != cache_.end() && it->second.slurm_state == "PENDING";
  // A pending job has nothing to checkpoint: cancel it outright.
  std::vector<std::string> argv = {Bin("scancel")};
  if (!force && !pending) argv.insert(argv.end(), {"--signal=USR1", "--full"});
  argv.push_back(id);
  RunCommand(argv).IgnoreError();  // an ended job refuses it; the next Poll sees the end
  cache_.erase(job_id);
}

}  // namespace distill::coordinator
