#include "common/spec.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

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

// The error without the file that ParseJobSpec's errors start with (a
// parse error without it is itself an error: "<no file>").
absl::Status ParseAndValidate(const std::string& text) {
  auto spec = ParseJobSpec(text, "test.yaml");
  if (!spec.ok()) {
    const absl::string_view m = spec.status().message();
    return absl::Status(spec.status().code(), absl::StartsWith(m, "test.yaml: ")
                                                  ? m.substr(11)
                                                  : absl::StrCat("<no file> ", m));
  }
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
  // No lora block for full fine-tuning: the defaulted spec still validates
  // (the coordinator stores and hands on defaulted specs).
  EXPECT_FALSE(s.has_lora());
  EXPECT_TRUE(ValidateJobSpec(s).ok()) << ValidateJobSpec(s);
  auto lora = ParseJobSpec("type: finetune\nmodel: /m\nmethod: lora\ndata: {train: /t.bin}\noutput: /o\n", "s");
  ASSERT_TRUE(lora.ok());
  JobSpec l = WithDefaults(*lora);
  EXPECT_EQ(l.lora().rank(), 8);
  EXPECT_EQ(l.lora().target_modules_size(), 2);
  EXPECT_TRUE(ValidateJobSpec(l).ok()) << ValidateJobSpec(l);
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
                      // Note [Spec bounds]: absurd sizes are refused before any allocation.
                      BadCase{"rank: 4", "rank: 100000000", "lora.rank"},
                      BadCase{"seq_len: 64", "seq_len: 2000000", "data.seq_len"},
                      BadCase{"micro_batch: 2", "micro_batch: 1000000", "train.micro_batch"},
                      BadCase{"steps: 20,", "steps: 20, threads: 100000,", "train.threads"},
                      BadCase{"grad_accum: 3", "grad_accum: 2000000000", "train.grad_accum"},
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
                      BadCase{"data:\n", "data: 5\nx:\n", "data"},
                      BadCase{"seq_len: 64", "seq_len: 64\n  format: markdown", "data.format"},
                      BadCase{"seq_len: 64", "seq_len: 64\n  loss_on: all", "data.loss_on"},
                      BadCase{"seq_len: 64", "seq_len: 64\n  overflow: drop", "data.overflow"},
                      BadCase{"seq_len: 64", "seq_len: 64\n  packing: false", "data.packing"},
                      BadCase{"seq_len: 64", "seq_len: 64\n  format: chat", "data.tokenizer"},
                      BadCase{"seq_len: 64", "seq_len: 64\n  format: chat\n  tokenizer: bytes", "data.tokenizer"},
                      BadCase{"seq_len: 64", "seq_len: 64\n  format: prompt_completion", "data.train"},
                      BadCase{"seq_len: 64", "seq_len: 64\n  format: chat\n  tokenizer: t/", "data.train"},
                      BadCase{"seq_len: 64", "seq_len: 64\n  format: chat\n  loss_on: responses", "data.loss_on"},
                      // Found by tests/fuzz/spec_fuzz: yaml-cpp keeps the last of
                      // a repeated key, and throws on a list used as a key.
                      BadCase{"seq_len: 64", "seq_len: 64\n  seq_len: 32", "data.seq_len"},
                      BadCase{"seq_len: 64", "seq_len: 64\n  [a, b]: 1", "data"},
                      BadCase{"type: finetune", "type: finetune\n{x: 1}: 2", "spec"}));

// Note [Input bounds]: checked first, naming the field and the limit.
TEST(SpecTest, NameAndSpecSizeAreBounded) {
  auto spec = ParseJobSpec(kGood, "test.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  spec->set_name(std::string(kMaxSpecNameBytes, 'n'));
  EXPECT_TRUE(ValidateJobSpec(*spec).ok());
  spec->set_name(std::string(kMaxSpecNameBytes + 1, 'n'));
  absl::Status st = ValidateJobSpec(*spec);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "name: at most 256 bytes, got 257");
  spec->set_name("ok");
  spec->set_type(distill::v1::JOB_TYPE_UNSPECIFIED);  // the size error comes first
  while (spec->ByteSizeLong() <= kMaxSpecBytes) spec->mutable_data()->add_train(std::string(1000, 'p'));
  st = ValidateJobSpec(*spec);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(st.message(), "spec: at most 1048576 bytes serialized, got "))
      << st.message();
}

TEST(SpecTest, KeyGivenTwiceNamesBothLines) {
  absl::StatusOr<distill::v1::JobSpec> spec =
      ParseJobSpec("output: a\ntype: finetune\noutput: b\n", "t.yaml");
  ASSERT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << spec.status();
  EXPECT_EQ(spec.status().message(), "t.yaml: output: given twice (lines 1 and 3)");
}

TEST(SpecTest, InvalidUtf8NamesFileLineAndColumn) {
  absl::StatusOr<distill::v1::JobSpec> spec =
      ParseJobSpec("type: finetune\nname: ab\x84\n", "t.yaml");
  ASSERT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << spec.status();
  EXPECT_EQ(spec.status().message(), "t.yaml: invalid UTF-8 at line 2, column 9");
  // Overlong, surrogate and truncated sequences too.
  for (const char* bad : {"name: \xC0\xAF", "name: \xED\xA0\x80", "name: \xE2\x82"}) {
    EXPECT_EQ(ParseJobSpec(bad, "t.yaml").status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_TRUE(ParseJobSpec("name: h\xC3\xA9 \xF0\x9F\x98\x80\n", "t.yaml").ok());
  // A NUL made yaml-cpp decode the rest as UTF-16 (spec_fuzz).
  EXPECT_EQ(ParseJobSpec(std::string("name: a\0b\n", 10), "t.yaml").status().message(),
            "t.yaml: control character 0 at line 1, column 8");
}

TEST(SpecTest, InstructionDataFieldsAndDefaults) {
  auto spec = ParseJobSpec(
      "type: finetune\nmodel: /m\noutput: /o\n"
      "data: {format: prompt_completion, train: /t.jsonl, eval: [/e.jsonl], loss_on: all, overflow: drop}\n",
      "s");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(ValidateJobSpec(*spec).ok()) << ValidateJobSpec(*spec);
  JobSpec s = WithDefaults(*spec);
  EXPECT_EQ(s.data().format(), distill::v1::PROMPT_COMPLETION);
  EXPECT_EQ(s.data().loss_on(), distill::v1::ALL);
  EXPECT_EQ(s.data().overflow(), distill::v1::DROP);
  EXPECT_TRUE(s.data().packing());
  EXPECT_TRUE(ValidateJobSpec(s).ok()) << ValidateJobSpec(s);
  JobSpec text = WithDefaults(*ParseJobSpec("type: finetune\nmodel: /m\noutput: /o\ndata: {train: /t.bin}\n", "s"));
  EXPECT_EQ(text.data().format(), distill::v1::TEXT);
  EXPECT_EQ(text.data().loss_on(), distill::v1::ASSISTANT);
  EXPECT_EQ(text.data().overflow(), distill::v1::TRUNCATE);
  EXPECT_TRUE(text.data().packing());
  // The defaulted text spec still validates (the coordinator stores defaulted specs).
  EXPECT_TRUE(ValidateJobSpec(text).ok()) << ValidateJobSpec(text);
}

TEST(SpecTest, LoraBlockWithFullMethodIsRejected) {
  absl::Status st = ParseAndValidate(GoodWith("method: lora", "method: full"));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(st.message()).rfind("lora:", 0), 0u) << st.message();
}

constexpr char kGoodDistill[] = R"(
type: distill
teacher: {model: teacher}
student:
  init: student/config.json
  method: lora
  lora: {rank: 4, target_modules: [q_proj, v_proj]}
distill:
  temperature: 4
  alpha: 0.7
  t2_scale: false
  loss: jsd
  beta: 0.3
  logits: topk
  top_k: 16
  chunk_tokens: 512
  features:
    - {student_layer: 1, teacher_layer: 3, loss: cosine, weight: 0.5}
    - {student_layer: 0, teacher_layer: 1}
data: {train: data/train.bin, seq_len: 32}
train: {steps: 10}
output: out
)";

std::string DistillWith(const std::string& from, const std::string& to) {
  std::string s = kGoodDistill;
  size_t pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  return s.replace(pos, from.size(), to);
}

TEST(SpecTest, ParsesEveryFieldOfADistillSpec) {
  auto spec = ParseJobSpec(kGoodDistill, "d.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_TRUE(ValidateJobSpec(*spec).ok()) << ValidateJobSpec(*spec);
  EXPECT_EQ(spec->type(), distill::v1::DISTILL);
  EXPECT_EQ(spec->teacher().model(), "teacher");
  EXPECT_EQ(spec->student().init(), "student/config.json");
  EXPECT_EQ(spec->student().method(), distill::v1::LORA);
  EXPECT_EQ(spec->student().lora().rank(), 4);
  const auto& d = spec->distill();
  EXPECT_DOUBLE_EQ(d.temperature(), 4);
  EXPECT_DOUBLE_EQ(d.alpha(), 0.7);
  EXPECT_FALSE(d.t2_scale());
  EXPECT_EQ(d.loss(), distill::v1::JSD);
  EXPECT_DOUBLE_EQ(d.beta(), 0.3);
  EXPECT_EQ(d.logits(), distill::v1::TOPK);
  EXPECT_EQ(d.top_k(), 16);
  EXPECT_EQ(d.chunk_tokens(), 512);
  ASSERT_EQ(d.features_size(), 2);
  EXPECT_EQ(d.features(0).student_layer(), 1);
  EXPECT_EQ(d.features(0).teacher_layer(), 3);
  EXPECT_EQ(d.features(0).loss(), distill::v1::COSINE);
  EXPECT_DOUBLE_EQ(d.features(0).weight(), 0.5);
}

TEST(SpecTest, DistillDefaultsAreTheDocumentedOnes) {
  auto spec = ParseJobSpec("type: distill\nteacher: {model: /t}\nstudent: {model: /s}\ndata: {train: /t.bin}\n"
                           "output: /o\ndistill: {features: [{student_layer: 0, teacher_layer: 0}]}\n", "s");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_TRUE(ValidateJobSpec(*spec).ok()) << ValidateJobSpec(*spec);
  JobSpec s = WithDefaults(*spec);
  EXPECT_DOUBLE_EQ(s.distill().temperature(), 2.0);
  EXPECT_DOUBLE_EQ(s.distill().alpha(), 0.5);
  EXPECT_TRUE(s.distill().t2_scale());
  EXPECT_EQ(s.distill().loss(), distill::v1::FORWARD_KL);
  EXPECT_DOUBLE_EQ(s.distill().beta(), 0.5);
  EXPECT_EQ(s.distill().logits(), distill::v1::DENSE);
  EXPECT_EQ(s.distill().top_k(), 64);
  EXPECT_DOUBLE_EQ(s.distill().feature_weight(), 1.0);
  EXPECT_EQ(s.distill().chunk_tokens(), 1024);
  EXPECT_EQ(s.distill().features(0).loss(), distill::v1::MSE);
  EXPECT_DOUBLE_EQ(s.distill().features(0).weight(), 1.0);
  EXPECT_EQ(s.teacher().ranks(), 0);
  EXPECT_EQ(s.student().ranks(), 1);
  EXPECT_EQ(s.student().method(), distill::v1::FULL);
  EXPECT_DOUBLE_EQ(s.train().lr(), 3e-4);
  // finetune's top-level fields stay empty, so the defaulted spec still validates.
  EXPECT_EQ(s.method(), distill::v1::TRAIN_METHOD_UNSPECIFIED);
  EXPECT_FALSE(s.has_lora());
  EXPECT_FALSE(s.has_ranks());
  EXPECT_TRUE(ValidateJobSpec(s).ok()) << ValidateJobSpec(s);
}

TEST(SpecTest, DistillLoraStudentDefaultsToTheLoraLearningRate) {
  auto spec = ParseJobSpec(DistillWith("train: {steps: 10}", "train: {}"), "s");
  ASSERT_TRUE(spec.ok());
  EXPECT_DOUBLE_EQ(WithDefaults(*spec).train().lr(), 1e-3);
}

TEST(SpecTest, FinetuneDefaultsLeaveTheDistillBlocksAbsent) {
  auto spec = ParseJobSpec("type: finetune\nmodel: /m\ndata: {train: /t.bin}\noutput: /o\n", "s");
  ASSERT_TRUE(spec.ok());
  JobSpec s = WithDefaults(*spec);
  EXPECT_EQ(s.ranks(), 1);
  EXPECT_FALSE(s.has_teacher());
  EXPECT_FALSE(s.has_student());
  EXPECT_FALSE(s.has_distill());
}

class DistillBadFieldTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(DistillBadFieldTest, ErrorNamesTheField) {
  const BadCase& c = GetParam();
  absl::Status st = ParseAndValidate(DistillWith(c.from, c.to));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_EQ(std::string(st.message()).rfind(c.field + ":", 0), 0u) << st.message();
}

INSTANTIATE_TEST_SUITE_P(
    AllFields, DistillBadFieldTest,
    ::testing::Values(BadCase{"temperature: 4", "temperature: -1", "distill.temperature"},
                      BadCase{"temperature: 4", "temperature: 0", "distill.temperature"},
                      BadCase{"alpha: 0.7", "alpha: 1.5", "distill.alpha"},
                      BadCase{"beta: 0.3", "beta: 1", "distill.beta"},
                      BadCase{"loss: jsd", "loss: kl", "distill.loss"},
                      BadCase{"logits: topk", "logits: sparse", "distill.logits"},
                      BadCase{"top_k: 16", "top_k: 0", "distill.top_k"},
                      BadCase{"chunk_tokens: 512", "chunk_tokens: 0", "distill.chunk_tokens"},
                      BadCase{"student_layer: 1,", "student_layer: -1,", "distill.features[0].student_layer"},
                      BadCase{"teacher_layer: 1}", "teacher_layer: -2}", "distill.features[1].teacher_layer"},
                      BadCase{"loss: cosine", "loss: l1", "distill.features[0].loss"},
                      BadCase{"weight: 0.5", "weight: -0.5", "distill.features[0].weight"},
                      BadCase{"student_layer: 0, teacher_layer: 1", "student_layer: 1, teacher_layer: 3",
                              "distill.features[1]"},
                      BadCase{"chunk_tokens: 512", "chunk_tokens: 512\n  layer_map: uniform", "distill.layer_map"},
                      BadCase{"chunk_tokens: 512", "chunk_tokens: 512\n  layer_map: diagonal", "distill.layer_map"},
                      BadCase{"teacher: {model: teacher}", "teacher: {ranks: 0}", "teacher.model"},
                      BadCase{"init: student/config.json", "init: ''", "student.model"},
                      BadCase{"init: student/config.json", "init: c.json\n  model: m", "student.init"},
                      BadCase{"method: lora", "method: full", "student.lora"},
                      BadCase{"rank: 4", "rank: 0", "student.lora.rank"},
                      BadCase{"type: distill", "type: distill\nmodel: m", "model"},
                      BadCase{"type: distill", "type: distill\ninit: c.json", "init"},
                      BadCase{"type: distill", "type: distill\nmethod: lora", "method"},
                      BadCase{"type: distill", "type: distill\nlora: {rank: 2}", "lora"},
                      BadCase{"type: distill", "type: distill\nranks: 1", "ranks"},
                      BadCase{"teacher: {model: teacher}", "teacher: {model: teacher, ranks: -1}", "teacher.ranks"},
                      BadCase{"teacher: {model: teacher}", "teacher: {cache: c, ranks: 1}", "teacher.ranks"},
                      BadCase{"teacher: {model: teacher}", "teacher: {model: teacher, cache: c, ranks: 2}",
                              "teacher.ranks"},
                      BadCase{"teacher: {model: teacher}", "teacher: {cache: c, cache_temperatures: [2, 0]}",
                              "teacher.cache_temperatures[1]"},
                      BadCase{"teacher: {model: teacher}", "teacher: {cache: c, cache_layers: [-1]}",
                              "teacher.cache_layers[0]"},
                      BadCase{"teacher: {model: teacher}", "teacher: {model: teacher, cache_layers: [1]}",
                              "teacher.cache"},
                      BadCase{"teacher: {model: teacher}", "teacher: {model: teacher, cache_encoding: compact}",
                              "teacher.cache"}));

// teacher.cache without teacher.model: the students read the cache (top-k,
// exact unless asked); it is a path field, written only when a model is given.
TEST(SpecTest, ATeacherCacheReplacesTheTeacherModel) {
  auto spec = ParseJobSpec(DistillWith("teacher: {model: teacher}", "teacher: {cache: cache}"), "d.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  spec->mutable_distill()->clear_logits();
  ASSERT_TRUE(ValidateJobSpec(*spec).ok()) << ValidateJobSpec(*spec);
  const JobSpec d = WithDefaults(*spec);
  EXPECT_EQ(d.distill().logits(), distill::v1::TOPK);
  EXPECT_EQ(d.teacher().cache_encoding(), distill::v1::EXACT);
  bool found = false;
  for (const PathField& f : SpecPathFields(d)) {
    if (f.field != "teacher.cache") continue;
    found = true;
    EXPECT_EQ(f.path, "cache");
    EXPECT_FALSE(f.output);
  }
  EXPECT_TRUE(found);
  spec->mutable_teacher()->set_model("teacher");
  for (const PathField& f : SpecPathFields(*spec)) {
    if (f.field == "teacher.cache") {
      EXPECT_TRUE(f.output);
    }
  }

  auto dense = ParseJobSpec(DistillWith("logits: topk", "logits: dense"), "d.yaml");
  ASSERT_TRUE(dense.ok());
  dense->mutable_teacher()->set_cache("cache");
  const absl::Status st = ValidateJobSpec(*dense);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(st.message()).rfind("distill.logits: a teacher cache holds top-k logits", 0), 0u) << st;
  const absl::Status none = ParseAndValidate(DistillWith("teacher: {model: teacher}", "teacher: {ranks: 0}"));
  EXPECT_TRUE(absl::StrContains(none.message(), "or teacher.cache")) << none;
}

TEST(SpecTest, TopLevelModelOfADistillJobPointsToStudent) {
  absl::Status st = ParseAndValidate(DistillWith("type: distill", "type: distill\nmodel: m"));
  EXPECT_EQ(st.message(), "model: for type distill put the student under student.model");
}

TEST(SpecTest, DistillBlocksInAFinetuneJobAreRejected) {
  for (const std::string extra : {"teacher: {model: t}\n", "student: {model: s}\n", "distill: {temperature: 2}\n"}) {
    absl::Status st = ParseAndValidate(std::string(kGood) + extra);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << extra;
    EXPECT_EQ(std::string(st.message()).rfind(extra.substr(0, extra.find(':')) + ":", 0), 0u) << st.message();
  }
}

// Multi-rank jobs validate; bad rank counts and runtime knobs name their field.
TEST(SpecTest, MultiRankJobsValidateAndBadRankFieldsAreNamed) {
  EXPECT_TRUE(ParseAndValidate(DistillWith("teacher: {model: teacher}", "teacher: {model: teacher, ranks: 2}")).ok());
  EXPECT_TRUE(ParseAndValidate(DistillWith("method: lora", "method: lora\n  ranks: 4")).ok());
  absl::Status dp = ParseAndValidate(std::string(kGood) + "ranks: 2\ncomm: mpi\nruntime: {timeout_s: 5, bucket_mb: 1}\n");
  EXPECT_TRUE(dp.ok()) << dp;
  struct Case {
    std::string text, field;
  };
  for (const Case& c : {Case{DistillWith("teacher: {model: teacher}", "teacher: {model: teacher, ranks: -1}"),
                             "teacher.ranks"},
                        Case{DistillWith("method: lora", "method: lora\n  ranks: 0"), "student.ranks"},
                        Case{std::string(kGood) + "ranks: 0\n", "ranks"},
                        Case{std::string(kGood) + "runtime: {timeout_s: 0}\n", "runtime.timeout_s"},
                        Case{std::string(kGood) + "runtime: {bucket_mb: -1}\n", "runtime.bucket_mb"},
                        Case{std::string(kGood) + "runtime: {peak_tflops: 0}\n", "runtime.peak_tflops"},
                        Case{std::string(kGood) + "runtime: {prefetch: 0}\n", "runtime.prefetch"},
                        Case{std::string(kGood) + "runtime: {sync_check_every: -2}\n", "runtime.sync_check_every"},
                        Case{std::string(kGood) + "runtime: {zero: 3}\n", "runtime.zero"},
                        Case{std::string(kGood) + "comm: gloo\n", "comm"}}) {
    absl::Status st = ParseAndValidate(c.text);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_EQ(std::string(st.message()).rfind(c.field + ":", 0), 0u) << st.message();
  }
}

TEST(SpecTest, RuntimeDefaults) {
  auto spec = ParseJobSpec(kGood, "test");
  ASSERT_TRUE(spec.ok()) << spec.status();
  distill::v1::JobSpec s = WithDefaults(*spec);
  EXPECT_EQ(s.comm(), distill::v1::COMM_AUTO);
  EXPECT_EQ(s.runtime().timeout_s(), 60.0);
  EXPECT_EQ(s.runtime().bucket_mb(), 25.0);
  EXPECT_EQ(s.runtime().prefetch(), 2);
  EXPECT_EQ(s.runtime().sync_check_every(), 50);
  EXPECT_EQ(s.runtime().zero(), 0);
  EXPECT_FALSE(s.train().activation_checkpointing());
}

TEST(SpecTest, LoadResolvesTeacherAndStudentPaths) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / "distill_spec_test_distill";
  fs::create_directories(dir);
  { std::ofstream(dir / "job.yaml") << kGoodDistill; }
  auto spec = LoadJobSpec((dir / "job.yaml").string());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->teacher().model(), (dir / "teacher").string());
  EXPECT_EQ(spec->student().init(), (dir / "student/config.json").string());
  EXPECT_TRUE(spec->student().model().empty());
  fs::remove_all(dir);
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

// Note [Spec bounds]: each size within its bound, the batch's tokens not.
TEST(SpecTest, TheTokensOfAMicroBatchAreBounded) {
  std::string yaml = GoodWith("seq_len: 64", "seq_len: 1000000");
  yaml.replace(yaml.find("micro_batch: 2"), 14, "micro_batch: 64");
  absl::Status st = ParseAndValidate(yaml);
  EXPECT_EQ(st.message(),
            "train.micro_batch: micro_batch x data.seq_len is 64000000 tokens, more than 16777216");
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
  EXPECT_EQ(spec.status().message(), p.string() + ": train.steps: must be in [1, 1099511627776], got 0");
  fs::remove(p);
}

}  // namespace
}  // namespace distill::common
