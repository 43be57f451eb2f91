#include "worker/distill/distill_trainer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/spec.h"
#include "tests/test_util/reference_util.h"
#include "tests/test_util/test_util.h"
#include "tests/test_util/tiny_models.h"
#include "worker/data/token_shard.h"
#include "worker/distill/colocated_teacher.h"
#include "worker/model/hf_io.h"
#include "worker/model/safetensors.h"

namespace distill::worker {
namespace {
namespace fs = std::filesystem;
using distill::testing::ExpectAllClose;
using distill::testing::Golden;
using distill::testing::MakeTempDir;
using distill::testing::ReadFile;
using distill::testing::ReferenceDir;
using distill::testing::WriteFile;

distill::v1::JobSpec ParseSpec(const std::string& text) {
  auto spec = common::ParseJobSpec(text, "test");
  EXPECT_TRUE(spec.ok()) << spec.status();
  absl::Status st = common::ValidateJobSpec(*spec);
  EXPECT_TRUE(st.ok()) << st;
  return common::WithDefaults(*spec);
}

// ---------------------------------------------------------------------------
// One micro-batch against tests/reference/make_distill_reference.py.

std::string RefDir() { return ReferenceDir() + "/distill"; }

// `extra`: more distill: fields ("loss: jsd, beta: 0.3, ").
distill::v1::JobSpec ReferenceSpec(const std::string& logits, const std::string& extra) {
  return ParseSpec(
      "type: distill\nteacher: {model: " + RefDir() + "/teacher}\nstudent: {model: " + RefDir() +
      "/student}\ndata: {train: /unused.bin}\noutput: /unused\n"
      "distill: {" + extra + "temperature: 2, alpha: 0.5, logits: " +
      logits +
      ", top_k: 8, chunk_tokens: 5,\n"
      "  features: [{student_layer: 0, teacher_layer: 1, loss: mse, weight: 0.5},\n"
      "             {student_layer: 1, teacher_layer: 3, loss: cosine, weight: 2.0}]}\n");
}

struct Step {
  LossParts parts;
  std::map<std::string, torch::Tensor> grads;  // student and projection grads by name
};

Step RunReferenceStep(const std::string& logits, const std::string& extra = "") {
  const distill::v1::JobSpec spec = ReferenceSpec(logits, extra);
  auto golden = SafetensorsFile::Open(RefDir() + "/golden.safetensors");
  EXPECT_TRUE(golden.ok()) << golden.status();
  auto student = LoadHfModel(RefDir() + "/student");
  EXPECT_TRUE(student.ok()) << student.status();
  DistillObjective objective(spec);
  absl::Status st = objective.Prepare(*student, torch::kCPU, false);
  EXPECT_TRUE(st.ok()) << st;
  std::vector<NamedParam> extra = objective.ExtraParams();
  EXPECT_EQ(extra.size(), 2u);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : extra) {
      // "distill.projection.s0_t1.weight" <- golden "projection.s0_t1"
      const std::string pair = p.name.substr(std::string("distill.projection.").size(), 5);
      p.param.copy_(Golden(**golden, "projection." + pair));
    }
  }
  auto parts = objective.Loss(*student, {Golden(**golden, "input_ids"), Golden(**golden, "targets"), {}, {}, {}});
  EXPECT_TRUE(parts.ok()) << parts.status();
  Step step;
  if (!parts.ok()) return step;
  step.parts = *parts;
  step.parts.total.backward();
  for (const auto& item : (*student)->named_parameters())
    step.grads[item.key()] = item.value().grad();
  for (const auto& p : extra) step.grads[p.name] = p.param.grad();
  return step;
}

// fp32 against a float64 reference.
constexpr double kRelTol = 1e-5;
constexpr double kGradRelTol = 1e-4;

TEST(DistillTrainerTest, OneMicroBatchMatchesTheReferenceLossAndGradients) {
  auto golden = SafetensorsFile::Open(RefDir() + "/golden.safetensors");
  ASSERT_TRUE(golden.ok()) << golden.status();
  Step step = RunReferenceStep("dense");
  ASSERT_TRUE(step.parts.total.defined());
  ExpectAllClose(step.parts.total.detach().reshape({}), Golden(**golden, "loss"), kRelTol, 0,
                 "loss");
  const double ce = step.parts.values.at(DistillObjective::kCe), kd = step.parts.values.at(DistillObjective::kKd);
  EXPECT_NEAR(ce, Golden(**golden, "ce").item<double>(), kRelTol * ce);
  EXPECT_NEAR(kd, Golden(**golden, "kd").item<double>(), kRelTol * kd);
  ASSERT_EQ(step.parts.values.size(), 5u);  // ce, kd, stream bytes and the two pairs
  for (const std::string pair : {"s0_t1", "s1_t3"}) {
    const double want = Golden(**golden, "feature." + pair).item<double>();
    EXPECT_NEAR(step.parts.values.at(DistillObjective::kFeaturePrefix + pair), want, kRelTol * want) << pair;
    ExpectAllClose(step.grads.at("distill.projection." + pair + ".weight"),
                   Golden(**golden, "grad.projection." + pair), kGradRelTol, 1e-7,
                   "projection " + pair);
  }
  int compared = 0;
  for (const auto& [name, grad] : step.grads) {
    if (name.rfind("distill.", 0) == 0) continue;
    ExpectAllClose(grad, Golden(**golden, "grad." + name), kGradRelTol, 1e-7, name);
    ++compared;
  }
  EXPECT_EQ(compared, 21);  // embed, 2 x 9 per layer, norm, lm_head
}

TEST(DistillTrainerTest, TopKLossMatchesTheReference) {
  auto golden = SafetensorsFile::Open(RefDir() + "/golden.safetensors");
  ASSERT_TRUE(golden.ok()) << golden.status();
  Step step = RunReferenceStep("topk");
  ASSERT_TRUE(step.parts.total.defined());
  ExpectAllClose(step.parts.total.detach().reshape({}), Golden(**golden, "topk.loss"), kRelTol, 0,
                 "topk loss");
  const double kd = step.parts.values.at(DistillObjective::kKd);
  EXPECT_NEAR(kd, Golden(**golden, "topk.kd").item<double>(), kRelTol * kd);
}

// The spec's soft loss reaches the step: reverse KL, JSD with its beta and
// forward KL without T^2, each against the float64 step of
// make_distill_reference.py (VARIANTS), loss, kd and every student gradient.
TEST(DistillTrainerTest, SpecLossKindsMatchTheReferenceStep) {
  auto golden = SafetensorsFile::Open(RefDir() + "/golden.safetensors");
  ASSERT_TRUE(golden.ok()) << golden.status();
  const std::pair<std::string, std::string> variants[] = {
      {"reverse_kl", "loss: reverse_kl, "}, {"jsd_b0.3", "loss: jsd, beta: 0.3, "}, {"no_t2", "t2_scale: false, "}};
  for (const auto& [name, yaml] : variants) {
    SCOPED_TRACE(name);
    const std::string prefix = "variant." + name + ".";
    Step step = RunReferenceStep("dense", yaml);
    ASSERT_TRUE(step.parts.total.defined());
    ExpectAllClose(step.parts.total.detach().reshape({}), Golden(**golden, prefix + "loss"), kRelTol, 0,
                   prefix + "loss");
    const double kd = Golden(**golden, prefix + "kd").item<double>();
    EXPECT_NEAR(step.parts.values.at(DistillObjective::kKd), kd, kRelTol * kd);
    int compared = 0;
    for (const auto& [param, grad] : step.grads) {
      if (param.rfind("distill.", 0) == 0) continue;
      ExpectAllClose(grad, Golden(**golden, prefix + "grad." + param), kGradRelTol, 1e-7, prefix + param);
      ++compared;
    }
    EXPECT_EQ(compared, 21);
  }
}

// HIDDEN sends the teacher's final hidden state and (cut) lm_head instead of
// its logits: the same loss and gradients as DENSE.
TEST(DistillTrainerTest, HiddenTransportEqualsDense) {
  Step dense = RunReferenceStep("dense");
  Step hidden = RunReferenceStep("hidden");
  ASSERT_TRUE(dense.parts.total.defined() && hidden.parts.total.defined());
  EXPECT_NEAR(hidden.parts.total.item<double>(), dense.parts.total.item<double>(), 1e-5);
  for (const auto& [name, g] : dense.grads)
    ExpectAllClose(hidden.grads.at(name), g, 1e-4, 1e-7, name);
}

TEST(DistillTrainerTest, UniformLayerMapPairsEqualRelativeDepths) {
  distill::v1::DistillSpec d;
  d.set_layer_map("uniform");
  d.set_feature_weight(0.25);
  auto pairs_of = [&](int64_t s, int64_t t) {
    auto p = PlanFeaturePairs(d, s, t);
    EXPECT_TRUE(p.ok()) << p.status();
    std::vector<std::pair<int64_t, int64_t>> out;
    for (const auto& x : *p) out.emplace_back(x.student_layer, x.teacher_layer);
    return out;
  };
  using V = std::vector<std::pair<int64_t, int64_t>>;
  EXPECT_EQ(pairs_of(2, 4), (V{{0, 1}, {1, 3}}));
  EXPECT_EQ(pairs_of(3, 4), (V{{0, 0}, {1, 2}, {2, 3}}));
  EXPECT_EQ(pairs_of(4, 2), (V{{0, 0}, {1, 0}, {2, 1}, {3, 1}}));
  EXPECT_EQ(pairs_of(3, 3), (V{{0, 0}, {1, 1}, {2, 2}}));
  auto p = PlanFeaturePairs(d, 2, 4);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ((*p)[1].name, "s1_t3");
  EXPECT_EQ((*p)[1].loss, distill::v1::MSE);
  EXPECT_DOUBLE_EQ((*p)[1].weight, 0.25);
}

// ---------------------------------------------------------------------------
// Whole jobs: a student from a config, a wider teacher with a padded
// vocabulary (72 rows for the student's 64).

constexpr char kTeacherConfig[] =
    R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 72, "hidden_size": 48,
  "intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
  "hidden_act": "silu", "tie_word_embeddings": true})";

// A directory with the student's config.json, a teacher model and token streams.
std::string MakeJobDir() {
  std::string dir = MakeTempDir("distill_trainer_test");
  WriteFile(dir + "/config.json", distill::testing::kTinyStudentConfigJson);
  auto tc = ParseModelConfig(kTeacherConfig, "teacher");
  EXPECT_TRUE(tc.ok()) << tc.status();
  LlamaForCausalLM teacher = InitModel(*tc, 11);
  EXPECT_TRUE(SaveHfModel(teacher, dir + "/teacher").ok());
  std::vector<uint32_t> ids = distill::testing::StructuredTokens(6000);
  EXPECT_TRUE(WriteTokenShard(dir + "/train.bin", ids).ok());
  ids.resize(1500);
  EXPECT_TRUE(WriteTokenShard(dir + "/val.bin", ids).ok());
  return dir;
}

distill::v1::JobSpec MakeSpec(const std::string& dir, const std::string& out,
                              const std::string& extra) {
  return ParseSpec("type: distill\nteacher: {model: " + dir + "/teacher}\n" +
                   "data: {train: " + dir + "/train.bin, eval: " + dir +
                   "/val.bin, seq_len: 16}\noutput: " + out + "\n" + extra);
}

std::vector<nlohmann::json> Records(const std::string& out, const std::string& event) {
  std::vector<nlohmann::json> records;
  std::istringstream in(ReadFile(out + "/metrics.jsonl"));
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j["event"] == event) records.push_back(j);
  }
  return records;
}

std::map<std::string, torch::Tensor> ReadAll(const std::string& path) {
  auto f = SafetensorsFile::Open(path);
  EXPECT_TRUE(f.ok()) << f.status();
  std::map<std::string, torch::Tensor> out;
  for (const auto& n : (*f)->names()) out[n] = (*f)->Get(n)->clone();
  return out;
}

TEST(DistillTrainerTest, ResumeIsBitIdenticalWithFeatureProjections) {
  const std::string dir = MakeJobDir();
  const std::string extra = "student: {init: " + dir +
                            "/config.json}\n"
                            "distill: {temperature: 2, alpha: 0.5, layer_map: uniform}\n"
                            "train: {steps: 8, micro_batch: 2, grad_accum: 2, lr: 0.01, warmup: 2, "
                            "weight_decay: 0.1, log_every: 1,\n"
                            "        threads: 1, seed: 3}\ncheckpoint: {every: 4, keep: 1}\n";
  const std::string straight = dir + "/straight", resumed = dir + "/resumed";
  auto a = RunDistill(MakeSpec(dir, straight, extra), {});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->finished);
  TrainOptions first_half;
  first_half.max_steps_this_run = 4;
  auto b1 = RunDistill(MakeSpec(dir, resumed, extra), first_half);
  ASSERT_TRUE(b1.ok()) << b1.status();
  EXPECT_EQ(b1->steps_done, 4);
  auto b2 = RunDistill(MakeSpec(dir, resumed, extra), {});
  ASSERT_TRUE(b2.ok()) << b2.status();
  EXPECT_EQ(b2->resumed_from, 4);

  auto ta = Records(straight, "train"), tb = Records(resumed, "train");
  ASSERT_EQ(ta.size(), 8u);
  ASSERT_EQ(tb.size(), 8u);
  for (size_t i = 0; i < ta.size(); ++i) {
    EXPECT_EQ(ta[i]["loss"].get<double>(), tb[i]["loss"].get<double>())
        << "step " << i + 1;  // exact
    EXPECT_EQ(ta[i]["feature_losses"], tb[i]["feature_losses"]) << "step " << i + 1;
  }
  auto wa = ReadAll(straight + "/model/model.safetensors"),
       wb = ReadAll(resumed + "/model/model.safetensors");
  ASSERT_EQ(wa.size(), wb.size());
  for (const auto& [name, t] : wa) {
    EXPECT_TRUE(torch::equal(t, wb[name])) << name;
    EXPECT_EQ(name.find("distill"), std::string::npos) << "projection exported: " << name;
  }
  // The projections (32 -> 48, one per student layer) are in the checkpoint.
  auto ckpt = ReadAll(straight + "/checkpoints/step_00000008/weights.safetensors");
  ASSERT_TRUE(ckpt.count("distill.projection.s0_t1.weight")) << "checkpoint lacks the projection";
  EXPECT_EQ(ckpt["distill.projection.s1_t2.weight"].sizes(), (std::vector<int64_t>{48, 32}));
}

// With a TeacherFactory (worker/runtime passes the remote teacher's) the
// objective uses the teacher it builds, once, from the plan's run
// configuration capturing the feature pairs' teacher layers (ascending, each
// once) and the student's directory; a colocated teacher built that way
// trains exactly as the default. Teacher ranks without a factory are refused.
TEST(DistillTrainerTest, TeacherComesFromTheFactoryWithThePlansRunConfiguration) {
  const std::string dir = MakeJobDir();
  const std::string extra =
      "student: {init: " + dir +
      "/config.json}\n"
      "distill: {logits: topk, top_k: 8, temperature: 3, features: [{student_layer: 1, "
      "teacher_layer: 2},\n"
      "  {student_layer: 0, teacher_layer: 2}, {student_layer: 0, teacher_layer: 0}]}\n"
      "train: {steps: 3, micro_batch: 2, lr: 0.01, log_every: 1, threads: 1, seed: 5}\n";
  int built = 0;
  TeacherRunConfig run;
  std::string student_dir;
  TeacherFactory factory =
      [&](const TeacherSetup& s) -> absl::StatusOr<std::unique_ptr<Teacher>> {
    ++built;
    run = s.run;
    student_dir = s.student_dir;
    auto t = ColocatedTeacher::Load(dir + "/teacher", s.student, s.student_dir, s.device, s.run);
    if (!t.ok()) return t.status();
    return std::unique_ptr<Teacher>(std::move(*t));
  };
  auto a = RunDistill(MakeSpec(dir, dir + "/factory", extra), {}, factory);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(built, 1);
  EXPECT_EQ(run.transport, distill::v1::TOPK);
  EXPECT_EQ(run.top_k, 8);
  EXPECT_EQ(run.temperature, 3.0);
  EXPECT_EQ(run.capture_layers, (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(student_dir, dir);
  auto b = RunDistill(MakeSpec(dir, dir + "/colocated", extra), {});
  ASSERT_TRUE(b.ok()) << b.status();
  auto ta = Records(dir + "/factory", "train"), tb = Records(dir + "/colocated", "train");
  ASSERT_EQ(ta.size(), 3u);
  ASSERT_EQ(tb.size(), 3u);
  for (size_t i = 0; i < ta.size(); ++i) {
    EXPECT_EQ(ta[i]["loss"].get<double>(), tb[i]["loss"].get<double>()) << "step " << i + 1;
  }

  distill::v1::JobSpec ranks = MakeSpec(dir, dir + "/ranks", extra);
  ranks.mutable_teacher()->set_ranks(1);
  auto refused = RunDistill(ranks, {});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(refused.status().message(),
            "teacher.ranks: 1 dedicated teacher ranks need an mpirun launch (2 ranks)");
}

TEST(DistillTrainerTest, ReportsTheLossSplitAndTeacherMetrics) {
  const std::string dir = MakeJobDir();
  const std::string out = dir + "/out";
  auto r = RunDistill(
      MakeSpec(
          dir, out,
          "student: {init: " + dir +
              "/config.json}\n"
              "distill: {alpha: 0.7, logits: topk, top_k: 16,\n"
              "  features: [{student_layer: 1, teacher_layer: 2, loss: cosine, weight: 0.5}]}\n"
              "train: {steps: 30, micro_batch: 4, lr: 0.01, log_every: 5, threads: 1, eval_every: "
              "15,\n"
              "        eval_batches: 4}\n"),
      {});
  ASSERT_TRUE(r.ok()) << r.status();
  auto train = Records(out, "train");
  ASSERT_EQ(train.size(), 6u);
  for (const auto& j : train) {
    const double ce = j["ce_loss"], kd = j["kd_loss"], feat = j["feature_losses"]["s1_t2"];
    // loss = alpha kd + (1 - alpha) ce + w feature, all of the same step.
    EXPECT_NEAR(j["loss"].get<double>(), 0.7 * kd + 0.3 * ce + 0.5 * feat,
                1e-5 * j["loss"].get<double>())
        << j;
    EXPECT_GT(j["teacher_s"].get<double>(), 0.0);
    EXPECT_LT(j["teacher_s"].get<double>(), j["step_s"].get<double>());
    // top-16: 16 fp32 logits + 16 int32 ids per token, one fp32 lse, and the
    // teacher's layer-2 state (48 fp32).
    EXPECT_DOUBLE_EQ(j["stream_bytes_per_token"].get<double>(), 16 * 4 + 16 * 4 + 4 + 48 * 4);
    EXPECT_GT(j["peak_rss_bytes"].get<int64_t>(), 0);
  }
  EXPECT_LT(train.back()["ce_loss"].get<double>(), train.front()["ce_loss"].get<double>());
  auto evals = Records(out, "eval");
  ASSERT_EQ(evals.size(), 2u);
  for (const auto& e : evals) {
    EXPECT_EQ(e["tokens"].get<int64_t>(), 4 * 4 * 16);
    EXPECT_GE(e["kl"].get<double>(), 0.0);
    EXPECT_GE(e["top1_agreement"].get<double>(), 0.0);
    EXPECT_LE(e["top1_agreement"].get<double>(), 1.0);
    EXPECT_NEAR(e["teacher_ppl"].get<double>(), std::exp(e["teacher_loss"].get<double>()),
                1e-6 * e["teacher_ppl"].get<double>());
  }
  EXPECT_EQ(evals[0]["teacher_loss"], evals[1]["teacher_loss"]);  // the teacher does not train
  EXPECT_EQ(r->eval_fields.scalars.count("kl"), 1u);
  EXPECT_TRUE(fs::exists(out + "/model/model.safetensors"));
}

TEST(DistillTrainerTest, LoraStudentTrainsAdaptersAndProjectionsOnly) {
  const std::string dir = MakeJobDir();
  auto r = RunDistill(MakeSpec(dir, dir + "/lora",
                               "student: {init: " + dir +
                                   "/config.json, method: lora, lora: {rank: 2}}\n"
                                   "distill: {features: [{student_layer: 0, teacher_layer: 0}]}\n"
                                   "train: {steps: 2, micro_batch: 2, threads: 1}\n"),
                      {});
  ASSERT_TRUE(r.ok()) << r.status();
  // 2 layers x (q_proj 2*32 + 32*2, v_proj 2*32 + 16*2); the projection is
  // trained too but is not the student's.
  EXPECT_EQ(r->trainable_params, 2 * (128 + 96));
  auto adapter = ReadAll(dir + "/lora/adapter/adapter_model.safetensors");
  EXPECT_EQ(adapter.size(), 8u);
  auto ckpt = ReadAll(dir + "/lora/checkpoints/step_00000002/weights.safetensors");
  EXPECT_EQ(ckpt.size(), 9u);  // 8 adapter tensors + the projection
}

struct BadJob {
  std::string distill, field, message;
};

// Test names show the field, not the struct's bytes.
void PrintTo(const BadJob& c, std::ostream* os) { *os << c.field; }

class DistillBadJobTest : public ::testing::TestWithParam<BadJob> {};

// Spec problems that need the models: errors name the field, before training.
TEST_P(DistillBadJobTest, ErrorNamesTheFieldBeforeTraining) {
  const BadJob& c = GetParam();
  const std::string dir = MakeJobDir();
  auto r = RunDistill(MakeSpec(dir, dir + "/out",
                               "student: {init: " + dir + "/config.json}\ndistill: " + c.distill +
                                   "\ntrain: {steps: 2, micro_batch: 2, threads: 1}\n"),
                      {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_EQ(std::string(r.status().message()).rfind(c.field + ": " + c.message, 0), 0u)
      << r.status();
  EXPECT_FALSE(fs::exists(dir + "/out/metrics.jsonl"));
}

INSTANTIATE_TEST_SUITE_P(
    Fields, DistillBadJobTest,
    ::testing::Values(
        BadJob{"{features: [{student_layer: 0, teacher_layer: 0}, {student_layer: 7, "
               "teacher_layer: 1}]}",
               "distill.features[1].student_layer", "7 out of range, the student has 2 layers"},
        BadJob{"{features: [{student_layer: 1, teacher_layer: 3}]}",
               "distill.features[0].teacher_layer", "3 out of range, the teacher has 3 layers"},
        BadJob{"{logits: topk, top_k: 65}", "distill.top_k", "65 exceeds the vocabulary size 64"}));

TEST(DistillTrainerTest, TeacherWithASmallerVocabularyIsRejected) {
  const std::string dir = MakeJobDir();
  std::string config = distill::testing::kTinyStudentConfigJson;
  config.replace(config.find("64"), 2, "80");  // the student's vocab_size
  WriteFile(dir + "/config.json", config);
  auto r = RunDistill(MakeSpec(dir, dir + "/out",
                               "student: {init: " + dir +
                                   "/config.json}\n"
                                   "train: {steps: 1, micro_batch: 2, threads: 1}\n"),
                      {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_EQ(std::string(r.status().message()).rfind("teacher.model: ", 0), 0u) << r.status();
}

TEST(DistillTrainerTest, FinetuneCheckpointIsNotResumedAsDistill) {
  const std::string dir = MakeJobDir();
  const std::string out = dir + "/out";
  auto ft =
      common::ParseJobSpec("type: finetune\ninit: " + dir + "/config.json\ndata: {train: " + dir +
                               "/train.bin, seq_len: 16}\noutput: " + out +
                               "\ntrain: {steps: 2, micro_batch: 2, threads: 1}\n",
                           "ft");
  ASSERT_TRUE(ft.ok());
  TrainOptions one;
  one.max_steps_this_run = 1;
  ASSERT_TRUE(RunFinetune(common::WithDefaults(*ft), one).ok());
  auto r = RunDistill(MakeSpec(dir, out,
                               "student: {init: " + dir +
                                   "/config.json}\n"
                                   "train: {steps: 2, micro_batch: 2, threads: 1}\n"),
                      {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
}

}  // namespace
}  // namespace distill::worker
