#include "coordinator/mpirun_launcher.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/fs_util.h"
#include "coordinator/mpirun_failure.h"

extern char** environ;

namespace distill::coordinator {
namespace {

bool IsLocal(const std::string& host) { return host == "localhost" || host == "127.0.0.1"; }

// pid -> parent pid of every process, from /proc.
std::map<int64_t, int64_t> ParentMap() {
  std::map<int64_t, int64_t> parents;
  DIR* d = opendir("/proc");
  if (!d) return parents;
  while (dirent* e = readdir(d)) {
    int64_t pid;
    if (!absl::SimpleAtoi(e->d_name, &pid)) continue;
    std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 1));
    std::string state;
    int64_t ppid = 0;
    rest >> state >> ppid;
    parents[pid] = ppid;
  }
  closedir(d);
  return parents;
}

// Descendants of `root` with their depth below it (children: 1).
std::vector<std::pair<int64_t, int>> Descendants(int64_t root) {
  std::map<int64_t, int64_t> parents = ParentMap();
  std::multimap<int64_t, int64_t> children;
  for (const auto& [pid, ppid] : parents) children.emplace(ppid, pid);
  std::vector<std::pair<int64_t, int>> out;
  std::vector<std::pair<int64_t, int>> stack = {{root, 0}};
  while (!stack.empty()) {
    auto [pid, depth] = stack.back();
    stack.pop_back();
    auto range = children.equal_range(pid);
    for (auto it = range.first; it != range.second; ++it) {
      out.emplace_back(it->second, depth + 1);
      stack.emplace_back(it->second, depth + 1);
    }
  }
  return out;
}

// Whether `pid` is a live (non-zombie) process whose command line mentions
// `needle` (guards against a recycled pid after a restart).
bool AliveWith(int64_t pid, const std::string& needle) {
  std::ifstream stat_in(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat_in) return false;
  std::string stat((std::istreambuf_iterator<char>(stat_in)), std::istreambuf_iterator<char>());
  size_t close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] == 'Z')
    return false;
  std::ifstream cmd_in(absl::StrCat("/proc/", pid, "/cmdline"));
  std::string cmd((std::istreambuf_iterator<char>(cmd_in)), std::istreambuf_iterator<char>());
  return cmd.find(needle) != std::string::npos;
}

// Whether `pid` is a child of this process that has not exited (without
// reaping it: Poll must still see its status).
bool IsLiveChild(int64_t pid) {
  siginfo_t info = {};
  if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) return false;
  return info.si_pid == 0;
}

// The attempt's allocation: its hostfile's hosts in order, or this host
// alone when it has none (a local launch).
Allocation AttemptAllocation(const std::string& work_dir) {
  Allocation a;
  absl::StatusOr<std::string> text = common::ReadFileToString(work_dir + "/hostfile");
  if (!text.ok()) return {{"localhost", 1 << 20}};  // every rank on this host
  absl::StatusOr<std::vector<Host>> hosts = ParseHostsFile(*text, "hostfile");
  if (!hosts.ok()) return a;
  for (const Host& h : *hosts) a.push_back({h.name, h.slots});
  return a;
}

// Fills s's failure fields from what mpirun.log says about a failed launch.
void ExplainFailure(const std::string& work_dir, LaunchStatus& s) {
  absl::StatusOr<std::string> log = common::ReadFileToString(work_dir + "/mpirun.log");
  if (log.ok()) ExplainMpirunFailure(*log, AttemptAllocation(work_dir), &s);
}

}  // namespace

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string MpirunLauncher::RankLogPath(const std::string& work_dir, int rank) const {
  return absl::StrCat(work_dir, "/logs/1/rank.", rank, "/stdout");
}

int64_t MpirunLauncher::RecordedLaunchId(const std::string& work_dir) const {
  absl::StatusOr<std::string> text = common::ReadFileToString(work_dir + "/pid");
  int64_t pid = 0;
  if (!text.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &pid)) return 0;
  return pid;
}

std::string MpirunLauncher::Command(const LaunchSpec& spec) const {
  const std::string& d = spec.work_dir;
  // --bind-to none: Open MPI binds each job's ranks from core 0 up, so two
  // jobs on one host (--slots 2) shared one core and a rank's threads
  // (train.threads) shared its single core; the OS places them instead.
  std::vector<std::string> argv = {options_.mpirun,
                                   "--allow-run-as-root",
                                   "--oversubscribe",
                                   "--bind-to",
                                   "none",
                                   "-np",
                                   absl::StrCat(spec.ranks),
                                   "--output-filename",
                                   d + "/logs",
                                   "--merge-stderr-to-stdout"};
  bool remote = false;
  for (const HostSlots& hs : spec.allocation) remote = remote || !IsLocal(hs.host);
  // Note [Rank placement]: ranks fill the hostfile's hosts in its order.
  if (remote) argv.insert(argv.end(), {"--hostfile", d + "/hostfile", "--map-by", "slot"});
  for (const auto& [name, value] : spec.env) argv.insert(argv.end(), {"-x", name});
  argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());
  argv.insert(argv.end(), {options_.worker_bin, spec.command, "--spec", spec.spec_path});
  std::vector<std::string> quoted;
  for (const std::string& a : argv) quoted.push_back(ShellQuote(a));
  const std::string q = ShellQuote(d);
  return absl::StrCat("echo $$ > ", q, "/pid; ", absl::StrJoin(quoted, " "), " > /dev/null 2> ", q,
                      "/mpirun.log < /dev/null; echo $? > ", q, "/exit_code.tmp && mv ", q,
                      "/exit_code.tmp ", q, "/exit_code");
}

absl::StatusOr<int64_t> MpirunLauncher::Launch(const LaunchSpec& spec) {
  bool remote = false;
  std::string hostfile;
  for (const HostSlots& hs : spec.allocation) {
    remote = remote || !IsLocal(hs.host);
    absl::StrAppend(&hostfile, hs.host, " slots=", hs.slots, "\n");
  }
  if (remote) {
    absl::Status st = common::WriteFileAtomically(spec.work_dir + "/hostfile", hostfile);
    if (!st.ok())
      return absl::UnavailableError(absl::StrCat("writing the hostfile: ", st.message()));
  }
  // Everything the child needs is built before fork (only async-signal-safe
  // calls after it).
  const std::string command = Command(spec);
  const std::string out_path = spec.work_dir + "/launcher.log";
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    std::string name = kv.substr(0, kv.find('='));
    if (!spec.env.count(name)) env_strings.push_back(std::move(kv));
  }
  for (const auto& [name, value] : spec.env) env_strings.push_back(absl::StrCat(name, "=", value));
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};

  pid_t pid = fork();
  if (pid < 0) return absl::UnavailableError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    setsid();
    // The coordinator blocks SIGTERM/SIGINT in its threads; the job must not.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    int in = open("/dev/null", O_RDONLY);
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in >= 0) dup2(in, 0);
    if (out >= 0) {
      dup2(out, 1);
      dup2(out, 2);
    }
    for (int fd = 3; fd < 1024; ++fd) close(fd);
    execve(argv[0], const_cast<char* const*>(argv), envp.data());
    _exit(127);
  }
  return static_cast<int64_t>(pid);
}

LaunchStatus MpirunLauncher::Poll(int64_t pid, const std::string& work_dir) {
  LaunchStatus s;
  if (pid <= 0) {
    // waitpid(0) would reap any child: never poll without a pid.
    s.state = LaunchStatus::kVanished;
    s.detail = "no launch process recorded";
    return s;
  }
  int wstatus = 0;
  pid_t r = waitpid(static_cast<pid_t>(pid), &wstatus, WNOHANG);
  if (r == 0) return s;  // our child, running
  bool reaped = r == static_cast<pid_t>(pid);
  if (!reaped && AliveWith(pid, work_dir)) return s;  // adopted, running
  absl::StatusOr<std::string> text = common::ReadFileToString(work_dir + "/exit_code");
  int code = 0;
  if (text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &code)) {
    s.state = LaunchStatus::kExited;
    s.exit_code = code;
    s.detail = absl::StrCat("mpirun exit code ", code);
    if (code != 0) ExplainFailure(work_dir, s);
    return s;
  }
  if (reaped && WIFSIGNALED(wstatus)) {
    s.state = LaunchStatus::kExited;
    s.exit_code = 128 + WTERMSIG(wstatus);
    s.detail = absl::StrCat("launch killed by signal ", WTERMSIG(wstatus));
    return s;
  }
  if (reaped && WIFEXITED(wstatus) && WEXITSTATUS(wstatus) != 0) {
    s.state = LaunchStatus::kExited;
    s.exit_code = WEXITSTATUS(wstatus);
    s.detail =
        absl::StrCat("launch shell exit code ", s.exit_code, " (see ", work_dir, "/launcher.log)");
    return s;
  }
  s.state = LaunchStatus::kVanished;
  s.detail = "the job's processes are gone and left no exit code";
  return s;
}

void MpirunLauncher::Terminate(int64_t pid, const std::string& work_dir, bool force) {
  if (pid <= 0) return;
  // Gone, a zombie, or a recycled pid: nothing of ours to signal. (A child
  // of ours may not have exec'd yet, so its command line proves nothing.)
  if (!IsLiveChild(pid) && !AliveWith(pid, work_dir)) return;
  // The tree: sh (pid) -> mpirun (depth 1) -> ranks (depth 2) -> ...
  // Ranks run in process groups of their own (Open MPI), so they are
  // signalled one by one; mpirun would SIGKILL them a second after a
  // SIGTERM of its own, too soon for a checkpoint.
  std::vector<std::pair<int64_t, int>> tree = Descendants(pid);
  bool any_rank = false;
  for (const auto& [p, depth] : tree) {
    if (depth >= 2) {
      kill(static_cast<pid_t>(p), force ? SIGKILL : SIGTERM);
      any_rank = true;
    }
  }
  if (force) {
    for (const auto& [p, depth] : tree) kill(static_cast<pid_t>(p), SIGKILL);
    kill(-static_cast<pid_t>(pid), SIGKILL);
    kill(static_cast<pid_t>(pid), SIGKILL);  // before its setsid() the group does not exist yet
  } else if (!any_rank) {
    // No rank started yet (or remote ranks only): let mpirun stop the job,
    // or stop the launch shell itself before it has started mpirun.
    bool any_mpirun = false;
    for (const auto& [p, depth] : tree) {
      if (depth == 1) {
        kill(static_cast<pid_t>(p), SIGTERM);
        any_mpirun = true;
      }
    }
    if (!any_mpirun) kill(static_cast<pid_t>(pid), SIGTERM);
  }
}

}  // namespace distill::coordinator
