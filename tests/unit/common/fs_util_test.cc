#include "common/fs_util.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

namespace distill::common {
namespace {

namespace fs = std::filesystem;

class FsUtilTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/fs_util_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    t_ = tmpl;
  }
  void TearDown() override { fs::remove_all(t_); }
  // The entries of `dir`, names only.
  std::set<std::string> Entries(const std::string& dir) {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
    return out;
  }
  std::string t_;
};

TEST_F(FsUtilTest, AnAtomicWriteReplacesTheFileAndLeavesNoTempFile) {
  ASSERT_TRUE(WriteFileAtomically(t_ + "/state.json", "{\"a\": 1}").ok());
  ASSERT_TRUE(WriteFileAtomically(t_ + "/state.json", "{}").ok());
  EXPECT_EQ(*ReadFileToString(t_ + "/state.json"), "{}");
  EXPECT_EQ(Entries(t_), std::set<std::string>{"state.json"});
  absl::Status st = WriteFileAtomically(t_ + "/missing/state.json", "{}");
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(st.message().find(t_ + "/missing"), std::string::npos) << st;
}

TEST_F(FsUtilTest, AStagedDirectoryReplacesTheOldOneWhole) {
  fs::create_directories(t_ + "/run/model");
  std::ofstream(t_ + "/run/model/old.bin") << "old";
  // What an interrupted run of this pid left where the staging goes.
  const std::string stale = t_ + "/run/model.tmp." + std::to_string(::getpid());
  fs::create_directories(stale);
  std::ofstream(stale + "/half.bin") << "half";
  absl::StatusOr<std::string> staging = MakeStagingDir(t_ + "/run/model/");
  ASSERT_TRUE(staging.ok()) << staging.status();
  EXPECT_TRUE(fs::is_directory(*staging));
  EXPECT_TRUE(fs::is_empty(*staging));
  std::ofstream(*staging + "/new.bin") << "new";
  ASSERT_TRUE(CommitStagingDir(*staging, t_ + "/run/model").ok());
  EXPECT_EQ(Entries(t_ + "/run/model"), std::set<std::string>{"new.bin"});
  // Neither the staging nor the old directory is left beside it.
  EXPECT_EQ(Entries(t_ + "/run"), std::set<std::string>{"model"});
  // A first commit (nothing to move aside), parents created by the staging.
  staging = MakeStagingDir(t_ + "/a/b/c");
  ASSERT_TRUE(staging.ok()) << staging.status();
  ASSERT_TRUE(CommitStagingDir(*staging, t_ + "/a/b/c").ok());
  EXPECT_TRUE(fs::is_directory(t_ + "/a/b/c"));
}

}  // namespace
}  // namespace distill::common
