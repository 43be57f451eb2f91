#include "worker/train/eval.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/test_util/test_util.h"
#include "worker/data/sequence_data.h"
#include "worker/model/hf_io.h"

namespace distill::worker {
namespace {
using distill::testing::ReadFile;
using distill::testing::ReferenceDir;

// The shard at `path` as windows of `seq_len` (the text rows EvaluateLm reads).
std::unique_ptr<TextWindows> Windows(const std::string& path, int64_t seq_len) {
  auto tokens = TokenDataset::Open({path});
  EXPECT_TRUE(tokens.ok()) << tokens.status();
  auto windows = TextWindows::Create(*std::move(tokens), seq_len);
  EXPECT_TRUE(windows.ok()) << windows.status();
  return windows.ok() ? *std::move(windows) : nullptr;
}

// Golden values from tests/reference/make_reference.py (make_eval_case):
// mean cross-entropy over non-overlapping windows, computed in float64.
TEST(EvalTest, MatchesReferenceForEveryWindowLengthAndBatch) {
  const std::string dir = ReferenceDir() + "/llama_gqa";
  auto golden = nlohmann::json::parse(ReadFile(dir + "/eval.json"));
  auto model = LoadHfModel(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  for (const auto& c : golden["cases"]) {
    const int64_t seq_len = c["seq_len"].get<int64_t>();
    auto data = Windows(dir + "/eval_tokens.bin", seq_len);
    ASSERT_NE(data, nullptr);
    for (int64_t batch : {1, 3, 100}) {
      auto r = EvaluateLm(*model, *data, batch, 0, torch::kCPU);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->tokens, c["tokens"].get<int64_t>()) << seq_len;
      // fp32 forward against a float64 reference: 1e-5 relative.
      EXPECT_NEAR(r->loss, c["loss"].get<double>(), 1e-5 * c["loss"].get<double>()) << seq_len << " " << batch;
      EXPECT_NEAR(r->ppl, c["ppl"].get<double>(), 1e-5 * c["ppl"].get<double>());
    }
  }
}

TEST(EvalTest, MaxWindowsLimitsTheTargets) {
  const std::string dir = ReferenceDir() + "/llama_gqa";
  auto model = LoadHfModel(dir);
  auto data = Windows(dir + "/eval_tokens.bin", 16);
  ASSERT_TRUE(model.ok() && data);
  auto r = EvaluateLm(*model, *data, 4, 5, torch::kCPU);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tokens, 5 * 16);
}

// Golden values from tests/reference/make_distill_reference.py (make_eval):
// a student of vocabulary 50 against a teacher padded to 56 rows, float64.
TEST(EvalTest, TeacherMetricsMatchReference) {
  const std::string dir = ReferenceDir() + "/distill";
  auto golden = nlohmann::json::parse(ReadFile(dir + "/eval.json"));
  auto student = LoadHfModel(dir + "/student");
  auto teacher = LoadHfModel(dir + "/teacher");
  ASSERT_TRUE(student.ok() && teacher.ok());
  for (const auto& c : golden["cases"]) {
    const int64_t seq_len = c["seq_len"].get<int64_t>();
    auto data = Windows(dir + "/eval_tokens.bin", seq_len);
    ASSERT_NE(data, nullptr);
    for (int64_t batch : {1, 3}) {
      for (int64_t chunk : {7, 1024}) {  // logits for 7 targets at a time, or a whole batch
        auto r = EvaluateWithTeacher(*student, *teacher, 50, *data, batch, 0, chunk, torch::kCPU);
        ASSERT_TRUE(r.ok()) << r.status();
        const std::string what = "L " + std::to_string(seq_len) + " batch " + std::to_string(batch);
        EXPECT_EQ(r->student.tokens, c["tokens"].get<int64_t>()) << what;
        EXPECT_NEAR(r->student.loss, c["loss"].get<double>(), 1e-5 * c["loss"].get<double>()) << what;
        EXPECT_NEAR(r->student.ppl, c["ppl"].get<double>(), 1e-5 * c["ppl"].get<double>()) << what;
        EXPECT_NEAR(r->teacher.loss, c["teacher_loss"].get<double>(), 1e-5 * c["teacher_loss"].get<double>()) << what;
        EXPECT_NEAR(r->teacher.ppl, c["teacher_ppl"].get<double>(), 1e-5 * c["teacher_ppl"].get<double>()) << what;
        // KL is a difference of log-probabilities: 1e-5 absolute on values ~1.
        EXPECT_NEAR(r->kl, c["kl"].get<double>(), 1e-5) << what;
        // The reference has no near ties, so argmaxes agree exactly.
        EXPECT_DOUBLE_EQ(r->top1_agreement, c["top1_agreement"].get<double>()) << what;
      }
    }
  }
}

TEST(EvalTest, TeacherAgainstItselfHasZeroKlAndFullAgreement) {
  const std::string dir = ReferenceDir() + "/distill";
  auto teacher = LoadHfModel(dir + "/teacher");
  auto copy = LoadHfModel(dir + "/teacher");
  auto data = Windows(dir + "/eval_tokens.bin", 16);
  ASSERT_TRUE(teacher.ok() && copy.ok() && data);
  auto r = EvaluateWithTeacher(*copy, *teacher, 56, *data, 4, 0, 1024, torch::kCPU);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NEAR(r->kl, 0.0, 1e-6);
  EXPECT_DOUBLE_EQ(r->top1_agreement, 1.0);
  EXPECT_DOUBLE_EQ(r->student.loss, r->teacher.loss);
}

TEST(EvalTest, TeacherSmallerThanTheSharedVocabularyIsInvalidArgument) {
  const std::string dir = ReferenceDir() + "/distill";
  auto student = LoadHfModel(dir + "/student");
  auto teacher = LoadHfModel(dir + "/teacher");
  auto data = Windows(dir + "/eval_tokens.bin", 16);
  ASSERT_TRUE(student.ok() && teacher.ok() && data);
  // The teacher as "student" (56) against the student as "teacher" (50).
  auto r = EvaluateWithTeacher(*teacher, *student, 56, *data, 4, 0, 1024, torch::kCPU);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace distill::worker
