// MpirunLauncher with the real mpirun and a tiny shell script as the worker:
// per-rank logs, environment through -x, exit codes, graceful SIGTERM, and
// SIGKILL of ranks that ignore it.
#include "coordinator/mpirun_launcher.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/fs_util.h"

namespace distill::coordinator {
namespace {

class MpirunLauncherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/distill_launcher_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Writes an executable worker script with `body` (bash).
  std::string Script(const std::string& body) {
    const std::string path = dir_ + "/worker.sh";
    std::ofstream(path) << "#!/bin/bash\nR=$OMPI_COMM_WORLD_RANK\n" << body;
    chmod(path.c_str(), 0755);
    return path;
  }

  LaunchSpec Spec(int ranks) {
    LaunchSpec s;
    s.job_id = "jtest";
    s.attempt = 1;
    s.ranks = ranks;
    s.allocation = {{"localhost", ranks}};
    s.work_dir = dir_ + "/attempt-1";
    std::filesystem::create_directories(s.work_dir);
    s.spec_path = s.work_dir + "/spec.json";
    s.env = {{"DISTILL_JOB_ID", "jtest"}, {"DISTILL_ATTEMPT", "1"}};
    return s;
  }

  // Polls until the launch ends or `timeout` passes.
  LaunchStatus WaitExit(MpirunLauncher& l, int64_t pid, const std::string& work_dir,
                        std::chrono::seconds timeout = std::chrono::seconds(60)) {
    auto end = std::chrono::steady_clock::now() + timeout;
    LaunchStatus st;
    while (std::chrono::steady_clock::now() < end) {
      st = l.Poll(pid, work_dir);
      if (st.state != LaunchStatus::kRunning) return st;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return st;
  }

  bool WaitForFile(const std::string& path,
                   std::chrono::seconds timeout = std::chrono::seconds(60)) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      if (std::filesystem::exists(path)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  std::string dir_;
};

TEST_F(MpirunLauncherTest, RunsEveryRankWithItsOwnLogAndTheEnvironment) {
  MpirunLauncher l({"mpirun",
                    Script("echo \"rank $R job $DISTILL_JOB_ID attempt $DISTILL_ATTEMPT args $*\"\n"
                           "echo \"to stderr $R\" >&2\n"),
                    {}});
  LaunchSpec spec = Spec(2);
  auto pid = l.Launch(spec);
  ASSERT_TRUE(pid.ok()) << pid.status();
  LaunchStatus st = WaitExit(l, *pid, spec.work_dir);
  ASSERT_EQ(st.state, LaunchStatus::kExited) << st.detail;
  EXPECT_EQ(st.exit_code, 0);
  for (int r = 0; r < 2; ++r) {
    auto log = common::ReadFileToString(l.RankLogPath(spec.work_dir, r));
    ASSERT_TRUE(log.ok()) << log.status();
    EXPECT_NE(log->find("rank " + std::to_string(r) + " job jtest attempt 1 args train --spec " +
                        spec.spec_path),
              std::string::npos)
        << *log;
    EXPECT_NE(log->find("to stderr " + std::to_string(r)), std::string::npos) << *log;
  }
  auto pidfile = common::ReadFileToString(spec.work_dir + "/pid");
  ASSERT_TRUE(pidfile.ok());
  EXPECT_EQ(std::stoll(*pidfile), *pid);
  // Polling again (the process is reaped now) reads the exit code file.
  st = l.Poll(*pid, spec.work_dir);
  EXPECT_EQ(st.state, LaunchStatus::kExited);
  EXPECT_EQ(st.exit_code, 0);
}

TEST_F(MpirunLauncherTest, ReportsARankExitCode) {
  MpirunLauncher l({"mpirun", Script("if [ \"$R\" = 1 ]; then exit 17; fi\nsleep 0.2\n"), {}});
  LaunchSpec spec = Spec(2);
  auto pid = l.Launch(spec);
  ASSERT_TRUE(pid.ok()) << pid.status();
  LaunchStatus st = WaitExit(l, *pid, spec.work_dir);
  ASSERT_EQ(st.state, LaunchStatus::kExited) << st.detail;
  EXPECT_EQ(st.exit_code, 17);
  // From mpirun.log: which rank, where, how.
  EXPECT_EQ(st.failed_ranks, std::vector<int>{1});
  EXPECT_EQ(st.failed_host, "localhost");
  EXPECT_EQ(st.failed_how, "exit code 17");
  EXPECT_FALSE(st.host_lost);
}

TEST_F(MpirunLauncherTest, GracefulTerminateLetsRanksCheckpoint) {
  MpirunLauncher l({"mpirun",
                    Script("trap 'sleep 1; echo saved > \"" + dir_ +
                           "/saved.$R\"; exit 130' TERM\n"
                           "echo up > \"" +
                           dir_ +
                           "/up.$R\"\n"
                           "while true; do sleep 0.1; done\n"),
                    {}});
  LaunchSpec spec = Spec(2);
  auto pid = l.Launch(spec);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_TRUE(WaitForFile(dir_ + "/up.0") && WaitForFile(dir_ + "/up.1"));
  l.Terminate(*pid, spec.work_dir, /*force=*/false);
  LaunchStatus st = WaitExit(l, *pid, spec.work_dir);
  ASSERT_EQ(st.state, LaunchStatus::kExited) << st.detail;
  EXPECT_EQ(st.exit_code, 130);
  // Both ranks finished their handler: mpirun did not kill them early.
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/saved.0"));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/saved.1"));
}

TEST_F(MpirunLauncherTest, ForceKillsRanksThatIgnoreSigterm) {
  MpirunLauncher l({"mpirun",
                    Script("trap '' TERM\necho $$ > \"" + dir_ +
                           "/rank.$R.pid\"\n"
                           "while true; do sleep 0.1; done\n"),
                    {}});
  LaunchSpec spec = Spec(2);
  auto pid = l.Launch(spec);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_TRUE(WaitForFile(dir_ + "/rank.0.pid") && WaitForFile(dir_ + "/rank.1.pid"));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  l.Terminate(*pid, spec.work_dir, /*force=*/false);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(l.Poll(*pid, spec.work_dir).state, LaunchStatus::kRunning);  // ignored
  l.Terminate(*pid, spec.work_dir, /*force=*/true);
  LaunchStatus st = WaitExit(l, *pid, spec.work_dir, std::chrono::seconds(10));
  ASSERT_EQ(st.state, LaunchStatus::kExited) << st.detail;
  EXPECT_NE(st.exit_code, 0);
  for (int r = 0; r < 2; ++r) {
    auto text = common::ReadFileToString(dir_ + "/rank." + std::to_string(r) + ".pid");
    ASSERT_TRUE(text.ok());
    const pid_t rank_pid = std::stoi(*text);
    bool gone = false;
    for (int i = 0; i < 100 && !gone; ++i) {
      gone = kill(rank_pid, 0) != 0;
      if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_TRUE(gone) << "rank " << r << " (pid " << rank_pid << ") survived SIGKILL";
  }
}

TEST_F(MpirunLauncherTest, CommandPassesEnvByNameAndUsesAHostfileForRemoteHosts) {
  MpirunLauncher l({"mpirun", "/opt/distill-worker", {}});
  LaunchSpec spec = Spec(1);
  spec.env["DISTILL_AUTH_TOKEN"] = "s3cret";
  const std::string local = l.Command(spec);
  EXPECT_EQ(local.find("--hostfile"), std::string::npos) << local;
  EXPECT_NE(local.find("'-x' 'DISTILL_AUTH_TOKEN'"), std::string::npos) << local;
  EXPECT_EQ(local.find("s3cret"), std::string::npos) << "a secret on the command line: " << local;
  EXPECT_NE(local.find("'/opt/distill-worker' 'train' '--spec' '" + spec.spec_path + "'"),
            std::string::npos)
      << local;
  spec.ranks = 3;
  spec.allocation = {{"node1", 2}, {"node2", 1}};
  const std::string remote = l.Command(spec);
  EXPECT_NE(remote.find("'--hostfile' '" + spec.work_dir + "/hostfile'"), std::string::npos)
      << remote;
  EXPECT_NE(remote.find("'-np' '3'"), std::string::npos) << remote;
  // Note [Rank placement]: ranks fill the hostfile's hosts in order.
  EXPECT_NE(remote.find("'--map-by' 'slot'"), std::string::npos) << remote;
}

// The ranks may run on every CPU the coordinator may: mpirun's default
// binding put every job's rank 0 on core 0, so concurrent jobs shared a core
// and a rank's threads shared one.
TEST_F(MpirunLauncherTest, RanksAreNotBoundToACore) {
  const std::string out = dir_ + "/cpus";
  MpirunLauncher l(
      {"mpirun", Script("grep Cpus_allowed_list /proc/self/status > " + out + ".$R\n"), {}});
  LaunchSpec spec = Spec(2);
  auto pid = l.Launch(spec);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_EQ(WaitExit(l, *pid, spec.work_dir).state, LaunchStatus::kExited);
  auto mine = common::ReadFileToString("/proc/self/status");
  ASSERT_TRUE(mine.ok());
  const size_t at = mine->find("Cpus_allowed_list");
  ASSERT_NE(at, std::string::npos);
  const std::string expected = mine->substr(at, mine->find('\n', at) - at + 1);
  for (int r = 0; r < 2; ++r) {
    auto cpus = common::ReadFileToString(out + "." + std::to_string(r));
    ASSERT_TRUE(cpus.ok()) << cpus.status();
    EXPECT_EQ(*cpus, expected) << "rank " << r;
  }
}

TEST_F(MpirunLauncherTest, CaptureJobsRunTheCaptureCommand) {
  MpirunLauncher l({"mpirun", "/opt/distill-worker", {}});
  LaunchSpec spec = Spec(1);
  spec.command = "capture";
  const std::string cmd = l.Command(spec);
  EXPECT_NE(cmd.find("'/opt/distill-worker' 'capture' '--spec' '" + spec.spec_path + "'"),
            std::string::npos)
      << cmd;
}

TEST_F(MpirunLauncherTest, TerminateRightAfterLaunchStopsIt) {
  // Signalled between fork and exec, and before mpirun exists.
  for (bool force : {true, false}) {
    MpirunLauncher l({"mpirun", Script("while true; do sleep 0.1; done\n"), {}});
    LaunchSpec spec = Spec(1);
    auto pid = l.Launch(spec);
    ASSERT_TRUE(pid.ok()) << pid.status();
    l.Terminate(*pid, spec.work_dir, force);
    LaunchStatus st = WaitExit(l, *pid, spec.work_dir, std::chrono::seconds(20));
    EXPECT_EQ(st.state, LaunchStatus::kExited) << "force " << force << ": " << st.detail;
    EXPECT_NE(st.exit_code, 0);
    std::filesystem::remove_all(spec.work_dir);
  }
}

TEST_F(MpirunLauncherTest, PollOfAForeignPidReadsTheExitCodeFile) {
  MpirunLauncher l({"mpirun", "true", {}});
  // A pid that is certainly gone: a reaped child of ours.
  pid_t child = fork();
  if (child == 0) _exit(0);
  int ws;
  waitpid(child, &ws, 0);
  const std::string work = dir_ + "/adopted";
  std::filesystem::create_directories(work);
  EXPECT_EQ(l.Poll(child, work).state, LaunchStatus::kVanished);
  ASSERT_TRUE(common::WriteFileAtomically(work + "/exit_code", "3\n").ok());
  LaunchStatus st = l.Poll(child, work);
  EXPECT_EQ(st.state, LaunchStatus::kExited);
  EXPECT_EQ(st.exit_code, 3);
  // A live process whose command line does not mention the work dir is not
  // taken for the launch (pid reuse after a restart).
  EXPECT_NE(l.Poll(getpid(), work).state, LaunchStatus::kRunning);
}

// What a launch over ssh leaves when a host dies (the files' contract; the
// real thing runs in tests/integration/multihost_test.sh): the host and the
// ranks it ran (Note [Rank placement]).
TEST_F(MpirunLauncherTest, PollNamesALostHostAndItsRanks) {
  MpirunLauncher l({"mpirun", "true", {}});
  pid_t child = fork();
  if (child == 0) _exit(0);
  int ws;
  waitpid(child, &ws, 0);
  const std::string work = dir_ + "/lost";
  std::filesystem::create_directories(work);
  ASSERT_TRUE(
      common::WriteFileAtomically(work + "/hostfile", "10.77.8.2 slots=2\n10.77.8.3 slots=2\n")
          .ok());
  ASSERT_TRUE(common::WriteFileAtomically(work + "/mpirun.log",
                                          "ORTE has lost communication with a remote daemon.\n\n"
                                          "  HNP daemon   : [[5913,0],0] on node vm\n"
                                          "  Remote daemon: [[5913,0],2] on node 10.77.8.3\n")
                  .ok());
  ASSERT_TRUE(common::WriteFileAtomically(work + "/exit_code", "205\n").ok());
  LaunchStatus st = l.Poll(child, work);
  EXPECT_EQ(st.state, LaunchStatus::kExited);
  EXPECT_TRUE(st.host_lost);
  EXPECT_EQ(st.failed_host, "10.77.8.3");
  EXPECT_EQ(st.failed_ranks, (std::vector<int>{2, 3}));
  EXPECT_EQ(st.failed_how, "lost contact with its daemon");
}

}  // namespace
}  // namespace distill::coordinator
