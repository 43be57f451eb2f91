// Note [Confinement at use]: real directories and symlinks. ConfineTo is once
// per process, so one test holds every case (ctest runs each test in a
// process of its own).
#include "common/confine.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/fs_util.h"

namespace distill::common {
namespace {

namespace fs = std::filesystem;

absl::Status Open(const std::string& path, int flags, Access access) {
  absl::StatusOr<int> fd = OpenConfined(path, flags, access);
  if (fd.ok()) ::close(*fd);
  return fd.status();
}

TEST(ConfineTest, EveryOpenResolvesBeneathTheRoots) {
  char tmpl[] = "/tmp/confine_test_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string t = tmpl;
  for (const char* d : {"/data/real", "/out", "/outside"}) fs::create_directories(t + d);
  std::ofstream(t + "/data/real/train.bin") << "x";
  std::ofstream(t + "/outside/secret") << "s";
  fs::create_directory_symlink("real", t + "/data/inside");          // stays beneath
  fs::create_directory_symlink("../outside", t + "/data/escape");    // leaves the root
  fs::create_directory_symlink(t + "/outside", t + "/out/absolute");  // absolute: refused

  EXPECT_TRUE(Open(t + "/outside/secret", O_RDONLY, Access::kRead).ok());  // not confined yet
  ASSERT_TRUE(ConfineTo(Roots{t + "/data", t + "/out"}).ok());
  EXPECT_TRUE(Confined());
  EXPECT_EQ(ConfineTo(Roots{t + "/data", t + "/out"}).code(), absl::StatusCode::kFailedPrecondition);

  EXPECT_TRUE(Open(t + "/data/real/train.bin", O_RDONLY, Access::kRead).ok());
  EXPECT_TRUE(Open(t + "/data/inside/train.bin", O_RDONLY, Access::kRead).ok());
  absl::Status st = Open(t + "/data/escape/secret", O_RDONLY, Access::kRead);
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(st.message(), t + "/data/escape/secret: resolves (through a symlink or '..') outside the "
                              "data root " + t + "/data or the output root " + t +
                              "/out (Note [Confinement at use])");
  EXPECT_EQ(Open(t + "/outside/secret", O_RDONLY, Access::kRead).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Open(t + "/data/../outside/secret", O_RDONLY, Access::kRead).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Open(t + "/out/absolute/secret", O_RDONLY, Access::kRead).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Open(t + "/data/real/none", O_RDONLY, Access::kRead).code(), absl::StatusCode::kNotFound);

  // Writes only beneath the output root.
  EXPECT_TRUE(Open(t + "/out/model.bin", O_WRONLY | O_CREAT, Access::kWrite).ok());
  EXPECT_EQ(Open(t + "/data/real/cache.bin", O_WRONLY | O_CREAT, Access::kWrite).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_FALSE(fs::exists(t + "/data/real/cache.bin"));
  EXPECT_TRUE(Open(t + "/out/model.bin", O_RDONLY, Access::kRead).ok());  // a job reads its output
  EXPECT_TRUE(CheckConfined(t + "/out/new/deeper/dir", Access::kWrite).ok());
  EXPECT_EQ(CheckConfined(t + "/out/absolute/new", Access::kWrite).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(CheckConfined(t + "/data/real", Access::kWrite).code(), absl::StatusCode::kPermissionDenied);
  // The atomic writes of fs_util go through it too.
  EXPECT_TRUE(WriteFileAtomically(t + "/out/state.json", "{}").ok());
  EXPECT_EQ(WriteFileAtomically(t + "/data/real/state.json", "{}").code(),
            absl::StatusCode::kPermissionDenied);

  // A directory swapped for a symlink after the job was accepted.
  fs::create_directories(t + "/data/swap");
  std::ofstream(t + "/data/swap/train.bin") << "x";
  EXPECT_TRUE(CheckInputFile(t + "/data/swap/train.bin").ok());
  fs::remove_all(t + "/data/swap");
  fs::create_directory_symlink("../outside", t + "/data/swap");
  EXPECT_EQ(CheckInputFile(t + "/data/swap/secret").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ReadFileToString(t + "/data/swap/secret").status().code(),
            absl::StatusCode::kPermissionDenied);

  // Note [Writes beneath a held directory]: a model directory staged, then
  // its parent swapped for a symlink out of the output root before the
  // commit: the commit is refused and nothing lands outside.
  absl::StatusOr<std::string> staging = MakeStagingDir(t + "/out/run/model");
  ASSERT_TRUE(staging.ok()) << staging.status();
  std::ofstream(*staging + "/model.safetensors") << "w";
  fs::rename(t + "/out/run", t + "/out/run.moved");
  fs::create_directory_symlink(t + "/outside", t + "/out/run");
  EXPECT_EQ(CommitStagingDir(*staging, t + "/out/run/model").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(WriteFileAtomically(t + "/out/run/state.json", "{}").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(MakeStagingDir(t + "/out/run/other").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_FALSE(fs::exists(t + "/outside/model"));
  EXPECT_FALSE(fs::exists(t + "/outside/state.json"));
  fs::remove_all(t);
}

TEST(ConfineTest, RootsMustBeAbsoluteDirectories) {
  EXPECT_EQ(ConfineTo(Roots{"relative", "/tmp"}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ConfineTo(Roots{"/tmp", "/nonexistent-root"}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(Confined());
}

// A FIFO as an input is refused before an open that would block.
TEST(ConfineTest, AnInputThatIsNotARegularFileIsRefusedWithoutOpeningIt) {
  char tmpl[] = "/tmp/confine_fifo_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string fifo = std::string(tmpl) + "/data.bin";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  absl::Status st = CheckInputFile(fifo);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), fifo + ": not a regular file (a FIFO)");
  EXPECT_EQ(ReadFileToString(fifo).status().code(), absl::StatusCode::kInvalidArgument);
  fs::remove_all(tmpl);
}

}  // namespace
}  // namespace distill::common
