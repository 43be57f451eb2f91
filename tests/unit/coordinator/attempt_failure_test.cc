// Note [Failure classes] and Note [Unnamed rank failure]: the error line of
// real rank logs (files), and which failures a retry would repeat.
#include "coordinator/attempt_failure.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace distill::coordinator {
namespace {

namespace fs = std::filesystem;

class AttemptFailureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/attempt_failure_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Log(int rank) const { return dir_ + "/rank." + std::to_string(rank); }
  void Write(int rank, const std::string& text) { std::ofstream(Log(rank)) << text; }

  std::string dir_;
};

TEST_F(AttemptFailureTest, TheLastErrorLineElseTheLastLine) {
  Write(0,
        "step 1/6 | loss 5.5\nerror: an old one\nstep 2/6\n"
        "distill-worker train: error: /d/missing.json: cannot open: No such file or directory\n\n");
  EXPECT_EQ(LastErrorLine(Log(0)),
            "distill-worker train: error: /d/missing.json: cannot open: No such file or directory");
  Write(1, "step 1/6\nSegmentation fault (core dumped)\n");
  EXPECT_EQ(LastErrorLine(Log(1)), "Segmentation fault (core dumped)");
  EXPECT_EQ(LastErrorLine(dir_ + "/none"), "");
  Write(2, std::string(100000, 'x') + "\nERROR " + std::string(1000, 'y') + "\n");
  EXPECT_EQ(LastErrorLine(Log(2)).size(), 503u);  // cut to 500 bytes and "..."
}

TEST_F(AttemptFailureTest, TheNamedRanksLineElseTheFirstRankThatSaysError) {
  Write(0, "step 3/6\n");
  Write(1, "distill-worker train: error: disk full\n");
  Write(2, "error: later rank\n");
  auto log_of = [&](int r) { return Log(r); };
  LaunchStatus named;
  named.failed_ranks = {2};
  int rank = 0;
  EXPECT_EQ(AttemptErrorLine(named, 3, log_of, &rank), "error: later rank");
  EXPECT_EQ(rank, 2);
  LaunchStatus unnamed;  // Note [Unnamed rank failure]
  EXPECT_EQ(AttemptErrorLine(unnamed, 3, log_of, &rank), "distill-worker train: error: disk full");
  EXPECT_EQ(rank, 1);
  LaunchStatus lost;
  lost.host_lost = true;
  lost.failed_ranks = {1};
  EXPECT_EQ(AttemptErrorLine(lost, 3, log_of, &rank), "");
  EXPECT_EQ(rank, -1);
}

TEST_F(AttemptFailureTest, DeterministicCauses) {
  LaunchStatus bad_input;
  bad_input.failed_ranks = {0};
  bad_input.failed_exit_code = 65;
  EXPECT_NE(DeterministicCause(bad_input, "", {}, std::nullopt), "");
  LaunchStatus single;  // no rank named: mpirun's own exit code
  single.exit_code = 65;
  EXPECT_NE(DeterministicCause(single, "", {}, std::nullopt), "");

  LaunchStatus crash;
  crash.failed_ranks = {1};
  crash.failed_exit_code = 1;
  EXPECT_EQ(DeterministicCause(crash, "error: peer lost", {5, "1: exit code 1"}, std::nullopt), "");
  EXPECT_NE(DeterministicCause(crash, "write failed: No space left on device", {}, std::nullopt),
            "");
  // The same failure at the same step as the attempt before: a replay.
  const FailureMark mark{5, "1: exited on signal 11 (Segmentation fault)"};
  EXPECT_EQ(DeterministicCause(crash, "", mark, FailureMark{5, mark.how}),
            "it failed the same way (1: exited on signal 11 (Segmentation fault)) at step 5 in "
            "the attempt before");
  EXPECT_EQ(DeterministicCause(crash, "", mark, FailureMark{4, mark.how}), "");
  EXPECT_EQ(DeterministicCause(crash, "", mark, FailureMark{5, "0: exit code 1"}), "");
  EXPECT_EQ(DeterministicCause(crash, "", FailureMark{-1, mark.how}, FailureMark{-1, mark.how}),
            "");
}

}  // namespace
}  // namespace distill::coordinator
