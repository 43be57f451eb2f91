// Note [Output ownership]: a real directory; the record a claim writes, who
// may claim it after, and what a refusal names.
#include "common/output_owner.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "common/fs_util.h"

namespace distill::common {
namespace {

namespace fs = std::filesystem;

class OutputOwnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/owner_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  static distill::v1::JobSpec Spec(uint64_t seed, const std::string& data) {
    distill::v1::JobSpec spec;
    spec.set_type(distill::v1::FINETUNE);
    spec.set_init("/m/config.json");
    spec.mutable_data()->add_train(data);
    spec.mutable_train()->set_seed(seed);
    spec.set_output("/o");
    return spec;
  }

  std::string dir_;
};

TEST_F(OutputOwnerTest, IdentityNamesWhatMakesARun) {
  distill::v1::JobSpec spec = Spec(3, "/d/./train.bin");
  spec.set_type(distill::v1::DISTILL);
  spec.set_method(distill::v1::LORA);
  spec.mutable_teacher()->set_model("/t");
  RunIdentity id = IdentityOf(spec);
  EXPECT_EQ(id.type, "distill");
  EXPECT_EQ(id.method, "lora");
  EXPECT_EQ(id.model, "init /m/config.json");
  EXPECT_EQ(id.teacher, "model /t");
  EXPECT_EQ(id.data, "/d/train.bin");
  EXPECT_EQ(id.seed, 3u);
  absl::StatusOr<RunIdentity> back = IdentityFromJson(IdentityToJson(id));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(IdentityDifferences(*back, id).empty());
  // Steps, lr and the like are not part of it.
  distill::v1::JobSpec longer = spec;
  longer.mutable_train()->set_steps(1000);
  longer.mutable_train()->set_lr(0.5);
  EXPECT_TRUE(IdentityDifferences(id, IdentityOf(longer)).empty());
}

TEST_F(OutputOwnerTest, DifferencesNameEachField) {
  const RunIdentity a = IdentityOf(Spec(1, "/d/a.bin"));
  const RunIdentity b = IdentityOf(Spec(2, "/d/b.bin"));
  EXPECT_EQ(IdentityDifferences(a, b),
            (std::vector<std::string>{"data (/d/a.bin, now /d/b.bin)", "seed (1, now 2)"}));
  // An older record without a seed compares the rest.
  RunIdentity old = a;
  old.seed.reset();
  EXPECT_EQ(IdentityDifferences(old, IdentityOf(Spec(9, "/d/a.bin"))).size(), 0u);
}

TEST_F(OutputOwnerTest, TheFirstClaimWritesTheRecordTheSameJobOrSpecMayClaimAgain) {
  const RunIdentity id = IdentityOf(Spec(1, "/d/a.bin"));
  ASSERT_TRUE(ClaimOutput(dir_, "j1", id).ok());
  absl::StatusOr<std::string> record = ReadFileToString(dir_ + "/" + kOwnerFile);
  ASSERT_TRUE(record.ok());
  EXPECT_NE(record->find("\"job_id\": \"j1\""), std::string::npos) << *record;
  EXPECT_TRUE(ClaimOutput(dir_, "j1", id).ok());  // a retry
  // The same spec submitted again (a new job) continues it and owns it now.
  EXPECT_TRUE(ClaimOutput(dir_, "j2", id).ok());
  EXPECT_NE(ReadFileToString(dir_ + "/" + kOwnerFile)->find("\"j2\""), std::string::npos);
  EXPECT_TRUE(ClaimOutput(dir_, "", id).ok());  // and a run without a coordinator
}

TEST_F(OutputOwnerTest, AnotherRunIsRefusedNamingTheOwnerAndNothingIsWritten) {
  ASSERT_TRUE(ClaimOutput(dir_, "j1", IdentityOf(Spec(1, "/d/a.bin"))).ok());
  const std::string before = *ReadFileToString(dir_ + "/" + kOwnerFile);
  absl::Status st = ClaimOutput(dir_, "j2", IdentityOf(Spec(2, "/d/a.bin")));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(st.message(),
            dir_ +
                ": belongs to job j1, which differs from this job j2 in seed (1, now 2)"
                ": write to another output directory, or delete " +
                dir_ + " to start over");
  EXPECT_EQ(*ReadFileToString(dir_ + "/" + kOwnerFile), before);
  // A run without a coordinator, too.
  st = ClaimOutput(dir_, "", IdentityOf(Spec(1, "/d/b.bin")));
  EXPECT_NE(st.message().find("this run in data (/d/a.bin, now /d/b.bin)"), std::string::npos)
      << st;
}

TEST_F(OutputOwnerTest, AMalformedRecordIsRefusedNamingTheFile) {
  std::ofstream(dir_ + "/" + kOwnerFile) << "[1, 2]";
  absl::Status st = ClaimOutput(dir_, "j1", IdentityOf(Spec(1, "/d/a.bin")));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find(kOwnerFile), std::string::npos) << st;
}

TEST_F(OutputOwnerTest, StaleStagingIsRemovedAndNothingElse) {
  for (const char* d :
       {"step_00000004.tmp.123", "model.old.9", ".pending_step_00000004", "step_00000002"}) {
    fs::create_directories(dir_ + "/" + d);
  }
  std::ofstream(dir_ + "/state.json.tmp.77") << "x";
  std::ofstream(dir_ + "/metrics.jsonl") << "x";
  std::ofstream(dir_ + "/notes.tmp.txt") << "x";
  EXPECT_EQ(RemoveStaleStaging(dir_), 4);
  EXPECT_TRUE(fs::exists(dir_ + "/step_00000002"));
  EXPECT_TRUE(fs::exists(dir_ + "/metrics.jsonl"));
  EXPECT_TRUE(fs::exists(dir_ + "/notes.tmp.txt"));
  EXPECT_FALSE(fs::exists(dir_ + "/step_00000004.tmp.123"));
  EXPECT_FALSE(fs::exists(dir_ + "/.pending_step_00000004"));
}

}  // namespace
}  // namespace distill::common
