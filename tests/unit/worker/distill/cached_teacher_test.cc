#include "worker/distill/cached_teacher.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>

#include "absl/strings/match.h"
#include "common/spec.h"
#include "tests/test_util/test_util.h"
#include "worker/data/token_shard.h"
#include "worker/distill/colocated_teacher.h"
#include "worker/model/hf_io.h"
#include "worker/runtime/capture.h"

namespace distill::worker {
namespace {
namespace fs = std::filesystem;
using distill::testing::MakeTempDir;
using distill::testing::ReferenceDir;

// tests/reference/make_distill_reference.py: a student of vocabulary 50 and a
// teacher of 56 rows (6 padding rows), width 48, 4 layers.
std::string TeacherDir() { return ReferenceDir() + "/distill/teacher"; }
std::string StudentDir() { return ReferenceDir() + "/distill/student"; }
constexpr int64_t kL = 7;

// A distill spec over the reference eval tokens (train and eval alike),
// top-5 at T = 2 with teacher layer 1 mapped, micro-batches of 2 rows.
distill::v1::JobSpec Spec(const std::string& dir) {
  const std::string data = dir + "/tokens.bin";
  fs::copy_file(ReferenceDir() + "/distill/eval_tokens.bin", data,
                fs::copy_options::overwrite_existing);
  distill::v1::JobSpec s;
  s.set_type(distill::v1::DISTILL);
  s.mutable_teacher()->set_model(TeacherDir());
  s.mutable_teacher()->set_cache(dir + "/cache");
  s.mutable_student()->set_model(StudentDir());
  auto* d = s.mutable_distill();
  d->set_logits(distill::v1::TOPK);
  d->set_top_k(5);
  d->set_temperature(2.0);
  auto* f = d->add_features();
  f->set_student_layer(0);
  f->set_teacher_layer(1);
  s.mutable_data()->add_train(data);
  s.mutable_data()->add_eval(data);
  s.mutable_data()->set_seq_len(kL);
  s.mutable_train()->set_micro_batch(2);
  s.mutable_train()->set_threads(1);
  s.set_output(dir + "/out");
  EXPECT_TRUE(common::ValidateJobSpec(s).ok()) << common::ValidateJobSpec(s);
  return common::WithDefaults(s);
}

TeacherRunConfig TopK5Run() {
  TeacherRunConfig run;
  run.transport = distill::v1::TOPK;
  run.top_k = 5;
  run.temperature = 2.0;
  run.capture_layers = {1};
  return run;
}

class CachedTeacherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_ = Spec(MakeTempDir("cached_teacher"));
    std::ostringstream log;
    auto captured = RunCapture(spec_, nullptr, log);
    ASSERT_TRUE(captured.ok()) << captured.status();
    reader_ = spec_;
    reader_.mutable_teacher()->clear_model();
    auto student = LoadModelConfig(StudentDir() + "/config.json");
    ASSERT_TRUE(student.ok());
    student_config_ = *student;
    auto tokens = TokenDataset::Open({spec_.data().train(0)});
    ASSERT_TRUE(tokens.ok()) << tokens.status();
    auto windows = TextWindows::Create(std::move(*tokens), kL);
    ASSERT_TRUE(windows.ok()) << windows.status();
    data_ = std::move(*windows);
  }

  absl::StatusOr<std::unique_ptr<CachedTeacher>> OpenCached(const distill::v1::JobSpec& spec) {
    const TeacherSetup setup{student_config_, StudentDir(), TopK5Run(), torch::kCPU};
    return CachedTeacher::Open(spec, setup);
  }

  distill::v1::JobSpec spec_, reader_;
  ModelConfig student_config_;
  std::unique_ptr<TextWindows> data_;
};

TEST_F(CachedTeacherTest, NextEqualsTheColocatedTeachersTopKBitForBit) {
  auto cached = OpenCached(reader_);
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_TRUE(absl::StrContains((*cached)->Describe(), "(exact, top-5, ")) << (*cached)->Describe();
  EXPECT_EQ((*cached)->config().num_hidden_layers, 4);
  auto online =
      ColocatedTeacher::Load(TeacherDir(), student_config_, StudentDir(), torch::kCPU, TopK5Run());
  ASSERT_TRUE(online.ok()) << online.status();
  for (const std::vector<int64_t>& rows : {std::vector<int64_t>{3, 0}, {1, data_->rows() - 1}}) {
    const TokenBatch batch = MakeBatch(*data_, rows, torch::kCPU);
    auto got = (*cached)->Next(batch);
    ASSERT_TRUE(got.ok()) << got.status();
    auto want = (*online)->Next(batch);
    ASSERT_TRUE(want.ok()) << want.status();
    EXPECT_TRUE(torch::equal(got->output.topk_logits, want->output.topk_logits));
    EXPECT_TRUE(torch::equal(got->output.topk_ids, want->output.topk_ids));
    EXPECT_TRUE(torch::equal(got->output.topk_lse, want->output.topk_lse));
    ASSERT_EQ(got->features.size(), 1u);
    EXPECT_TRUE(torch::equal(got->features.at(1), want->features.at(1)));
  }
  TokenBatch no_rows = MakeBatch(*data_, {0, 1}, torch::kCPU);
  no_rows.rows.clear();
  EXPECT_EQ((*cached)->Next(no_rows).status().code(), absl::StatusCode::kInvalidArgument);
  TokenBatch other = MakeBatch(*data_, {0, 1}, torch::kCPU);
  other.rows = {1, 0};  // the inputs of other rows
  EXPECT_EQ((*cached)->Next(other).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(CachedTeacherTest, EvaluateMatchesTheOnlineTeacherWhereExactAndBoundsTheKl) {
  auto cached = OpenCached(reader_);
  ASSERT_TRUE(cached.ok()) << cached.status();
  auto teacher =
      ColocatedTeacher::Load(TeacherDir(), student_config_, StudentDir(), torch::kCPU, TopK5Run());
  ASSERT_TRUE(teacher.ok());
  auto student = LoadHfModel(StudentDir());
  ASSERT_TRUE(student.ok());
  auto got = (*cached)->Evaluate(*student, *data_, 2, 0, 1024, torch::kCPU, {});
  ASSERT_TRUE(got.ok()) << got.status();
  auto want = (*teacher)->Evaluate(*student, *data_, 2, 0, 1024, torch::kCPU, {});
  ASSERT_TRUE(want.ok()) << want.status();
  EXPECT_EQ(got->student.tokens, want->student.tokens);
  EXPECT_NEAR(got->student.loss, want->student.loss, 1e-6 * want->student.loss);
  EXPECT_NEAR(got->teacher.loss, want->teacher.loss, 1e-5 * want->teacher.loss);
  EXPECT_NEAR(got->top1_agreement, want->top1_agreement, 1e-12);
  EXPECT_GT(got->kl, 0.0);
  EXPECT_LE(got->kl, want->kl + 1e-6);  // top-5 + tail: a lower bound
}

TEST_F(CachedTeacherTest, MismatchesNameTheField) {
  distill::v1::JobSpec t3 = reader_;
  t3.mutable_distill()->set_temperature(3.0);
  TeacherRunConfig run = TopK5Run();
  run.temperature = 3.0;
  auto got = CachedTeacher::Open(t3, TeacherSetup{student_config_, StudentDir(), run, torch::kCPU});
  EXPECT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(got.status().message(), "temperature 3 is not cached"))
      << got.status();

  distill::v1::JobSpec k8 = reader_;
  k8.mutable_distill()->set_top_k(8);
  got = OpenCached(k8);
  EXPECT_TRUE(
      absl::StrContains(got.status().message(), "distill.top_k is 8 but the cache holds top-5"))
      << got.status();

  run = TopK5Run();
  run.capture_layers = {2};
  got = CachedTeacher::Open(reader_, TeacherSetup{student_config_, StudentDir(), run, torch::kCPU});
  EXPECT_TRUE(absl::StrContains(got.status().message(), "teacher layer 2 is not cached"))
      << got.status();
}

}  // namespace
}  // namespace distill::worker
