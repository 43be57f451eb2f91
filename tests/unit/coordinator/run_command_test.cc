// RunCommand on real processes: output, and a command that does not end.
#include "coordinator/run_command.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

namespace distill::coordinator {
namespace {

class RunCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/run_command_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Script(const std::string& name, const std::string& body) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
    EXPECT_EQ(chmod(path.c_str(), 0755), 0);
    return path;
  }
  std::string dir_;
};

// A wrapper that ignores --version and runs on is killed after the timeout,
// not waited for forever.
TEST_F(RunCommandTest, ACommandThatDoesNotEndIsKilled) {
  absl::StatusOr<CommandResult> r =
      RunCommand({Script("hangs", "exec sleep 600")}, {}, absl::Milliseconds(300));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(r.status().message().find("still running after 300ms, killed"), std::string::npos)
      << r.status();
  r = RunCommand({Script("quick", "echo hi")}, {}, absl::Seconds(30));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->output, "hi\n");
}

}  // namespace
}  // namespace distill::coordinator
