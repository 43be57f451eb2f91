// SlurmLauncher's parts that need no cluster: Slurm job states onto launch
// statuses, `scontrol show job -o` fields, the sbatch command line, the
// recorded job id, a launch without sbatch. Submitting, polling and
// cancelling against a real slurmctld + slurmd: tests/integration/slurm_test.sh.
#include "coordinator/slurm_launcher.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

#include "common/fs_util.h"

namespace distill::coordinator {
namespace {

// A line as Slurm 22.05's `scontrol show job -o` prints it (shortened).
constexpr char kScontrolLine[] =
    "JobId=7 JobName=distill-j1-2 UserId=root(0) GroupId=root(0) Priority=4294901759 "
    "JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 "
    "BatchFlag=1 ExitCode=1:0 RunTime=00:00:04 NodeList=vm NumTasks=2 "
    "StdOut=/tmp/x/slurm.out\n";

TEST(SlurmLauncherTest, ScontrolFieldFindsKeys) {
  EXPECT_EQ(ScontrolField(kScontrolLine, "JobState"), "FAILED");
  EXPECT_EQ(ScontrolField(kScontrolLine, "ExitCode"), "1:0");
  EXPECT_EQ(ScontrolField(kScontrolLine, "StdOut"), "/tmp/x/slurm.out");
  EXPECT_EQ(ScontrolField(kScontrolLine, "JobId"), "7");
  EXPECT_EQ(ScontrolField(kScontrolLine, "Id"), "");  // whole keys only
  EXPECT_EQ(ScontrolField(kScontrolLine, "Missing"), "");
}

TEST(SlurmLauncherTest, UnfinishedStatesAreRunning) {
  for (const char* state : {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED"}) {
    EXPECT_EQ(SlurmJobStatus(7, state, "0:0").state, LaunchStatus::kRunning) << state;
  }
}

TEST(SlurmLauncherTest, CompletedIsExitZero) {
  LaunchStatus s = SlurmJobStatus(7, "COMPLETED", "0:0");
  EXPECT_EQ(s.state, LaunchStatus::kExited);
  EXPECT_EQ(s.exit_code, 0);
  EXPECT_EQ(s.detail, "Slurm job 7 COMPLETED (exit code 0:0)");
}

TEST(SlurmLauncherTest, FailuresHaveNonZeroCodesNamingTheState) {
  struct Case {
    const char* state;
    const char* exit_code;
    int want;
  };
  for (const Case& c :
       {Case{"FAILED", "1:0", 1}, Case{"FAILED", "137:0", 137}, Case{"CANCELLED", "0:15", 128 + 15},
        Case{"CANCELLED by 0", "0:0", 1}, Case{"TIMEOUT", "0:0", 1}, Case{"NODE_FAIL", "0:0", 1},
        Case{"OUT_OF_MEMORY", "0:125", 128 + 125}, Case{"PREEMPTED", "0:0", 1},
        Case{"COMPLETED", "3:0", 3}}) {
    LaunchStatus s = SlurmJobStatus(7, c.state, c.exit_code);
    EXPECT_EQ(s.state, LaunchStatus::kExited) << c.state;
    EXPECT_EQ(s.exit_code, c.want) << c.state << " " << c.exit_code;
    const std::string word = std::string(c.state).substr(0, std::string(c.state).find(' '));
    EXPECT_NE(s.detail.find("Slurm job 7 " + word), std::string::npos) << s.detail;
  }
}

TEST(SlurmLauncherTest, SbatchArgsCarryResourcesAndFlags) {
  SlurmOptions o;
  o.partition = "gpu";
  o.account = "ml";
  o.time_limit = "01:00:00";
  o.sbatch_args = {"--gpus-per-task=1"};
  SlurmLauncher launcher(o);
  LaunchSpec spec;
  spec.job_id = "j9";
  spec.attempt = 2;
  spec.ranks = 3;
  spec.work_dir = "/state/jobs/j9/attempt-2";
  spec.spec_path = "/state/jobs/j9/attempt-2/spec.json";
  spec.env = {{"DISTILL_AUTH_TOKEN", "secret"}};
  std::vector<std::string> want = {"--parsable",
                                   "--job-name=distill-j9-2",
                                   "--ntasks=3",
                                   "--chdir=/state/jobs/j9/attempt-2",
                                   "--output=/state/jobs/j9/attempt-2/slurm.out",
                                   "--export=ALL",
                                   "--no-requeue",
                                   "--partition=gpu",
                                   "--account=ml",
                                   "--time=01:00:00",
                                   "--gpus-per-task=1",
                                   "/s/distill.sbatch",
                                   "/state/jobs/j9/attempt-2/spec.json"};
  EXPECT_EQ(launcher.SbatchArgs(spec, "/s/distill.sbatch"), want);  // no secret on it
}

TEST(SlurmLauncherTest, NodesMarkedDownAreExcludedUntilMarkedUp) {
  SlurmLauncher launcher{SlurmOptions()};
  LaunchSpec spec;
  spec.work_dir = "/w";
  spec.spec_path = "/w/spec.json";
  auto exclude = [&]() -> std::string {
    for (const std::string& a : launcher.SbatchArgs(spec, "/s")) {
      if (a.rfind("--exclude=", 0) == 0) return a;
    }
    return "";
  };
  EXPECT_EQ(exclude(), "");
  launcher.SetHostDown("n3", true);
  launcher.SetHostDown("n1", true);
  EXPECT_EQ(exclude(), "--exclude=n1,n3");
  std::vector<std::string> args = launcher.SbatchArgs(spec, "/s");
  EXPECT_EQ(args[args.size() - 2], "/s");  // the script and spec stay last
  launcher.SetHostDown("n1", false);
  EXPECT_EQ(exclude(), "--exclude=n3");
  launcher.SetHostDown("n3", false);
  EXPECT_EQ(exclude(), "");
}

TEST(SlurmLauncherTest, RecordedLaunchIdReadsTheJobIdFile) {
  char tmpl[] = "/tmp/distill_slurm_launcher_test.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  SlurmLauncher launcher({});
  EXPECT_EQ(launcher.RecordedLaunchId(dir), 0);
  ASSERT_TRUE(common::WriteFileAtomically(dir + "/slurm_job_id", "4242\n").ok());
  EXPECT_EQ(launcher.RecordedLaunchId(dir), 4242);
  EXPECT_EQ(launcher.RankLogPath(dir, 1), dir + "/logs/1/rank.1/stdout");
  std::filesystem::remove_all(dir);
}

TEST(SlurmLauncherTest, LaunchWithoutSbatchIsUnavailable) {
  char tmpl[] = "/tmp/distill_slurm_launcher_test.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  SlurmOptions o;
  o.bin_dir = std::string(tmpl) + "/no-slurm-here";
  SlurmLauncher launcher(o);
  LaunchSpec spec;
  spec.job_id = "j1";
  spec.work_dir = tmpl;
  spec.spec_path = std::string(tmpl) + "/spec.json";
  absl::StatusOr<int64_t> id = launcher.Launch(spec);
  EXPECT_EQ(id.status().code(), absl::StatusCode::kUnavailable) << id.status();
  EXPECT_NE(id.status().message().find("no-slurm-here/sbatch"), std::string::npos) << id.status();
  EXPECT_TRUE(std::filesystem::exists(std::string(tmpl) + "/distill.sbatch"));
  std::filesystem::remove_all(tmpl);
}

TEST(SlurmLauncherTest, PollWithoutJobIdIsVanished) {
  SlurmLauncher launcher({});
  LaunchStatus s = launcher.Poll(0, "/nowhere");
  EXPECT_EQ(s.state, LaunchStatus::kVanished);
}

// Note [Slurm job id file]: an id the work dir does not name (another
// launcher's pid) is never looked up in Slurm, whose job of that id is
// someone else's.
TEST(SlurmLauncherTest, PollOfAnIdTheWorkDirDoesNotNameIsVanished) {
  char tmpl[] = "/tmp/distill_slurm_launcher_test.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  SlurmOptions o;
  o.bin_dir = dir + "/no-slurm-here";  // a lookup would fail differently (running)
  SlurmLauncher launcher(o);
  EXPECT_EQ(launcher.Poll(12345, dir).state, LaunchStatus::kVanished);
  ASSERT_TRUE(common::WriteFileAtomically(dir + "/slurm_job_id", "777\n").ok());
  LaunchStatus s = launcher.Poll(12345, dir);
  EXPECT_EQ(s.state, LaunchStatus::kVanished);
  EXPECT_NE(s.detail.find("no Slurm job 12345 recorded in"), std::string::npos) << s.detail;
  EXPECT_EQ(launcher.Poll(777, dir).state, LaunchStatus::kRunning);  // Slurm unreachable: ask again
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace distill::coordinator
