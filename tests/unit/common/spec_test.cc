#include "common/spec.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace distill::common {
namespace {

using distill::v1::JobSpec;

constexpr char kGood[] = R"(
type: finetune
init: model/config.json
method: lora
lora: {rank: 4, alpha: 8, dropout: 0.1, target_modules: [q_proj, v_proj, down_proj], rslora: true}
data:
  train: data/train.bin
  eval: [data/val.bin]
  seq_len: 64
train: {steps: 20, micro_batch: 2, grad_accum: 3, lr: 1e-3, min_lr: 1e-4, warmup: 2, weight_decay: 0.01,
        clip: 1.0, seed: 7, precision: fp32, eval_every: 10, log_every: 5}
checkpoint: {every: 10, keep: 3}
output: out
)";

absl::Status ParseAndValidate(const std::string& text) {
  auto spec = ParseJobSpec(text, "test.yaml");
  if (!spec.ok()) return spec.status();
  return ValidateJobSpec(*spec);
}

// Replaces the first occurrence of `from` in kGood.
std::string GoodWith(const std::string& from, const std::string& to) {
  std::string s = kGood;
  size_t pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  return s.replace(pos, from.size(), to);
}

TEST(SpecTest, ParsesEveryFieldOfAFinetuneSpec) {
  auto spec = ParseJobSpec(kGood, "test.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->type(), distill::v1::FINETUNE);
  EXPECT_EQ(spec->method(), distill::v1::LORA);
  EXPECT_EQ(spec->lora().rank(), 4);
  EXPECT_DOUBLE_EQ(spec->lora().alpha(), 8);
  EXPECT_TRUE(spec->lora().rslora());
  ASSERT_EQ(spec->lora().target_modules_size(), 3);
  EXPECT_EQ(spec->lora().target_modules(2), "down_proj");
  ASSERT_EQ(spec->data().train_size(), 1);  // a scalar where a list is expected
  EXPECT_EQ(spec->data().train(0), "data/train.bin");
  EXPECT_EQ(spec->data().seq_len(), 64);
  EXPECT_EQ(spec->train().grad_accum(), 3);
  EXPECT_DOUBLE_EQ(spec->train().lr(), 1e-3);
  EXPECT_EQ(spec->train().seed(), 7u);
  EXPECT_EQ(spec->train().precision(), distill::v1::FP32);
  EXPECT_EQ(spec->checkpoint().keep(), 3);
  EXPECT_TRUE(ValidateJobSpec(*spec).ok());
}

TEST(SpecTest, JsonIsAccepted) {
  auto spec = ParseJobSpec(R"({"type": "finetune", "model": "/m", "data": {"train": ["/t.bin"]}, "output": "/o"})",
                           "spec.json");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->model(), "/m");
  EXPECT_TRUE(ValidateJobSpec(*spec).ok());
}

TEST(SpecTest, DefaultsFillOnlyAbsentFields) {
  auto spec = ParseJobSpec("type: finetune\nmodel: /m\ndata: {train: /t.bin}\noutput: /o\ntrain: {lr: 0.01}\n", "s");
  ASSERT_TRUE(spec.ok());
  JobSpec s = WithDefaults(*spec);
  EXPECT_EQ(s.method(), distill::v1::FULL);
  EXPECT_DOUBLE_EQ(s.train().lr(), 0.01);
  EXPECT_DOUBLE_EQ(s.train().min_lr(), 0.001);
  EXPECT_EQ(s.train().micro_batch(), 8);
  EXPECT_EQ(s.data().seq_len(), 256);
  EXPECT_EQ(s.checkpoint().keep(), 2);
  EXPECT_TRUE(s.checkpoint().resume());
  EXPECT_EQ(s.lora().target_modules_size(), 2);
}

struct BadCase {
  std::string from, to, field;
};

class SpecBadFieldTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(SpecBadFieldTest, ErrorNamesTheField) {
  const BadCase& c = GetParam();
  absl::Status st = ParseAndValidate(GoodWith(c.from, c.to));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_EQ(std::string(st.message()).rfind(c.field + ":", 0), 0u) << st.message();
}

INSTANTIATE_TEST_SUITE_P(
    AllFields, SpecBadFieldTest,
    ::testing::Values(BadCase{"type: finetune", "type: pretrain", "type"},
                      BadCase{"type: finetune", "typo: finetune", "typo"},
                      BadCase{"method: lora", "method: qlora", "method"},
                      BadCase{"rank: 4", "rank: 0", "lora.rank"},
                      BadCase{"rank: 4", "rank: four", "lora.rank"},
                      BadCase{"alpha: 8", "alpha: -1", "lora.alpha"},
                      BadCase{"dropout: 0.1", "dropout: 1.5", "lora.dropout"},
                      BadCase{"down_proj]", "lm_head]", "lora.target_modules[2]"},
                      BadCase{"down_proj]", "q_proj]", "lora.target_modules[2]"},
                      BadCase{"seq_len: 64", "seq_len: 0", "data.seq_len"},
                      BadCase{"steps: 20", "steps: 0", "train.steps"},
                      BadCase{"micro_batch: 2", "micro_batch: -2", "train.micro_batch"},
                      BadCase{"grad_accum: 3", "grad_accum: 0", "train.grad_accum"},
                      BadCase{"lr: 1e-3", "lr: 0", "train.lr"},
                      BadCase{"lr: 1e-3", "lr: fast", "train.lr"},
                      BadCase{"min_lr: 1e-4", "min_lr: 1e-2", "train.min_lr"},
                      BadCase{"warmup: 2", "warmup: 50", "train.warmup"},
                      BadCase{"weight_decay: 0.01", "weight_decay: -0.01", "train.weight_decay"},
                      BadCase{"clip: 1.0", "clip: -1", "train.clip"},
                      BadCase{"seed: 7", "seed: -7", "train.seed"},
                      BadCase{"precision: fp32", "precision: fp8", "train.precision"},
                      BadCase{"log_every: 5", "log_every: 0", "train.log_every"},
                      BadCase{"every: 10, keep: 3", "every: 10, keep: 0", "checkpoint.keep"},
                      BadCase{"output: out", "output: ''", "output"},
                      BadCase{"init: model/config.json", "init: ''", "model"},
                      BadCase{"init: model/config.json", "init: c.json\nmodel: m", "init"},
                      BadCase{"data:\n", "data: 5\nx:\n", "data"}));

TEST(SpecTest, LoraBlockWithFullMethodIsRejected) {
  absl::Status st = ParseAndValidate(GoodWith("method: lora", "method: full"));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(st.message()).rfind("lora:", 0), 0u) << st.message();
}

TEST(SpecTest, DistillIsNotImplementedYet) {
  absl::Status st = ParseAndValidate(GoodWith("type: finetune", "type: distill"));
  EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented);
}

TEST(SpecTest, YamlSyntaxErrorNamesSourceAndLine) {
  auto spec = ParseJobSpec("type: finetune\ntrain: {steps: [1\n", "broken.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(spec.status().message().find("broken.yaml"), std::string::npos);
  EXPECT_NE(spec.status().message().find("line"), std::string::npos);
}

TEST(SpecTest, LoadResolvesRelativePathsAgainstTheSpecDirectory) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / "distill_spec_test";
  fs::create_directories(dir);
  { std::ofstream(dir / "job.yaml") << kGood; }
  auto spec = LoadJobSpec((dir / "job.yaml").string());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->init(), (dir / "model/config.json").string());
  EXPECT_EQ(spec->data().train(0), (dir / "data/train.bin").string());
  EXPECT_EQ(spec->output(), (dir / "out").string());
  fs::remove_all(dir);
}

TEST(SpecTest, LoadOfMissingFileIsNotFound) {
  auto spec = LoadJobSpec("/nonexistent/job.yaml");
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(spec.status().message().find("/nonexistent/job.yaml"), std::string::npos);
}

TEST(SpecTest, LoadPrefixesValidationErrorsWithThePath) {
  namespace fs = std::filesystem;
  fs::path p = fs::temp_directory_path() / "distill_spec_bad.yaml";
  { std::ofstream(p) << GoodWith("steps: 20", "steps: 0"); }
  auto spec = LoadJobSpec(p.string());
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().message(), p.string() + ": train.steps: must be >= 1, got 0");
  fs::remove(p);
}

}  // namespace
}  // namespace distill::common
