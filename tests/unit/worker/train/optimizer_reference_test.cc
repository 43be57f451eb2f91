// AdamW, ClipGradNorm and LearningRate against golden numbers from an
// independent reference: tests/reference/make_reference.py runs
// torch.optim.AdamW (two param groups: weight decay on matrices only) and
// torch.nn.utils.clip_grad_norm_; LearningRate against transformers'
// schedules (tests/reference/hf_schedule.py).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "tests/test_util/reference_util.h"
#include "tests/test_util/test_util.h"
#include "worker/model/hf_io.h"
#include "worker/model/llama.h"
#include "worker/model/safetensors.h"
#include "worker/train/optimizer.h"

namespace distill::worker {
namespace {
using distill::testing::Golden;

// Note [Optimizer tolerance]: our float32 update against torch's float32
// update must agree to 1e-5 relative to the largest reference magnitude of
// the tensor (absolute floor 1e-7): max|a - b| <= 1e-5 * max|b|. Parameters
// are O(0.1..1) and one step moves them by ~lr = 1e-2, so a missing bias
// correction or misplaced weight decay (~1e-3 of the value) is far outside.
constexpr double kRelTol = 1e-5;
constexpr double kAbsFloor = 1e-7;
// The schedule is closed-form double arithmetic on both sides, in the same
// operation order (only libm's cos could differ, by an ulp or so).
constexpr double kScheduleRelTol = 1e-12;

void ExpectAllClose(const torch::Tensor& actual, const torch::Tensor& expected,
                    const std::string& what) {
  distill::testing::ExpectAllClose(actual, expected, kRelTol, kAbsFloor, what);
}

const char* const kConfigs[] = {"llama_gqa", "llama_tied", "qwen2", "qwen3", "llama_bias"};

std::string RefPath(const std::string& rel) { return distill::testing::ReferencePath(rel); }
using distill::testing::ReadJson;

AdamWOptions ReferenceOptions(const std::string& name, double* lr) {
  const nlohmann::json j = ReadJson(RefPath(name + "/adamw.json"));
  EXPECT_TRUE(j.is_object()) << name << "/adamw.json";
  AdamWOptions options;
  options.beta1 = j.value("/betas/0"_json_pointer, 0.0);
  options.beta2 = j.value("/betas/1"_json_pointer, 0.0);
  options.eps = j.value("eps", 0.0);
  options.weight_decay = j.value("weight_decay", 0.0);
  *lr = j.value("lr", 0.0);
  return options;
}

// A reference model whose parameters carry the reference gradients.
struct Case {
  LlamaForCausalLM model{nullptr};
  std::shared_ptr<SafetensorsFile> golden;
  AdamWOptions options;
  double lr = 0.0;
};

void LoadCase(const std::string& name, Case* c) {
  auto model = LoadHfModel(RefPath(name));
  ASSERT_TRUE(model.ok()) << model.status();
  c->model = *std::move(model);
  auto golden = SafetensorsFile::Open(RefPath(name + "/golden.safetensors"));
  ASSERT_TRUE(golden.ok()) << golden.status();
  c->golden = *std::move(golden);
  c->options = ReferenceOptions(name, &c->lr);
  for (auto& item : c->model->named_parameters()) {
    torch::Tensor g = Golden(*c->golden, "grad." + item.key());
    ASSERT_TRUE(g.defined()) << item.key();
    item.value().mutable_grad() = g;
  }
}

void ExpectParamsMatch(const Case& c, const std::string& prefix, const std::string& name) {
  for (const auto& item : c.model->named_parameters()) {
    ExpectAllClose(item.value(), Golden(*c.golden, prefix + item.key()),
                   name + " " + prefix + item.key());
  }
}

TEST(AdamWReferenceTest, TrainableParamsDecayMatricesOnly) {
  Case c;
  ASSERT_NO_FATAL_FAILURE(LoadCase("qwen2", &c));
  const std::vector<NamedParam> params = TrainableParams(*c.model);
  EXPECT_EQ(params.size(), c.model->parameters().size());
  for (const NamedParam& p : params) {
    EXPECT_EQ(p.decay, p.param.dim() >= 2) << p.name;
  }
}

TEST(AdamWReferenceTest, OneStepMatchesTorchAdamW) {
  for (const char* name : kConfigs) {
    SCOPED_TRACE(name);
    Case c;
    ASSERT_NO_FATAL_FAILURE(LoadCase(name, &c));
    AdamW opt(TrainableParams(*c.model), c.options);
    opt.Step(c.lr);
    EXPECT_EQ(opt.step_count(), 1);
    ExpectParamsMatch(c, "after.", name);
  }
}

// The second step, with the same grads, checks bias correction at t = 2.
TEST(AdamWReferenceTest, TwoStepsMatchTorchAdamW) {
  for (const char* name : kConfigs) {
    SCOPED_TRACE(name);
    Case c;
    ASSERT_NO_FATAL_FAILURE(LoadCase(name, &c));
    AdamW opt(TrainableParams(*c.model), c.options);
    opt.Step(c.lr);
    opt.Step(c.lr);
    EXPECT_EQ(opt.step_count(), 2);
    ExpectParamsMatch(c, "after2.", name);
  }
}

// Note [Unfused AdamW]: Note [Fused AdamW] takes CPU float32 contiguous
// tensors only; CUDA and bf16 parameters take the tensor-op path in
// AdamW::Step. The same reference steps in float64 run that path on this
// machine (float64 against torch's float32 goldens stays far inside
// Note [Optimizer tolerance]; a dropped bias correction is ~1e-3 off).
void ToFloat64(Case* c) {
  c->model->to(torch::kDouble);
  for (auto& item : c->model->named_parameters()) {
    item.value().mutable_grad() = Golden(*c->golden, "grad." + item.key()).to(torch::kDouble);
    ASSERT_EQ(item.value().scalar_type(), torch::kDouble) << item.key();
  }
}

TEST(AdamWReferenceTest, UnfusedPathMatchesTorchAdamWOverTwoSteps) {
  for (const char* name : kConfigs) {
    SCOPED_TRACE(name);
    Case c;
    ASSERT_NO_FATAL_FAILURE(LoadCase(name, &c));
    ASSERT_NO_FATAL_FAILURE(ToFloat64(&c));
    AdamW opt(TrainableParams(*c.model), c.options);
    opt.Step(c.lr);
    ExpectParamsMatch(c, "after.", name);
    opt.Step(c.lr);
    EXPECT_EQ(opt.step_count(), 2);
    ExpectParamsMatch(c, "after2.", name);
  }
}

// Restoring StateDict() (deep-copied, as a checkpoint would) into a fresh
// optimizer over the same parameter values gives a bit-identical next step.
TEST(AdamWReferenceTest, StateDictRoundTripGivesIdenticalNextStep) {
  Case a, b;
  ASSERT_NO_FATAL_FAILURE(LoadCase("llama_gqa", &a));
  ASSERT_NO_FATAL_FAILURE(LoadCase("llama_gqa", &b));
  AdamW opt_a(TrainableParams(*a.model), a.options);
  opt_a.Step(a.lr);

  std::map<std::string, torch::Tensor> state;
  for (const auto& [name, t] : opt_a.StateDict()) state[name] = t.clone();
  {
    torch::NoGradGuard no_grad;
    auto pa = a.model->named_parameters();
    for (auto& item : b.model->named_parameters()) item.value().copy_(pa[item.key()]);
  }
  AdamW opt_b(TrainableParams(*b.model), b.options);
  ASSERT_TRUE(opt_b.LoadStateDict(state).ok());
  EXPECT_EQ(opt_b.step_count(), 1);

  opt_a.Step(a.lr);
  opt_b.Step(b.lr);
  auto pa = a.model->named_parameters();
  for (const auto& item : b.model->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), pa[item.key()])) << item.key();
  }
  ExpectParamsMatch(b, "after2.", "llama_gqa restored");
}

TEST(AdamWReferenceTest, LoadStateDictMissingTensorIsInvalidArgument) {
  Case c;
  ASSERT_NO_FATAL_FAILURE(LoadCase("llama_gqa", &c));
  AdamW opt(TrainableParams(*c.model), c.options);
  opt.Step(c.lr);
  std::map<std::string, torch::Tensor> state;
  for (const auto& [name, t] : opt.StateDict()) state[name] = t.clone();
  const std::string missing = "model.norm.weight.exp_avg_sq";
  ASSERT_EQ(state.erase(missing), 1u);
  AdamW fresh(TrainableParams(*c.model), c.options);
  const absl::Status status = fresh.LoadStateDict(state);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find(missing), std::string::npos) << status;
}

LrSchedule ScheduleOf(const std::string& name) {
  if (name == "linear") return LrSchedule::kLinear;
  if (name == "constant") return LrSchedule::kConstant;
  EXPECT_EQ(name, "cosine");
  return LrSchedule::kCosine;
}

// Every step of transformers' schedules as a real optimizer saw them
// (tests/reference/hf_schedule.py), from step 0 to past total_steps.
TEST(LearningRateTest, MatchesTransformersSchedules) {
  const nlohmann::json j = ReadJson(RefPath("hf_schedule/schedules.json"));
  ASSERT_TRUE(j.is_object());
  std::map<std::string, int> per_schedule;
  for (const auto& c : j.at("cases")) {
    const std::string name = c.at("name").get<std::string>();
    const LrSchedule schedule = ScheduleOf(c.at("schedule").get<std::string>());
    const int64_t total = c.at("total_steps").get<int64_t>();
    const int64_t warmup = c.at("warmup").get<int64_t>();
    const double lr = c.at("lr").get<double>(), min_lr = c.at("min_lr").get<double>();
    const std::vector<double> expected = c.at("lrs").get<std::vector<double>>();
    ASSERT_GT(static_cast<int64_t>(expected.size()), total) << name;
    for (int64_t s = 0; s < static_cast<int64_t>(expected.size()); ++s) {
      EXPECT_NEAR(LearningRate(s, total, warmup, lr, min_lr, schedule), expected[s],
                  kScheduleRelTol * std::abs(expected[s]))
          << name << " step " << s;
    }
    ++per_schedule[c.at("schedule").get<std::string>()];
  }
  // Warmup 0, 1 and longer, warmup == total_steps, min_lr 0 and == lr.
  EXPECT_EQ(per_schedule["cosine"], 7);
  EXPECT_EQ(per_schedule["linear"], 3);
  EXPECT_EQ(per_schedule["constant"], 3);
}

TEST(LearningRateTest, DefaultScheduleIsCosine) {
  for (int64_t s : {0, 3, 7, 12}) {
    EXPECT_EQ(LearningRate(s, 10, 2, 1e-3, 1e-4),
              LearningRate(s, 10, 2, 1e-3, 1e-4, LrSchedule::kCosine));
  }
}

std::vector<NamedParam> ClipParams(const SafetensorsFile& file) {
  std::vector<NamedParam> params;
  for (int i = 0; file.Contains("grad." + std::to_string(i)); ++i) {
    torch::Tensor g = Golden(file, "grad." + std::to_string(i));
    torch::Tensor p = torch::zeros_like(g).requires_grad_(true);
    p.mutable_grad() = g;
    params.push_back({"p" + std::to_string(i), p, true});
  }
  return params;
}

TEST(AdamWReferenceTest, ClipGradNormMatchesTorch) {
  auto file = SafetensorsFile::Open(RefPath("clip.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  const SafetensorsFile& golden = **file;
  std::vector<NamedParam> params = ClipParams(golden);
  ASSERT_FALSE(params.empty());
  const double max_norm = Golden(golden, "max_norm").item<double>();
  const double total = Golden(golden, "total_norm").item<double>();
  ASSERT_GT(total, max_norm);  // the case clips

  EXPECT_NEAR(ClipGradNorm(params, max_norm), total, kRelTol * total);
  for (size_t i = 0; i < params.size(); ++i) {
    ExpectAllClose(params[i].param.grad(), Golden(golden, "clipped." + std::to_string(i)),
                   "clipped." + std::to_string(i));
  }
}

TEST(AdamWReferenceTest, ClipGradNormBelowMaxLeavesGrads) {
  auto file = SafetensorsFile::Open(RefPath("clip.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  const SafetensorsFile& golden = **file;
  std::vector<NamedParam> params = ClipParams(golden);
  ASSERT_FALSE(params.empty());
  const double total = Golden(golden, "total_norm").item<double>();

  EXPECT_NEAR(ClipGradNorm(params, 10 * total), total, kRelTol * total);
  for (size_t i = 0; i < params.size(); ++i) {
    ExpectAllClose(params[i].param.grad(), Golden(golden, "grad." + std::to_string(i)),
                   "grad." + std::to_string(i));
  }
}

}  // namespace
}  // namespace distill::worker
