#include "worker/train/trainer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/spec.h"
#include "tests/test_util/test_util.h"
#include "tests/test_util/tiny_models.h"
#include "worker/data/token_shard.h"
#include "worker/model/config.h"
#include "worker/model/lora.h"
#include "worker/model/safetensors.h"

namespace distill::worker {
namespace {
namespace fs = std::filesystem;
using distill::testing::MakeTempDir;
using distill::testing::ReadFile;
using distill::testing::WriteFile;

// A directory with config.json and a token stream with some structure to learn.
std::string MakeData() {
  std::string dir = MakeTempDir("trainer_test");
  WriteFile(dir + "/config.json", distill::testing::kTinyStudentConfigJson);
  std::vector<uint32_t> ids = distill::testing::StructuredTokens(6000);
  EXPECT_TRUE(WriteTokenShard(dir + "/train.bin", ids).ok());
  ids.resize(1500);
  EXPECT_TRUE(WriteTokenShard(dir + "/val.bin", ids).ok());
  return dir;
}

distill::v1::JobSpec Spec(const std::string& data_dir, const std::string& out, const std::string& extra) {
  std::string text = "type: finetune\ninit: " + data_dir + "/config.json\n" +
                     "data: {train: " + data_dir + "/train.bin, eval: " + data_dir + "/val.bin, seq_len: 16}\n" +
                     "output: " + out + "\n" + extra;
  auto spec = common::ParseJobSpec(text, "test");
  EXPECT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(common::ValidateJobSpec(*spec).ok()) << common::ValidateJobSpec(*spec);
  return common::WithDefaults(*spec);
}

// step -> `field` of the train records in metrics.jsonl.
std::map<int64_t, double> LossTrace(const std::string& out, const std::string& field = "loss") {
  std::map<int64_t, double> trace;
  std::istringstream in(ReadFile(out + "/metrics.jsonl"));
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j["event"] == "train") trace[j["step"].get<int64_t>()] = j[field].get<double>();
  }
  return trace;
}

std::map<std::string, torch::Tensor> ReadAll(const std::string& path) {
  auto f = SafetensorsFile::Open(path);
  EXPECT_TRUE(f.ok()) << f.status();
  std::map<std::string, torch::Tensor> out;
  for (const auto& n : (*f)->names()) out[n] = (*f)->Get(n)->clone();
  return out;
}

void ExpectResumeIsBitIdentical(const std::string& method_yaml, const std::string& weights_file,
                                const std::string& train_extra = "") {
  const std::string data = MakeData();
  const std::string extra = method_yaml +
                            "train: {steps: 8, micro_batch: 2, grad_accum: 2, lr: 0.01, warmup: 2, "
                            "weight_decay: 0.1, log_every: 1, threads: 1, seed: 3" + train_extra + "}\n"
                            "checkpoint: {every: 4, keep: 1}\n";
  const std::string straight = data + "/straight", resumed = data + "/resumed";
  auto a = RunFinetune(Spec(data, straight, extra), {});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->finished);

  TrainOptions first_half;
  first_half.max_steps_this_run = 4;
  auto b1 = RunFinetune(Spec(data, resumed, extra), first_half);
  ASSERT_TRUE(b1.ok()) << b1.status();
  EXPECT_FALSE(b1->finished);
  EXPECT_EQ(b1->steps_done, 4);
  auto b2 = RunFinetune(Spec(data, resumed, extra), {});
  ASSERT_TRUE(b2.ok()) << b2.status();
  EXPECT_TRUE(b2->finished);
  EXPECT_EQ(b2->resumed_from, 4);

  auto ta = LossTrace(straight), tb = LossTrace(resumed);
  ASSERT_EQ(ta.size(), 8u);
  ASSERT_EQ(tb.size(), 8u);
  for (const auto& [step, loss] : ta) EXPECT_EQ(loss, tb[step]) << "step " << step;  // exact, not approximate
  auto wa = ReadAll(straight + "/" + weights_file), wb = ReadAll(resumed + "/" + weights_file);
  ASSERT_EQ(wa.size(), wb.size());
  for (const auto& [name, t] : wa) EXPECT_TRUE(torch::equal(t, wb[name])) << name;
}

TEST(TrainerTest, ResumeIsBitIdenticalForFullFineTuning) {
  ExpectResumeIsBitIdentical("method: full\n", "model/model.safetensors");
}

TEST(TrainerTest, ResumeIsBitIdenticalForLoraWithDropout) {
  ExpectResumeIsBitIdentical("method: lora\nlora: {rank: 4, alpha: 8, dropout: 0.2}\n",
                             "adapter/adapter_model.safetensors");
}

// bf16 weights: the fp32 master weights and moments are in the checkpoint
// (optimizer-00000-of-00001.safetensors), so resuming repeats the run exactly.
TEST(TrainerTest, ResumeIsBitIdenticalWithBf16WeightsAndMasterWeights) {
  ExpectResumeIsBitIdentical("method: full\n", "model/model.safetensors", ", precision: bf16");
}

// Note [Activation checkpointing] (worker/model/activation_checkpoint.cc):
// recomputing each layer in backward runs the same ops on the same inputs
// with the same dropout draws, so training is unchanged bit for bit.
void ExpectCheckpointingChangesNothing(const std::string& method_yaml, const std::string& weights_file) {
  const std::string data = MakeData();
  const std::string train = "train: {steps: 4, micro_batch: 2, grad_accum: 2, lr: 0.01, log_every: 1, threads: 1, seed: 4";
  auto a = RunFinetune(Spec(data, data + "/plain", method_yaml + train + "}\n"), {});
  auto b = RunFinetune(Spec(data, data + "/ckpt", method_yaml + train + ", activation_checkpointing: true}\n"), {});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  auto ta = LossTrace(data + "/plain"), tb = LossTrace(data + "/ckpt");
  ASSERT_EQ(ta.size(), 4u);
  for (const auto& [step, loss] : ta) EXPECT_EQ(loss, tb[step]) << "step " << step;
  auto wa = ReadAll(data + "/plain/" + weights_file), wb = ReadAll(data + "/ckpt/" + weights_file);
  ASSERT_EQ(wa.size(), wb.size());
  for (const auto& [name, t] : wa) EXPECT_TRUE(torch::equal(t, wb[name])) << name;
}

TEST(TrainerTest, ActivationCheckpointingTrainsTheSameFullModel) {
  ExpectCheckpointingChangesNothing("method: full\n", "model/model.safetensors");
}

TEST(TrainerTest, ActivationCheckpointingTrainsTheSameLoraWithDropout) {
  ExpectCheckpointingChangesNothing("method: lora\nlora: {rank: 4, alpha: 8, dropout: 0.2}\n",
                                    "adapter/adapter_model.safetensors");
}

TEST(TrainerTest, GradAccumulationEqualsOneLargerMicroBatch) {
  const std::string data = MakeData();
  const std::string common_train = "lr: 0.01, log_every: 1, threads: 1, seed: 5, clip: 0";
  auto a = RunFinetune(Spec(data, data + "/a", "train: {steps: 3, micro_batch: 4, grad_accum: 1, " + common_train + "}\n"), {});
  auto b = RunFinetune(Spec(data, data + "/b", "train: {steps: 3, micro_batch: 2, grad_accum: 2, " + common_train + "}\n"), {});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  auto ta = LossTrace(data + "/a"), tb = LossTrace(data + "/b");
  ASSERT_EQ(ta.size(), 3u);
  for (const auto& [step, loss] : ta) EXPECT_NEAR(loss, tb[step], 1e-5 * std::abs(loss)) << step;
  // The gradient itself (its norm before clipping), not only Adam's
  // scale-free update, must match: a missing 1/grad_accum would double it.
  auto ga = LossTrace(data + "/a", "grad_norm"), gb = LossTrace(data + "/b", "grad_norm");
  for (const auto& [step, norm] : ga) EXPECT_NEAR(norm, gb[step], 1e-5 * norm) << step;
  // Adam normalises tiny gradients, so summation-order rounding grows to
  // ~1e-5 in the weights after 3 steps at lr 1e-2; a real difference is O(lr).
  auto wa = ReadAll(data + "/a/model/model.safetensors"), wb = ReadAll(data + "/b/model/model.safetensors");
  for (const auto& [name, t] : wa) {
    EXPECT_LE((t - wb[name]).abs().max().item<double>(), 5e-5) << name;
  }
}

// Note [Token-weighted accumulation]: on packed prompt/completion data, whose
// micro-batches count different numbers of targets, two micro-batches of 2
// rows give the gradient of one micro-batch of the same 4 rows. Averaging the
// two micro-batch means instead (1 / grad_accum) would not.
TEST(TrainerTest, PackedGradAccumulationWeighsMicroBatchesByCountedTargets) {
  const std::string dir = MakeTempDir("trainer_packed");
  auto config = nlohmann::json::parse(distill::testing::kTinyStudentConfigJson);
  config["vocab_size"] = 256;  // byte ids
  WriteFile(dir + "/config.json", config.dump());
  std::string jsonl;
  for (int i = 0; i < 24; ++i) {
    const std::string prompt(static_cast<size_t>(3 + (i * 7) % 11), static_cast<char>('a' + i % 26));
    const std::string completion(static_cast<size_t>(1 + (i * 5) % 9), static_cast<char>('z' - i % 26));
    jsonl += nlohmann::json{{"prompt", prompt}, {"completion", completion}}.dump() + "\n";
  }
  WriteFile(dir + "/train.jsonl", jsonl);
  auto spec = [&](const std::string& out, int micro, int accum) {
    std::string text = "type: finetune\ninit: " + dir + "/config.json\noutput: " + dir + "/" + out + "\n" +
                       "data: {format: prompt_completion, train: " + dir + "/train.jsonl, seq_len: 16}\n" +
                       "train: {steps: 2, micro_batch: " + std::to_string(micro) + ", grad_accum: " +
                       std::to_string(accum) + ", lr: 0.01, log_every: 1, threads: 1, seed: 5, clip: 0}\n";
    auto parsed = common::ParseJobSpec(text, "test");
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_TRUE(common::ValidateJobSpec(*parsed).ok()) << common::ValidateJobSpec(*parsed);
    return common::WithDefaults(*parsed);
  };
  auto a = RunFinetune(spec("a", 4, 1), {});
  auto b = RunFinetune(spec("b", 2, 2), {});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  auto ga = LossTrace(dir + "/a", "grad_norm"), gb = LossTrace(dir + "/b", "grad_norm");
  ASSERT_EQ(ga.size(), 2u);
  for (const auto& [step, norm] : ga) EXPECT_NEAR(norm, gb[step], 1e-5 * norm) << step;
  auto wa = ReadAll(dir + "/a/model/model.safetensors"), wb = ReadAll(dir + "/b/model/model.safetensors");
  for (const auto& [name, t] : wa) EXPECT_LE((t - wb[name]).abs().max().item<double>(), 5e-5) << name;
}

TEST(TrainerTest, LossFallsAndOutputsAreWritten) {
  const std::string data = MakeData();
  const std::string out = data + "/out";
  auto r = RunFinetune(Spec(data, out, "train: {steps: 40, micro_batch: 4, lr: 0.01, log_every: 1, threads: 1, "
                                      "eval_every: 20}\ncheckpoint: {every: 10, keep: 2}\n"), {});
  ASSERT_TRUE(r.ok()) << r.status();
  auto trace = LossTrace(out);
  EXPECT_LT(trace[40], trace[1] - 0.5);
  EXPECT_TRUE(r->has_eval);
  EXPECT_TRUE(fs::exists(out + "/model/config.json"));
  EXPECT_TRUE(fs::exists(out + "/model/model.safetensors"));
  // keep: 2 -> only the two newest checkpoints remain (30 and the final 40).
  std::vector<std::string> ckpts;
  for (const auto& e : fs::directory_iterator(out + "/checkpoints")) ckpts.push_back(e.path().filename().string());
  std::sort(ckpts.begin(), ckpts.end());
  EXPECT_EQ(ckpts, (std::vector<std::string>{"step_00000030", "step_00000040"}));
  // A rerun of a finished job does no work.
  auto again = RunFinetune(Spec(data, out, "train: {steps: 40, micro_batch: 4, lr: 0.01, threads: 1}\n"), {});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->resumed_from, 40);
  EXPECT_TRUE(again->finished);
}

// transformers' learning rates of the case in hf_schedule/schedules.json
// (tests/reference/hf_schedule.py) with these parameters: lrs[s] is what the
// optimizer runs 0-based step s with.
std::vector<double> TransformersSchedule(const std::string& schedule, int64_t warmup, int64_t total, double lr,
                                         double min_lr) {
  const std::string path = distill::testing::ReferencePath("hf_schedule/schedules.json");
  const nlohmann::json j = distill::testing::ReadJson(path);
  if (!j.is_object()) return {};
  for (const auto& c : j.at("cases")) {
    if (c.at("schedule") == schedule && c.at("warmup") == warmup && c.at("total_steps") == total &&
        c.at("lr").get<double>() == lr && c.at("min_lr").get<double>() == min_lr) {
      return c.at("lrs").get<std::vector<double>>();
    }
  }
  ADD_FAILURE() << "no " << schedule << " case with warmup " << warmup << " in " << path;
  return {};
}

// The learning rate AdamW actually ran a step with, recovered from the
// weights before (`before`) and after it and the optimizer state after it
// (weight decay 0): p_before - p_after = lr * m_hat / (sqrt(v_hat) + eps),
// fitted by least squares over every parameter.
double EffectiveLr(const std::map<std::string, torch::Tensor>& before,
                   const std::map<std::string, torch::Tensor>& after,
                   const std::map<std::string, torch::Tensor>& optimizer) {
  const int64_t t = optimizer.at("step").item<int64_t>();
  const double bias1 = 1 - std::pow(0.9, static_cast<double>(t));
  const double bias2 = 1 - std::pow(0.999, static_cast<double>(t));
  double num = 0, den = 0;
  for (const auto& [name, p] : after) {
    EXPECT_TRUE(before.count(name)) << name;
    if (!before.count(name)) continue;
    const torch::Tensor m = optimizer.at(name + ".exp_avg").to(torch::kDouble) / bias1;
    const torch::Tensor v = optimizer.at(name + ".exp_avg_sq").to(torch::kDouble) / bias2;
    const torch::Tensor u = m / (v.sqrt() + 1e-8);
    const torch::Tensor d = before.at(name).to(torch::kDouble) - p.to(torch::kDouble);
    num += (d * u).sum().item<double>();
    den += (u * u).sum().item<double>();
  }
  return den > 0 ? num / den : 0;
}

// The spec's schedule drives the optimizer: every logged step's lr, and the
// lr each update really used (from the checkpoints), are transformers'
// values (warmup from lr 0, then the cosine decay).
TEST(TrainerTest, EveryStepRunsWithTransformersScheduleLr) {
  const std::string data = MakeData();
  auto config = LoadModelConfig(data + "/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_NO_FATAL_FAILURE(distill::testing::SaveRandomModel(*config, 11, data + "/base"));
  const std::vector<double> want = TransformersSchedule("cosine", 3, 7, 0.01, 0.0);
  ASSERT_GE(want.size(), 7u);

  const std::string out = data + "/sched";
  std::string text = "type: finetune\nmodel: " + data + "/base\n" + "data: {train: " + data +
                     "/train.bin, seq_len: 16}\noutput: " + out + "\n" +
                     "train: {steps: 7, micro_batch: 2, lr: 0.01, min_lr: 0, warmup: 3, schedule: cosine, "
                     "weight_decay: 0, clip: 0, log_every: 1, threads: 1, seed: 3}\n"
                     "checkpoint: {every: 1, keep: 7}\n";
  auto spec = common::ParseJobSpec(text, "test");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_TRUE(common::ValidateJobSpec(*spec).ok()) << common::ValidateJobSpec(*spec);
  auto r = RunFinetune(common::WithDefaults(*spec), {});
  ASSERT_TRUE(r.ok()) << r.status();

  const auto logged = LossTrace(out, "lr");
  ASSERT_EQ(logged.size(), 7u);
  std::map<std::string, torch::Tensor> before = ReadAll(data + "/base/model.safetensors");
  for (int64_t s = 0; s < 7; ++s) {
    EXPECT_NEAR(logged.at(s + 1), want[s], 1e-12 * want[2]) << "logged lr of step " << s + 1;
    char dir[64];
    std::snprintf(dir, sizeof(dir), "/checkpoints/step_%08lld/", static_cast<long long>(s + 1));
    const auto after = ReadAll(out + dir + "weights.safetensors");
    ASSERT_EQ(after.size(), before.size()) << dir;
    // float32 weights: the fit is good to ~1e-6 of the peak lr.
    EXPECT_NEAR(EffectiveLr(before, after, ReadAll(out + dir + "optimizer.safetensors")), want[s], 1e-4 * 0.01)
        << "lr the update of step " << s + 1 << " used";
    before = after;
  }
}

TEST(TrainerTest, LoraTrainsOnlyAdaptersAndLeavesBaseUntouched) {
  const std::string data = MakeData();
  auto r = RunFinetune(Spec(data, data + "/lora", "method: lora\nlora: {rank: 2, target_modules: [q_proj, down_proj]}\n"
                                                  "train: {steps: 3, micro_batch: 2, threads: 1}\n"), {});
  ASSERT_TRUE(r.ok()) << r.status();
  // 2 layers x (q_proj: 2*32 + 32*2, down_proj: 2*64 + 32*2) = 2 x (128 + 192)
  EXPECT_EQ(r->trainable_params, 640);
  auto adapter = ReadAll(data + "/lora/adapter/adapter_model.safetensors");
  EXPECT_EQ(adapter.size(), 8u);
  EXPECT_TRUE(adapter.count("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));
}

// The spec's lora.rslora reaches the adapter the run trains and writes: peft
// reads use_rslora from it (alpha / sqrt(r); the peft forward of such an
// adapter is LoraPeftTest's), and the run resumes from it with that scaling.
TEST(TrainerTest, SpecRsloraReachesTheTrainedAdapter) {
  const std::string data = MakeData();
  for (const bool rslora : {true, false}) {
    SCOPED_TRACE(rslora ? "rslora" : "plain");
    const std::string out = data + (rslora ? "/rslora" : "/plain");
    auto r = RunFinetune(Spec(data, out, std::string("method: lora\nlora: {rank: 4, alpha: 8, rslora: ") +
                                             (rslora ? "true" : "false") +
                                             "}\ntrain: {steps: 2, micro_batch: 2, threads: 1}\n"),
                         {});
    ASSERT_TRUE(r.ok()) << r.status();
    auto adapter = LoadAdapterConfig(out + "/adapter");
    ASSERT_TRUE(adapter.ok()) << adapter.status();
    EXPECT_EQ(adapter->rslora, rslora);
    EXPECT_DOUBLE_EQ(adapter->Scaling(), rslora ? 8.0 / 2.0 : 8.0 / 4.0);
  }
}

TEST(TrainerTest, TrainsDirectlyOnJsonlText) {
  const std::string data = MakeData();
  std::string jsonl;
  for (int i = 0; i < 40; ++i) jsonl += "{\"text\": \"0123456789:;<=>?0123456789:;<=>?\"}\n";  // bytes < 64
  WriteFile(data + "/train.jsonl", jsonl);
  std::string text = "type: finetune\ninit: " + data + "/config.json\n" + "data: {train: " + data +
                     "/train.jsonl, seq_len: 16}\noutput: " + data + "/jsonl_out\n" +
                     "train: {steps: 2, micro_batch: 2, threads: 1}\n";
  auto spec = common::ParseJobSpec(text, "test");
  ASSERT_TRUE(spec.ok() && common::ValidateJobSpec(*spec).ok());
  auto r = RunFinetune(common::WithDefaults(*spec), {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(fs::exists(data + "/train.jsonl.bytes.bin"));
}

TEST(TrainerTest, TokenOutsideVocabularyIsAClearError) {
  const std::string data = MakeData();
  ASSERT_TRUE(WriteTokenShard(data + "/train.bin", std::vector<uint32_t>(100, 64)).ok());
  auto r = RunFinetune(Spec(data, data + "/out", "train: {steps: 1, threads: 1}\n"), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("train.bin"), std::string::npos) << r.status();
}

}  // namespace
}  // namespace distill::worker
