#include "coordinator/ctl/commands.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace distill::coordinator::ctl {
namespace {
namespace fs = std::filesystem;

class BuildSubmitRequestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("ctl_submit_" + std::to_string(::getpid()));
    fs::create_directories(dir_ / "specs");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string WriteSpec(const std::string& text) {
    const std::string path = (dir_ / "specs" / "job.yaml").string();
    std::ofstream(path) << text;
    return path;
  }
  CtlArgs Args(std::vector<std::string> argv) {
    auto a = ParseArgs(argv);
    EXPECT_TRUE(a.ok()) << a.status();
    return *a;
  }

  fs::path dir_;
};

constexpr char kSpec[] = R"(type: finetune
name: tiny
init: ../model/config.json
method: full
data: {train: data/train.bin, seq_len: 16}
train: {steps: 4}
output: /abs/out
)";

TEST_F(BuildSubmitRequestTest, ResolvesRelativePathsAgainstTheSpecFile) {
  const std::string path = WriteSpec(kSpec);
  auto r = BuildSubmitRequest(Args({"submit", path}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->spec().init(), (dir_ / "model" / "config.json").string());
  ASSERT_EQ(r->spec().data().train_size(), 1);
  EXPECT_EQ(r->spec().data().train(0), (dir_ / "specs" / "data" / "train.bin").string());
  EXPECT_EQ(r->spec().output(), "/abs/out");
  EXPECT_EQ(r->spec().name(), "tiny");
  // Defaults stay absent: the coordinator applies its own.
  EXPECT_FALSE(r->spec().train().has_lr());
  EXPECT_EQ(r->priority(), 0);
  EXPECT_FALSE(r->has_max_retries());
}

TEST_F(BuildSubmitRequestTest, FlagsAndAFreshRequestIdPerCall) {
  const std::string path = WriteSpec(kSpec);
  auto a = BuildSubmitRequest(Args({"submit", path}));
  auto b = BuildSubmitRequest(Args({"submit", path}));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_FALSE(a->request_id().empty());
  EXPECT_NE(a->request_id(), b->request_id());
  auto c = BuildSubmitRequest(
      Args({"submit", path, "--priority", "7", "--max-retries", "0", "--request-id", "mine"}));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->priority(), 7);
  ASSERT_TRUE(c->has_max_retries());
  EXPECT_EQ(c->max_retries(), 0);
  EXPECT_EQ(c->request_id(), "mine");
}

TEST_F(BuildSubmitRequestTest, InvalidSpecNamesTheFileAndField) {
  const std::string path =
      WriteSpec("type: finetune\ninit: c.json\ndata: {train: t.bin}\ntrain: {lr: -1}\noutput: o\n");
  auto r = BuildSubmitRequest(Args({"submit", path}));
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(path + ": "), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("train.lr"), std::string::npos) << r.status();
}

TEST_F(BuildSubmitRequestTest, UnknownFieldAndMissingFileAreErrors) {
  const std::string path = WriteSpec("type: finetune\nlora: {rnak: 4}\n");
  EXPECT_EQ(BuildSubmitRequest(Args({"submit", path})).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildSubmitRequest(Args({"submit", (dir_ / "none.yaml").string()})).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(BuildSubmitRequestTest, ASweepIsCheckedChildByChildAndCaptureSetsTheKind) {
  std::string path = WriteSpec(std::string(kSpec) + "sweep: {train.seed: [1, 2], train.lr: [0.1, -1]}\n");
  auto r = BuildSubmitRequest(Args({"submit", path}));
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), path + ": sweep: train.lr[1] = -1: train.lr: must be > 0, got -1");
  path = WriteSpec(std::string(kSpec) + "sweep: {train.seed: [1, 2], init: [m2/config.json]}\n");
  r = BuildSubmitRequest(Args({"submit", path}));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->spec().sweep_size(), 2);
  EXPECT_EQ(r->spec().sweep(0).values(1), "2");
  // A swept path is resolved against the spec file too.
  EXPECT_EQ(r->spec().sweep(1).values(0), "\"" + (dir_ / "specs" / "m2" / "config.json").string() + "\"");
  EXPECT_EQ(r->kind(), distill::v1::JOB_KIND_UNSPECIFIED);
  path = WriteSpec(R"(type: distill
teacher: {model: /t, cache: /c}
student: {init: /s/config.json}
data: {train: /d.bin}
output: /o
)");
  r = BuildSubmitRequest(Args({"submit", "--capture", path}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->kind(), distill::v1::CAPTURE);
}

TEST(ErrorLineTest, CodeNameThenMessage) {
  EXPECT_EQ(ErrorLine(absl::NotFoundError("job j-9 not found")),
            "distillctl: NOT_FOUND: job j-9 not found");
  EXPECT_EQ(ErrorLine(absl::FailedPreconditionError("finished")),
            "distillctl: FAILED_PRECONDITION: finished");
}

distill::v1::LogChunk Chunk(int rank, const std::string& data) {
  distill::v1::LogChunk c;
  c.set_rank(rank);
  c.set_data(data);
  return c;
}

TEST(LogWriterTest, PrefixedLinesOfSeveralRanksDoNotInterleave) {
  std::ostringstream out;
  LogWriter w(out, /*prefix=*/true);
  w.Write(Chunk(0, "step 1 of"));
  w.Write(Chunk(1, "step 1 done\nstep 2"));
  w.Write(Chunk(0, " rank 0\n"));
  w.Flush();
  EXPECT_EQ(out.str(), "[rank 1] step 1 done\n[rank 0] step 1 of rank 0\n[rank 1] step 2\n");
}

TEST(LogWriterTest, WithoutPrefixBytesPassThrough) {
  std::ostringstream out;
  LogWriter w(out, /*prefix=*/false);
  w.Write(Chunk(0, "a"));
  w.Write(Chunk(0, "b\nc"));
  w.Flush();
  EXPECT_EQ(out.str(), "ab\nc");
}

}  // namespace
}  // namespace distill::coordinator::ctl
