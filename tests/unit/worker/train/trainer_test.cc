#include "worker/train/trainer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/spec.h"
#include "tests/test_util.h"
#include "worker/data/token_shard.h"
#include "worker/model/safetensors.h"

namespace distill::worker {
namespace {
namespace fs = std::filesystem;
using distill::testing::MakeTempDir;
using distill::testing::ReadFile;
using distill::testing::WriteFile;

constexpr char kConfig[] = R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 64, "hidden_size": 32,
  "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
  "hidden_act": "silu", "tie_word_embeddings": false})";

// A directory with config.json and a token stream with some structure to learn.
std::string MakeData() {
  std::string dir = MakeTempDir("trainer_test");
  WriteFile(dir + "/config.json", kConfig);
  std::vector<uint32_t> ids;
  uint32_t x = 1;
  for (int i = 0; i < 6000; ++i) {
    x = (x * 1103515245u + 12345u) & 0x7fffffffu;
    ids.push_back(i % 3 == 0 ? (x >> 8) % 64 : (ids.empty() ? 0 : (ids.back() + 1) % 64));
  }
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

void ExpectResumeIsBitIdentical(const std::string& method_yaml, const std::string& weights_file) {
  const std::string data = MakeData();
  const std::string extra = method_yaml +
                            "train: {steps: 8, micro_batch: 2, grad_accum: 2, lr: 0.01, warmup: 2, "
                            "weight_decay: 0.1, log_every: 1, threads: 1, seed: 3}\n"
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
