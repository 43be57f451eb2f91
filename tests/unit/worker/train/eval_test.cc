#include "worker/train/eval.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/test_util.h"
#include "worker/data/token_shard.h"
#include "worker/model/hf_io.h"

namespace distill::worker {
namespace {
using distill::testing::ReadFile;
using distill::testing::ReferenceDir;

// Golden values from tests/reference/make_reference.py (make_eval_case):
// mean cross-entropy over non-overlapping windows, computed in float64.
TEST(EvalTest, MatchesReferenceForEveryWindowLengthAndBatch) {
  const std::string dir = ReferenceDir() + "/llama_gqa";
  auto golden = nlohmann::json::parse(ReadFile(dir + "/eval.json"));
  auto model = LoadHfModel(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  auto data = TokenDataset::Open({dir + "/eval_tokens.bin"});
  ASSERT_TRUE(data.ok()) << data.status();
  for (const auto& c : golden["cases"]) {
    const int64_t seq_len = c["seq_len"].get<int64_t>();
    for (int64_t batch : {1, 3, 100}) {
      auto r = EvaluateLm(*model, *data, seq_len, batch, 0, torch::kCPU);
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
  auto data = TokenDataset::Open({dir + "/eval_tokens.bin"});
  ASSERT_TRUE(model.ok() && data.ok());
  auto r = EvaluateLm(*model, *data, 16, 4, 5, torch::kCPU);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tokens, 5 * 16);
}

TEST(EvalTest, StreamShorterThanOneWindowIsInvalidArgument) {
  const std::string dir = ReferenceDir() + "/llama_gqa";
  auto model = LoadHfModel(dir);
  auto data = TokenDataset::Open({dir + "/eval_tokens.bin"});
  ASSERT_TRUE(model.ok() && data.ok());
  auto r = EvaluateLm(*model, *data, 203, 1, 0, torch::kCPU);  // needs 204 tokens
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace distill::worker
