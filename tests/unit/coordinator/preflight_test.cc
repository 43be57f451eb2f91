// Note [Preflight]: real binaries and scripts, run as the coordinator would.
#include "coordinator/preflight.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

namespace distill::coordinator {
namespace {

namespace fs = std::filesystem;

class PreflightTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/preflight_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Script(const std::string& name, const std::string& body, mode_t mode = 0755) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
    EXPECT_EQ(chmod(path.c_str(), mode), 0);
    return path;
  }
  std::string dir_;
};

TEST_F(PreflightTest, ABinaryThatAnswersVersionPasses) {
  EXPECT_TRUE(CheckRunnable("the worker", Script("w", "echo w 1.0"), "hint").ok());
  EXPECT_TRUE(CheckRunnable("true", "true", "hint").ok());  // coreutils', found on PATH
}

TEST_F(PreflightTest, EachFailureNamesWhatAndWhy) {
  absl::Status st = CheckRunnable("the worker", dir_ + "/nope", "set --worker-bin");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(st.message(),
            "cannot run the worker '" + dir_ + "/nope': no such file (set --worker-bin)");
  st = CheckRunnable("the worker", Script("noexec", "true", 0644), "h");
  EXPECT_NE(st.message().find("not an executable file"), std::string::npos) << st;
  st = CheckRunnable("mpirun", "no-such-mpirun-anywhere", "install Open MPI");
  EXPECT_EQ(st.message(),
            "cannot run mpirun 'no-such-mpirun-anywhere': not found on PATH (install Open MPI)");
  st = CheckRunnable(
      "the worker", Script("broken", "echo 'libtorch.so: cannot open shared object' >&2; exit 127"),
      "h");
  EXPECT_NE(st.message().find("libtorch.so: cannot open shared object"), std::string::npos) << st;
  st = CheckRunnable("the worker", Script("fails", "echo 'unknown option' >&2; exit 2"), "h");
  EXPECT_NE(st.message().find("--version' exited 2: unknown option"), std::string::npos) << st;
}

}  // namespace
}  // namespace distill::coordinator
