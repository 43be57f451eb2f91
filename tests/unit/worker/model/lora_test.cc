#include "worker/model/lora.h"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "tests/test_util/reference_util.h"
#include "tests/test_util/test_util.h"
#include "tests/test_util/tiny_models.h"
#include "worker/model/hf_io.h"
#include "worker/model/safetensors.h"

namespace distill::worker {
namespace {
using distill::testing::ExpectAllClose;
using distill::testing::Golden;
using distill::testing::MakeTempDir;
using distill::testing::ReadFile;
using distill::testing::WriteFile;

ModelConfig TinyConfig() { return distill::testing::TinyLlamaConfig(); }

// Gives every adapter non-zero B so that the adapter changes the output.
void RandomizeAdapters(LlamaForCausalLM& model) {
  torch::NoGradGuard g;
  torch::manual_seed(11);
  for (auto& [path, lin] : NamedLinears(model)) {
    if (lin->has_lora()) lin->lora_B.normal_(0, 0.5);
  }
}

TEST(LoraTest, OnlyAdaptersTrainAndScalingIsAlphaOverRank) {
  LlamaForCausalLM model = InitModel(TinyConfig(), 1);
  LoraConfig cfg;
  cfg.rank = 4;
  cfg.alpha = 8;
  cfg.target_modules = {"q_proj", "up_proj"};
  ASSERT_TRUE(ApplyLora(model, cfg, 0).ok());
  for (const auto& p : model->named_parameters()) {
    EXPECT_EQ(p.value().requires_grad(), p.key().find(".lora_") != std::string::npos) << p.key();
  }
  auto q = model->model->layers[0]->as<DecoderLayerImpl>()->self_attn->q_proj;
  EXPECT_DOUBLE_EQ(q->lora_scaling, 2.0);
  EXPECT_EQ(q->lora_A.sizes(), (std::vector<int64_t>{4, 16}));
  EXPECT_EQ(q->lora_B.sizes(), (std::vector<int64_t>{16, 4}));
  EXPECT_TRUE(torch::all(q->lora_B == 0).item<bool>());  // PEFT init: B = 0, output unchanged
  EXPECT_LE(q->lora_A.abs().max().item<double>(), 1.0 / std::sqrt(16.0));
  cfg.rslora = true;
  EXPECT_DOUBLE_EQ(cfg.Scaling(), 8.0 / 2.0);  // alpha / sqrt(r)
}

TEST(LoraTest, ForwardAddsScaledLowRankPath) {
  LlamaForCausalLM model = InitModel(TinyConfig(), 1);
  LoraConfig cfg;
  cfg.rank = 3;
  cfg.alpha = 6;
  ASSERT_TRUE(ApplyLora(model, cfg, 0).ok());
  RandomizeAdapters(model);
  auto v = model->model->layers[1]->as<DecoderLayerImpl>()->self_attn->v_proj;
  torch::Tensor x = torch::randn({5, 16});
  torch::Tensor expected =
      torch::matmul(x, v->weight.t()) +
      (6.0 / 3.0) * torch::matmul(torch::matmul(x, v->lora_A.t()), v->lora_B.t());
  EXPECT_TRUE(torch::allclose(v->forward(x), expected, 1e-5, 1e-6));
}

TEST(LoraTest, MergedWeightEqualsWPlusScaledBA) {
  LlamaForCausalLM model = InitModel(TinyConfig(), 1);
  LoraConfig cfg;
  cfg.rank = 4;
  cfg.alpha = 12;
  cfg.target_modules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                        "gate_proj", "up_proj", "down_proj"};
  ASSERT_TRUE(ApplyLora(model, cfg, 0).ok());
  RandomizeAdapters(model);
  std::map<std::string, torch::Tensor> expected;
  for (auto& [path, lin] : NamedLinears(model)) {
    expected[path] =
        lin->weight.detach() + (12.0 / 4.0) * torch::matmul(lin->lora_B, lin->lora_A).detach();
  }
  torch::Tensor ids = torch::randint(0, 40, {2, 6}, torch::kLong);
  torch::Tensor before = model->forward(ids).detach();
  MergeLora(model);
  for (auto& [path, lin] : NamedLinears(model)) {
    EXPECT_FALSE(lin->has_lora()) << path;
    EXPECT_TRUE(torch::allclose(lin->weight, expected[path], 1e-6, 1e-7)) << path;
  }
  for (const auto& p : model->named_parameters())
    EXPECT_EQ(p.key().find("lora"), std::string::npos) << p.key();
  EXPECT_TRUE(torch::allclose(model->forward(ids), before, 1e-4, 1e-5));
}

TEST(LoraTest, SavesPeftLayoutAndLoadsItBack) {
  const std::string dir = MakeTempDir("lora_test");
  LlamaForCausalLM model = InitModel(TinyConfig(), 1);
  LoraConfig cfg;
  cfg.rank = 2;
  cfg.alpha = 5;
  cfg.dropout = 0.1;
  cfg.rslora = true;
  cfg.target_modules = {"q_proj", "down_proj"};
  ASSERT_TRUE(ApplyLora(model, cfg, 7).ok());
  RandomizeAdapters(model);
  ASSERT_TRUE(SaveAdapter(model, cfg, dir + "/adapter", "/models/base").ok());

  auto j = nlohmann::json::parse(ReadFile(dir + "/adapter/adapter_config.json"));
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["task_type"], "CAUSAL_LM");
  EXPECT_EQ(j["r"], 2);
  EXPECT_EQ(j["lora_alpha"], 5.0);
  EXPECT_EQ(j["use_rslora"], true);
  EXPECT_EQ(j["target_modules"], nlohmann::json({"q_proj", "down_proj"}));
  EXPECT_EQ(j["base_model_name_or_path"], "/models/base");

  auto file = SafetensorsFile::Open(dir + "/adapter/adapter_model.safetensors");
  ASSERT_TRUE(file.ok());
  std::vector<std::string> expected_keys;
  for (int layer = 0; layer < 2; ++layer) {
    for (std::string m : {"mlp.down_proj", "self_attn.q_proj"}) {
      for (std::string ab : {"lora_A", "lora_B"}) {
        expected_keys.push_back("base_model.model.model.layers." + std::to_string(layer) + "." + m +
                                "." + ab + ".weight");
      }
    }
  }
  std::vector<std::string> names = (*file)->names();
  std::sort(names.begin(), names.end());
  std::sort(expected_keys.begin(), expected_keys.end());
  EXPECT_EQ(names, expected_keys);

  auto loaded_cfg = LoadAdapterConfig(dir + "/adapter");
  ASSERT_TRUE(loaded_cfg.ok());
  EXPECT_EQ(loaded_cfg->rank, 2);
  EXPECT_TRUE(loaded_cfg->rslora);
  EXPECT_EQ(loaded_cfg->target_modules, cfg.target_modules);

  LlamaForCausalLM other = InitModel(TinyConfig(), 1);  // same base weights
  ASSERT_TRUE(LoadAdapter(other, dir + "/adapter").ok());
  model->eval();
  other->eval();
  torch::Tensor ids = torch::randint(0, 40, {2, 6}, torch::kLong);
  EXPECT_TRUE(torch::equal(model->forward(ids), other->forward(ids)));
}

TEST(LoraTest, UnsupportedOrBrokenAdaptersAreClearErrors) {
  const std::string dir = MakeTempDir("lora_bad");
  LlamaForCausalLM model = InitModel(TinyConfig(), 1);
  LoraConfig cfg;
  ASSERT_TRUE(ApplyLora(model, cfg, 0).ok());
  ASSERT_TRUE(SaveAdapter(model, cfg, dir + "/a", "base").ok());
  const std::string good = ReadFile(dir + "/a/adapter_config.json");
  struct Case {
    std::string field, value;
  } cases[] = {{"use_dora", "true"},
               {"r", "0"},
               {"target_modules", "\".*proj\""},
               {"peft_type", "\"IA3\""},
               {"fan_in_fan_out", "true"}};
  for (const auto& c : cases) {
    auto j = nlohmann::json::parse(good);
    j[c.field] = nlohmann::json::parse(c.value);
    WriteFile(dir + "/a/adapter_config.json", j.dump());
    auto st = LoadAdapterConfig(dir + "/a");
    ASSERT_FALSE(st.ok()) << c.field;
    EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(st.status().message().find(c.field), std::string::npos) << st.status();
    EXPECT_NE(st.status().message().find("adapter_config.json"), std::string::npos) << st.status();
  }
  // An adapter for other target modules than the file holds: missing tensor.
  auto j = nlohmann::json::parse(good);
  j["target_modules"] = {"q_proj", "v_proj", "o_proj"};
  WriteFile(dir + "/a/adapter_config.json", j.dump());
  LlamaForCausalLM fresh = InitModel(TinyConfig(), 1);
  auto st = LoadAdapter(fresh, dir + "/a");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("o_proj.lora_A.weight"), std::string::npos) << st;
}

TEST(LoraTest, NoMatchingTargetIsAnError) {
  LlamaForCausalLM model = InitModel(TinyConfig(), 1);
  LoraConfig cfg;
  cfg.target_modules = {"proj"};  // matches no whole module name
  EXPECT_EQ(ApplyLora(model, cfg, 0).code(), absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------
// Against peft itself: tests/reference/hf_peft.py makes adapters with
// get_peft_model + save_pretrained (random A and B; "rslora": r=4, alpha=6,
// use_rslora, all seven projections; "plain": r=3, alpha=5, four), and writes
// what PeftModel.from_pretrained computes with them.

// fp32 against fp32 (peft's forward of the same weights): 1e-5 relative to the
// largest logit, the brief's tolerance; a wrong scaling (alpha/r vs
// alpha/sqrt(r) = 3x here), key or transposition is off by O(1).
constexpr double kPeftRelTol = 1e-5;
const char* const kPeftAdapters[] = {"rslora", "plain"};

std::string PeftDir() { return distill::testing::ReferenceDir() + "/hf_peft"; }

LlamaForCausalLM LoadPeftBase() { return distill::testing::LoadModelOrFail(PeftDir() + "/base"); }

TEST(LoraPeftTest, PeftAdapterGivesPeftLogitsAndLoss) {
  for (const std::string name : kPeftAdapters) {
    SCOPED_TRACE(name);
    LlamaForCausalLM model = LoadPeftBase();
    ASSERT_TRUE(model);
    ASSERT_TRUE(LoadAdapter(model, PeftDir() + "/" + name + "/adapter").ok());
    auto golden = SafetensorsFile::Open(PeftDir() + "/" + name + "/golden.safetensors");
    ASSERT_TRUE(golden.ok()) << golden.status();
    torch::Tensor ids = Golden(**golden, "input_ids");
    torch::Tensor want = Golden(**golden, "logits");
    ASSERT_TRUE(ids.defined() && want.defined());
    model->eval();
    torch::NoGradGuard no_grad;
    torch::Tensor logits = model->forward(ids);
    ExpectAllClose(logits, want, kPeftRelTol, 1.0, name + " logits");
    // transformers' causal-LM loss: mean CE of logits[:, :-1] against ids[:, 1:].
    const int64_t v = logits.size(-1);
    torch::Tensor loss =
        torch::nn::functional::cross_entropy(logits.narrow(1, 0, ids.size(1) - 1).reshape({-1, v}),
                                             ids.narrow(1, 1, ids.size(1) - 1).reshape({-1}));
    ExpectAllClose(loss.reshape({1}), Golden(**golden, "loss"), kPeftRelTol, 1.0, name + " loss");
  }
}

TEST(LoraPeftTest, MergeEqualsPeftMergeAndUnload) {
  for (const std::string name : kPeftAdapters) {
    SCOPED_TRACE(name);
    LlamaForCausalLM model = LoadPeftBase();
    ASSERT_TRUE(model);
    ASSERT_TRUE(LoadAdapter(model, PeftDir() + "/" + name + "/adapter").ok());
    MergeLora(model);
    auto merged = SafetensorsFile::Open(PeftDir() + "/" + name + "/merged/model.safetensors");
    ASSERT_TRUE(merged.ok()) << merged.status();
    int compared = 0;
    for (auto& [key, w] : BaseWeights(model)) {
      // Both compute W + (B @ A) * scaling in fp32 with the same operation
      // order, so 1e-6 relative to max|W| leaves only rounding room.
      ExpectAllClose(w, Golden(**merged, key), 1e-6, 0.0, name + " " + key);
      ++compared;
    }
    EXPECT_EQ(compared, static_cast<int>((*merged)->names().size()));
  }
}

// Every peft field that changes what the adapter computes, set in the
// adapter_config.json peft wrote, is refused naming the file and the field.
TEST(LoraPeftTest, UnsupportedPeftFieldsAreClearErrors) {
  const std::string good = ReadFile(PeftDir() + "/rslora/adapter/adapter_config.json");
  ASSERT_FALSE(good.empty());
  ASSERT_TRUE(LoadAdapterConfig(PeftDir() + "/rslora/adapter").ok());
  const std::string dir = MakeTempDir("lora_peft_bad");
  const std::pair<std::string, std::string> cases[] = {
      {"modules_to_save", R"(["lm_head"])"},
      {"lora_bias", "true"},
      {"layers_to_transform", "[0]"},
      {"exclude_modules", R"(["k_proj"])"},
      {"trainable_token_indices", "[1, 2]"},
      {"target_parameters", R"(["mlp.experts.down_proj"])"},
      {"alora_invocation_tokens", "[5]"},
      {"rank_pattern", R"({"q_proj": 2})"},
      {"layer_replication", "[[0, 2], [1, 2]]"},
      {"init_lora_weights", R"("pissa")"},
      {"task_type", R"("SEQ_CLS")"},
      {"bias", R"("lora_only")"},
      {"target_modules", R"("all-linear")"},
      {"some_future_variant", R"({"k": 1})"},
  };
  for (const auto& [field, value] : cases) {
    auto j = nlohmann::json::parse(good);
    j[field] = nlohmann::json::parse(value);
    WriteFile(dir + "/adapter_config.json", j.dump());
    auto st = LoadAdapterConfig(dir);
    ASSERT_FALSE(st.ok()) << field;
    EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_NE(st.status().message().find("'" + field + "'"), std::string::npos) << st.status();
    EXPECT_NE(st.status().message().find(dir + "/adapter_config.json"), std::string::npos)
        << st.status();
  }
  // Neutral values of the same fields (what peft writes by default) load.
  auto j = nlohmann::json::parse(good);
  j["modules_to_save"] = nlohmann::json::array();
  j["init_lora_weights"] = "gaussian";
  j["some_future_flag"] = false;
  WriteFile(dir + "/adapter_config.json", j.dump());
  EXPECT_TRUE(LoadAdapterConfig(dir).ok());
}

}  // namespace
}  // namespace distill::worker
