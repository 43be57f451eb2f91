#include "worker/model/hf_io.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "tests/test_util/test_util.h"
#include "worker/model/safetensors.h"

namespace distill::worker {
namespace {
namespace fs = std::filesystem;
using distill::testing::MakeTempDir;
using distill::testing::ReadFile;
using distill::testing::WriteFile;

ModelConfig TinyConfig(bool tied) {
  ModelConfig c;
  c.vocab_size = 30;
  c.hidden_size = 16;
  c.intermediate_size = 20;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 8;
  c.tie_word_embeddings = tied;
  return c;
}

TEST(HfIoTest, SaveThenLoadGivesTheSameModel) {
  for (bool tied : {false, true}) {
    const std::string dir = MakeTempDir("hf_io") + "/model";
    LlamaForCausalLM model = InitModel(TinyConfig(tied), 3);
    ASSERT_TRUE(SaveHfModel(model, dir).ok());
    auto file = SafetensorsFile::Open(dir + "/model.safetensors");
    ASSERT_TRUE(file.ok());
    EXPECT_EQ((*file)->Contains("lm_head.weight"), !tied);  // HF omits the tied head
    EXPECT_TRUE((*file)->Contains("model.layers.1.self_attn.k_proj.weight"));
    auto loaded = LoadHfModel(dir);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    torch::Tensor ids = torch::randint(0, 30, {2, 5}, torch::kLong);
    EXPECT_TRUE(torch::equal(model->forward(ids), (*loaded)->forward(ids)));
  }
}

TEST(HfIoTest, Bf16SaveIsCloseAndRecordsDtype) {
  const std::string dir = MakeTempDir("hf_io_bf16") + "/model";
  LlamaForCausalLM model = InitModel(TinyConfig(false), 3);
  ASSERT_TRUE(SaveHfModel(model, dir, torch::kBFloat16).ok());
  EXPECT_EQ(nlohmann::json::parse(ReadFile(dir + "/config.json"))["torch_dtype"], "bfloat16");
  auto loaded = LoadHfModel(dir);
  ASSERT_TRUE(loaded.ok());
  auto a = model->named_parameters(), b = (*loaded)->named_parameters();
  for (const auto& p : a) {
    EXPECT_EQ(b[p.key()].scalar_type(), torch::kFloat);
    EXPECT_TRUE(torch::allclose(p.value(), b[p.key()], 1e-2, 1e-3)) << p.key();
  }
}

TEST(HfIoTest, BadWeightsAreErrorsNamingFileAndTensor) {
  const std::string dir = MakeTempDir("hf_io_bad") + "/model";
  LlamaForCausalLM model = InitModel(TinyConfig(false), 3);
  ASSERT_TRUE(SaveHfModel(model, dir).ok());
  auto weights = BaseWeights(model);

  // Missing tensor.
  std::vector<std::pair<std::string, torch::Tensor>> missing(weights.begin() + 1, weights.end());
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", missing).ok());
  auto r = LoadHfModel(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(weights[0].first), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find(dir), std::string::npos) << r.status();

  // Wrong shape.
  auto reshaped = weights;
  reshaped[0].second = torch::zeros({3, 3});
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", reshaped).ok());
  r = LoadHfModel(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("shape"), std::string::npos) << r.status();

  // Unexpected extra tensor.
  auto extra = weights;
  extra.emplace_back("model.layers.9.mlp.up_proj.weight", torch::zeros({2}));
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", extra).ok());
  r = LoadHfModel(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model.layers.9.mlp.up_proj.weight"), std::string::npos)
      << r.status();

  // NaN and Inf weights (issue 20: they loaded unnoticed).
  auto poisoned = weights;
  poisoned[1].second = poisoned[1].second.detach().clone();
  poisoned[1].second.view(-1)[0] = std::nan("");
  poisoned[1].second.view(-1)[1] = INFINITY;
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", poisoned).ok());
  r = LoadHfModel(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), dir + ": tensor '" + weights[1].first +
                                      "' holds 2 NaN or infinite value(s) of " +
                                      std::to_string(weights[1].second.numel()));

  // Older checkpoints' rotary buffers are ignored.
  auto rotary = weights;
  rotary.emplace_back("model.layers.0.self_attn.rotary_emb.inv_freq", torch::zeros({4}));
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", rotary).ok());
  EXPECT_TRUE(LoadHfModel(dir).ok());
}

TEST(HfIoTest, MissingConfigOrWeightsAreErrors) {
  const std::string dir = MakeTempDir("hf_io_missing");
  auto r = LoadHfModel(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("config.json"), std::string::npos) << r.status();
  LlamaForCausalLM model = InitModel(TinyConfig(false), 3);
  ASSERT_TRUE(SaveHfModel(model, dir + "/m").ok());
  fs::remove(dir + "/m/model.safetensors");
  r = LoadHfModel(dir + "/m");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model.safetensors"), std::string::npos) << r.status();
}

// The adapter directory peft's save_pretrained wrote (tests/reference/hf_peft.py)
// passed as a model: an error that says what it is, and the model peft's
// merge_and_unload + save_pretrained wrote loads as a plain model.
TEST(HfIoTest, PeftAdapterDirIsNotAModel) {
  const std::string ref = distill::testing::ReferenceDir() + "/hf_peft";
  auto r = LoadHfModel(ref + "/rslora/adapter");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("rslora/adapter: holds a LoRA adapter"), std::string::npos)
      << r.status();
  auto merged = LoadHfModel(ref + "/rslora/merged");
  EXPECT_TRUE(merged.ok()) << merged.status();
}

TEST(HfIoTest, SaveRefusesUnmergedAdapters) {
  LlamaForCausalLM model = InitModel(TinyConfig(false), 3);
  model->model->layers[0]->as<DecoderLayerImpl>()->self_attn->q_proj->EnableLora(
      2, 1.0, 0.0, at::detail::createCPUGenerator(0));
  auto st = SaveHfModel(model, MakeTempDir("hf_io_lora") + "/m");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
}

// PartParameters counts what LlamaForCausalLM(config, part) allocates.
TEST(HfIoTest, PartParametersCountsWhatThePartAllocates) {
  for (bool tied : {false, true}) {
    const ModelConfig c = TinyConfig(tied);
    for (const ModelPart& part : {ModelPart{}, ModelPart{0, 1, true, false}, ModelPart{1, 2, false, true},
                                  ModelPart{1, 1, false, false}}) {
      LlamaForCausalLM model(c, part);
      int64_t numel = 0;
      for (const auto& p : model->parameters()) numel += p.numel();
      EXPECT_EQ(PartParameters(c, part), numel)
          << "tied " << tied << " layers [" << part.layer_begin << ", " << part.layer_end << ")";
    }
    EXPECT_EQ(PartParameters(c, ModelPart{}), CountParameters(c));
  }
}

// Note [Model fits memory]: refused before anything is allocated, naming the
// config and both sizes; a teacher stage's part is what counts.
TEST(HfIoTest, AModelLargerThanTheHostIsRefusedNamingItsConfig) {
  const ModelConfig c = TinyConfig(false);  // 2 * 30 * 16 + 2 layers + 16 parameters
  const int64_t bytes = 4 * CountParameters(c);
  EXPECT_TRUE(CheckModelFits(c, ModelPart{}, "m/config.json", bytes).ok());
  EXPECT_TRUE(CheckModelFits(c, ModelPart{}, "m/config.json", 0).ok());  // unknown host
  absl::Status st = CheckModelFits(c, ModelPart{}, "m/config.json", bytes - 1);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find(absl::StrCat("m/config.json: the model's ", CountParameters(c),
                                           " parameters need ")),
            std::string::npos)
      << st;
  EXPECT_NE(st.message().find("more than this host's"), std::string::npos) << st;
  const ModelPart stage{1, 2, false, true};
  EXPECT_TRUE(CheckModelFits(c, stage, "t/config.json", 4 * PartParameters(c, stage)).ok());
  st = CheckModelFits(c, stage, "t/config.json", 4 * PartParameters(c, stage) - 1);
  EXPECT_NE(st.message().find("this rank's part of the model has"), std::string::npos) << st;

  // A model each of whose sizes passes Note [Config size limits] but which
  // no host holds: 1024 layers of width 131072.
  ModelConfig huge = c;
  huge.hidden_size = 131072;
  huge.intermediate_size = 1048576;
  huge.num_hidden_layers = 1024;
  huge.num_attention_heads = huge.num_key_value_heads = 1024;
  huge.head_dim = 128;
  st = CheckModelFits(huge, "huge/config.json");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_NE(st.message().find("PiB in float32"), std::string::npos) << st;
}

}  // namespace
}  // namespace distill::worker
