#include "worker/model/config.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/test_util/test_util.h"

namespace distill::worker {
namespace {

// config.json of TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T (1,100,048,384
// parameters as published).
constexpr char kTinyLlama[] = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 1,
  "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
  "intermediate_size": 5632, "max_position_embeddings": 2048, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 22, "num_key_value_heads": 4,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 10000.0,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.35.0",
  "use_cache": true, "vocab_size": 32000})";

// config.json of Qwen/Qwen2.5-0.5B (494,032,768 parameters as published).
constexpr char kQwen25[] = R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
  "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 24,
  "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24,
  "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.40.1", "use_cache": true, "use_sliding_window": false,
  "vocab_size": 151936})";

// config.json of Qwen/Qwen3-0.6B (596,049,920 parameters): head_dim 128 while
// hidden_size / num_attention_heads = 64.
constexpr char kQwen3[] = R"({
  "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
  "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 3072,
  "max_position_embeddings": 40960, "max_window_layers": 28, "model_type": "qwen3",
  "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null,
  "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.51.0",
  "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})";

// A tiny Llama: V=10, D=8, I=16, L=2, H=4, KV=2, head_dim=2.
constexpr char kTiny[] = R"({
  "architectures": ["LlamaForCausalLM"], "vocab_size": 10, "hidden_size": 8,
  "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
  "num_key_value_heads": 2})";

// Parses kTiny with `field` replaced (or added) with the JSON text `value`.
absl::StatusOr<ModelConfig> ParseTinyWith(const std::string& field, const std::string& value) {
  std::string text = kTiny;
  const std::string key = "\"" + field + "\": ";
  size_t at = text.find(key);
  if (at == std::string::npos) {
    text.insert(text.size() - 1, ", " + key + value);
  } else {
    size_t end = text.find_first_of(",}", at);
    text.replace(at + key.size(), end - at - key.size(), value);
  }
  return ParseModelConfig(text, "tiny/config.json");
}

// Expects InvalidArgument whose message starts with the source and contains `part`.
void ExpectInvalid(const absl::StatusOr<ModelConfig>& config, const std::string& part) {
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << config.status();
  EXPECT_EQ(config.status().message().rfind("tiny/config.json: ", 0), 0u) << config.status();
  EXPECT_NE(config.status().message().find(part), std::string::npos) << config.status();
}

void ExpectSameConfig(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.architecture, b.architecture);
  EXPECT_EQ(a.model_type, b.model_type);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.num_hidden_layers, b.num_hidden_layers);
  EXPECT_EQ(a.num_attention_heads, b.num_attention_heads);
  EXPECT_EQ(a.num_key_value_heads, b.num_key_value_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.initializer_range, b.initializer_range);
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.attention_bias, b.attention_bias);
  EXPECT_EQ(a.qkv_bias, b.qkv_bias);
  EXPECT_EQ(a.o_bias, b.o_bias);
  EXPECT_EQ(a.mlp_bias, b.mlp_bias);
  EXPECT_EQ(a.qk_norm, b.qk_norm);
  EXPECT_EQ(a.bos_token_id, b.bos_token_id);
  EXPECT_EQ(a.eos_token_id, b.eos_token_id);
  EXPECT_EQ(a.torch_dtype, b.torch_dtype);
  EXPECT_TRUE(a.rope_scaling == b.rope_scaling) << a.rope_scaling.rope_type;
  EXPECT_EQ(a.sliding_window, b.sliding_window);
  EXPECT_EQ(a.use_sliding_window, b.use_sliding_window);
  EXPECT_EQ(a.sliding_layers, b.sliding_layers);
}

// kTiny as another architecture, with `extra` fields (JSON text) added.
absl::StatusOr<ModelConfig> ParseTinyAs(const std::string& arch, const std::string& extra) {
  std::string text = kTiny;
  text.replace(text.find("LlamaForCausalLM"), 16, arch);
  if (!extra.empty()) text.insert(text.size() - 1, ", " + extra);
  return ParseModelConfig(text, "tiny/config.json");
}

TEST(ModelConfigTest, ParsesLlama) {
  auto c = ParseModelConfig(kTinyLlama, "llama/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "LlamaForCausalLM");
  EXPECT_EQ(c->model_type, "llama");
  EXPECT_EQ(c->vocab_size, 32000);
  EXPECT_EQ(c->hidden_size, 2048);
  EXPECT_EQ(c->intermediate_size, 5632);
  EXPECT_EQ(c->num_hidden_layers, 22);
  EXPECT_EQ(c->num_attention_heads, 32);
  EXPECT_EQ(c->num_key_value_heads, 4);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->max_position_embeddings, 2048);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000.0);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_FALSE(c->qkv_bias || c->o_bias || c->mlp_bias || c->qk_norm);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_id, 2);
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  EXPECT_EQ(CountParameters(*c), 1100048384);
}

// Note [Config size limits]: absurd sizes overflowed CountParameters (UBSan,
// tests/fuzz/config_fuzz) or exhausted memory writing layer_types back.
TEST(ModelConfigTest, SizesPastTheLimitsNameTheField) {
  ExpectInvalid(ParseTinyWith("hidden_size", "1099511627776"),
                "field 'hidden_size': 1099511627776 exceeds the limit 131072");
  ExpectInvalid(ParseTinyWith("num_hidden_layers", "1099511627776"),
                "field 'num_hidden_layers': 1099511627776 exceeds the limit 1024");
  ExpectInvalid(ParseTinyWith("vocab_size", "16777217"), "field 'vocab_size'");
  EXPECT_TRUE(ParseTinyWith("vocab_size", "16777216").ok());
}

TEST(ModelConfigTest, ParsesQwen2WithQkvBias) {
  auto c = ParseModelConfig(kQwen25, "qwen2/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "Qwen2ForCausalLM");
  EXPECT_EQ(c->model_type, "qwen2");
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_TRUE(c->qkv_bias);
  EXPECT_FALSE(c->o_bias || c->mlp_bias || c->qk_norm);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_DOUBLE_EQ(c->rope_theta, 1e6);
  EXPECT_EQ(CountParameters(*c), 494032768);
}

TEST(ModelConfigTest, ParsesQwen3WithQkNormAndOwnHeadDim) {
  auto c = ParseModelConfig(kQwen3, "qwen3/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "Qwen3ForCausalLM");
  EXPECT_EQ(c->model_type, "qwen3");
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_NE(c->head_dim, c->hidden_size / c->num_attention_heads);
  EXPECT_TRUE(c->qk_norm);
  EXPECT_FALSE(c->qkv_bias || c->o_bias || c->mlp_bias);
  EXPECT_EQ(c->eos_token_id, 151645);
  EXPECT_DOUBLE_EQ(c->rope_theta, 1e6);  // an integer in the JSON
  EXPECT_EQ(CountParameters(*c), 596049920);
}

TEST(ModelConfigTest, Qwen3AttentionBiasCoversQkvAndO) {
  std::string text = kQwen3;
  text.replace(text.find("\"attention_bias\": false"), 23, "\"attention_bias\": true");
  auto c = ParseModelConfig(text, "qwen3/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->qkv_bias && c->o_bias && c->qk_norm);
}

TEST(ModelConfigTest, LlamaBiasesFollowFlagsAndMistralHasNone) {
  auto llama = ParseTinyWith("attention_bias", "true, \"mlp_bias\": true");
  ASSERT_TRUE(llama.ok()) << llama.status();
  EXPECT_TRUE(llama->qkv_bias && llama->o_bias && llama->mlp_bias);
  std::string text = kTiny;
  text.replace(text.find("LlamaForCausalLM"), 16, "MistralForCausalLM");
  text.insert(text.size() - 1, R"(, "attention_bias": true, "sliding_window": null)");
  auto mistral = ParseModelConfig(text, "mistral/config.json");
  ASSERT_TRUE(mistral.ok()) << mistral.status();
  EXPECT_EQ(mistral->model_type, "mistral");
  EXPECT_FALSE(mistral->qkv_bias || mistral->o_bias || mistral->mlp_bias || mistral->qk_norm);
}

TEST(ModelConfigTest, OptionalFieldsTakeDefaults) {
  auto c = ParseModelConfig(R"({"model_type": "qwen2", "vocab_size": 10, "hidden_size": 8,
      "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
      "num_key_value_heads": null, "eos_token_id": [7, 8], "bos_token_id": null})",
                            "d/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "Qwen2ForCausalLM");  // inferred from model_type
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_EQ(c->head_dim, 4);
  // Qwen2Config's default (this test expected Llama's 2048 before RoPE
  // scaling made the value matter; transformers says 32768).
  EXPECT_EQ(c->max_position_embeddings, 32768);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(c->initializer_range, 0.02);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->bos_token_id, -1);
  EXPECT_EQ(c->eos_token_id, 7);  // the first of a list
  EXPECT_EQ(c->torch_dtype, "float32");
}

TEST(ModelConfigTest, MissingFieldIsInvalidArgumentNamingIt) {
  std::string text = kTiny;
  text.replace(text.find("\"hidden_size\": 8,"), 17, "");
  ExpectInvalid(ParseModelConfig(text, "tiny/config.json"), "missing field 'hidden_size'");
}

TEST(ModelConfigTest, WrongTypesAndNonPositiveSizesAreInvalidArgument) {
  ExpectInvalid(ParseTinyWith("hidden_size", "\"abc\""),
                "field 'hidden_size': expected a positive integer");
  ExpectInvalid(ParseTinyWith("hidden_size", "8.5"), "field 'hidden_size'");
  ExpectInvalid(ParseTinyWith("hidden_size", "null"), "missing field 'hidden_size'");
  ExpectInvalid(ParseTinyWith("num_hidden_layers", "0"), "field 'num_hidden_layers'");
  ExpectInvalid(ParseTinyWith("vocab_size", "-5"), "field 'vocab_size'");
  ExpectInvalid(ParseTinyWith("tie_word_embeddings", "1"), "field 'tie_word_embeddings'");
  ExpectInvalid(ParseTinyWith("rms_norm_eps", "\"1e-6\""), "field 'rms_norm_eps'");
  ExpectInvalid(ParseTinyWith("eos_token_id", "\"</s>\""), "field 'eos_token_id'");
  ExpectInvalid(ParseTinyWith("architectures", "\"LlamaForCausalLM\""), "field 'architectures'");
  ExpectInvalid(ParseModelConfig("{\"vocab_size\": ", "tiny/config.json"), "not valid JSON");
  ExpectInvalid(ParseModelConfig("[]", "tiny/config.json"), "not a JSON object");
}

TEST(ModelConfigTest, UnknownArchitectureIsInvalidArgument) {
  ExpectInvalid(ParseTinyWith("architectures", R"(["GPT2LMHeadModel"])"),
                "unknown architecture 'GPT2LMHeadModel' (supported: LlamaForCausalLM");
  std::string text = kTiny;
  const size_t begin = text.find("\"architectures\"");
  text.replace(begin, text.find("],") + 2 - begin, "\"model_type\": \"gpt2\",");
  ExpectInvalid(ParseModelConfig(text, "tiny/config.json"), "unknown architecture 'gpt2'");
}

TEST(ModelConfigTest, KvHeadsMustDivideHeads) {
  ExpectInvalid(ParseTinyWith("num_key_value_heads", "3"),
                "field 'num_key_value_heads': 3 does not divide num_attention_heads 4");
}

TEST(ModelConfigTest, HiddenSizeMustDivideByHeadsWithoutHeadDim) {
  ExpectInvalid(ParseTinyWith("hidden_size", "10"),
                "field 'hidden_size': 10 is not divisible by num_attention_heads 4");
  auto ok = ParseTinyWith("hidden_size", "10, \"head_dim\": 4");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->head_dim, 4);
}

TEST(ModelConfigTest, UnsupportedFeaturesAreInvalidArgument) {
  ExpectInvalid(ParseTinyWith("rope_scaling", R"({"rope_type": "longrope", "factor": 2.0})"),
                "field 'rope_scaling.rope_type': 'longrope' is not supported");
  ExpectInvalid(ParseTinyWith("rope_parameters", R"({"rope_type": "mrope", "rope_theta": 1.0})"),
                "field 'rope_parameters.rope_type': 'mrope' is not supported");
  ExpectInvalid(ParseTinyWith("rope_scaling",
                              R"({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0})"),
                "missing field 'rope_scaling.high_freq_factor'");
  ExpectInvalid(ParseTinyWith("rope_scaling", R"({"type": "linear"})"),
                "missing field 'rope_scaling.factor'");
  ExpectInvalid(ParseTinyWith("rope_scaling", R"({"type": "linear", "factor": 2, "beta_fast": 4})"),
                "field 'rope_scaling.beta_fast': not supported with rope_type 'linear'");
  ExpectInvalid(ParseTinyWith("rope_scaling", R"({"type": "yarn", "factor": 2, "truncate": 1})"),
                "field 'rope_scaling.truncate': expected true or false");
  ExpectInvalid(ParseTinyWith("partial_rotary_factor", "0.5"), "field 'partial_rotary_factor'");
  ExpectInvalid(ParseTinyWith("rope_parameters", R"({"full_attention": {"rope_type": "default"}})"),
                "field 'rope_parameters': RoPE parameters per layer type are not supported");
  ExpectInvalid(ParseTinyWith("hidden_act", "\"gelu\""), "field 'hidden_act'");
  ExpectInvalid(
      ParseTinyAs("Qwen2ForCausalLM", R"("layer_types": ["full_attention", "sliding_attention"])"),
      "field 'layer_types': layer 1 is sliding_attention but there is no window");
  ExpectInvalid(ParseTinyAs("Qwen2ForCausalLM", R"("layer_types": ["full_attention"])"),
                "field 'layer_types': expected a list of 2 strings");
  ExpectInvalid(
      ParseTinyAs("Qwen3ForCausalLM", R"("layer_types": ["full_attention", "chunked_attention"])"),
      "field 'layer_types': entry 1 is \"chunked_attention\"");
  // Mistral reads no layer_types: one that disagrees with its window is an error.
  ExpectInvalid(
      ParseTinyAs("MistralForCausalLM",
                  R"("sliding_window": 4, "layer_types": ["full_attention", "full_attention"])"),
      "field 'layer_types': layer 0 is \"full_attention\" but MistralForCausalLM");
  ExpectInvalid(ParseTinyAs("MistralForCausalLM", R"("sliding_window": 0)"),
                "field 'sliding_window'");
  // Plain RoPE spelled out is accepted; so are the window fields on Llama,
  // which LlamaForCausalLM does not read (it attends fully, as here).
  EXPECT_TRUE(ParseTinyWith("rope_scaling", R"({"rope_type": "default"})").ok());
  auto llama = ParseTinyWith("sliding_window", "4, \"use_sliding_window\": true");
  ASSERT_TRUE(llama.ok()) << llama.status();
  EXPECT_EQ(AttentionWindow(*llama, 0), 0);
}

// The 4.x and 5.x spellings of the same RoPE mean the same config.
TEST(ModelConfigTest, ReadsRopeScalingInBothConfigStyles) {
  auto v4 = ParseTinyWith("rope_theta", R"(500000.0, "max_position_embeddings": 131072,
      "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})");
  auto v5 = ParseTinyWith("max_position_embeddings", R"(131072,
      "rope_parameters": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_theta": 500000.0})");
  ASSERT_TRUE(v4.ok()) << v4.status();
  ASSERT_TRUE(v5.ok()) << v5.status();
  ExpectSameConfig(*v4, *v5);
  EXPECT_EQ(v4->rope_scaling.rope_type, "llama3");
  EXPECT_DOUBLE_EQ(v4->rope_theta, 5e5);
  EXPECT_DOUBLE_EQ(v4->rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(v4->rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(v4->rope_scaling.original_max_position_embeddings, 8192);

  // The old key "type"; a non-null rope_scaling wins over rope_parameters;
  // rope_theta in the dict wins over the top-level one.
  auto old = ParseTinyWith("rope_scaling", R"({"type": "dynamic", "factor": 2.0},
      "rope_parameters": {"rope_type": "linear", "factor": 3.0}, "rope_theta": 7.0)");
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->rope_scaling.rope_type, "dynamic");
  EXPECT_DOUBLE_EQ(old->rope_scaling.factor, 2.0);
  EXPECT_DOUBLE_EQ(old->rope_theta, 7.0);
  auto inner = ParseTinyWith("rope_parameters", R"({"rope_type": "default", "rope_theta": 9.0},
      "rope_theta": 7.0)");
  ASSERT_TRUE(inner.ok()) << inner.status();
  EXPECT_DOUBLE_EQ(inner->rope_theta, 9.0);

  // yarn: original_max_position_embeddings defaults to max_position_embeddings
  // and a top-level one wins; optional knobs stay absent unless given.
  auto yarn = ParseTinyWith("rope_scaling", R"({"type": "yarn", "factor": 4.0, "beta_fast": 8},
      "max_position_embeddings": 4096)");
  ASSERT_TRUE(yarn.ok()) << yarn.status();
  EXPECT_EQ(yarn->rope_scaling.original_max_position_embeddings, 4096);
  EXPECT_EQ(yarn->rope_scaling.beta_fast, 8.0);
  EXPECT_FALSE(yarn->rope_scaling.beta_slow.has_value() || yarn->rope_scaling.truncate.has_value());
  auto phi = ParseTinyWith("rope_scaling", R"({"type": "yarn", "factor": 4.0,
      "original_max_position_embeddings": 1024}, "original_max_position_embeddings": 512)");
  ASSERT_TRUE(phi.ok()) << phi.status();
  EXPECT_EQ(phi->rope_scaling.original_max_position_embeddings, 512);
}

TEST(ModelConfigTest, SlidingWindowsAsTransformersAppliesThem) {
  // Mistral: sliding_window on every layer; absent is MistralConfig's 4096.
  auto mistral = ParseTinyAs("MistralForCausalLM", "");
  ASSERT_TRUE(mistral.ok()) << mistral.status();
  EXPECT_EQ(AttentionWindow(*mistral, 0), 4096);
  EXPECT_EQ(AttentionWindow(*mistral, 1), 4096);
  EXPECT_EQ(mistral->max_position_embeddings, 131072);
  auto full = ParseTinyAs("MistralForCausalLM", R"("sliding_window": null)");
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(AttentionWindow(*full, 0), 0);

  // Qwen2: only with use_sliding_window, on layers >= max_window_layers.
  auto off = ParseTinyAs("Qwen2ForCausalLM", R"("sliding_window": 4, "max_window_layers": 0)");
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_EQ(AttentionWindow(*off, 1), 0);
  auto on =
      ParseTinyAs("Qwen2ForCausalLM",
                  R"("use_sliding_window": true, "sliding_window": 4, "max_window_layers": 1)");
  ASSERT_TRUE(on.ok()) << on.status();
  EXPECT_EQ(AttentionWindow(*on, 0), 0);
  EXPECT_EQ(AttentionWindow(*on, 1), 4);
  // layer_types (transformers 5) overrides max_window_layers.
  auto typed = ParseTinyAs("Qwen3ForCausalLM", R"("use_sliding_window": true, "sliding_window": 3,
      "max_window_layers": 1, "head_dim": 2, "layer_types": ["sliding_attention", "full_attention"])");
  ASSERT_TRUE(typed.ok()) << typed.status();
  EXPECT_EQ(AttentionWindow(*typed, 0), 3);
  EXPECT_EQ(AttentionWindow(*typed, 1), 0);
  EXPECT_EQ(AttentionWindow(*typed, 2), 0);  // out of range: no window
}

TEST(ModelConfigTest, Qwen3HeadDimDefaultsTo128) {
  // Qwen3Config's head_dim default is 128, not hidden_size / heads.
  auto c = ParseTinyAs("Qwen3ForCausalLM", "");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->max_position_embeddings, 32768);
}

TEST(ModelConfigTest, ToJsonRoundTrips) {
  std::vector<std::string> texts = {kTinyLlama, kQwen25, kQwen3, kTiny};
  auto with = [](std::string text, const std::string& extra) {
    text.insert(text.size() - 1, ", " + extra);
    return text;
  };
  texts.push_back(with(kTiny, R"("rope_scaling": {"rope_type": "linear", "factor": 2.5})"));
  texts.push_back(with(kTiny, R"("rope_parameters": {"rope_type": "dynamic", "factor": 2.0})"));
  texts.push_back(with(kTiny, R"("rope_scaling": {"rope_type": "llama3", "factor": 8.0,
      "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64})"));
  texts.push_back(with(kTiny, R"("rope_scaling": {"type": "yarn", "factor": 4.0,
      "original_max_position_embeddings": 256, "attention_factor": 1.5, "beta_fast": 16,
      "beta_slow": 2, "mscale": 1, "mscale_all_dim": 0.5, "truncate": false})"));
  std::string mistral = kTiny;
  mistral.replace(mistral.find("LlamaForCausalLM"), 16, "MistralForCausalLM");
  texts.push_back(mistral);
  texts.push_back(with(mistral, R"("sliding_window": null)"));
  std::string qwen3 = kQwen3;
  qwen3.replace(qwen3.find("\"use_sliding_window\": false"), 27, "\"use_sliding_window\": true");
  qwen3.replace(qwen3.find("\"max_window_layers\": 28"), 23, "\"max_window_layers\": 20");
  qwen3.replace(qwen3.find("\"sliding_window\": null"), 22, "\"sliding_window\": 512");
  texts.push_back(qwen3);
  for (const std::string& text : texts) {
    auto c = ParseModelConfig(text, "in/config.json");
    ASSERT_TRUE(c.ok()) << c.status();
    const std::string json = ModelConfigToJson(*c);
    EXPECT_NE(json.find("\n  \"architectures\": [\n"), std::string::npos) << json;
    EXPECT_NE(json.find("\"hidden_act\": \"silu\""), std::string::npos) << json;
    auto back = ParseModelConfig(json, "out/config.json");
    ASSERT_TRUE(back.ok()) << back.status() << "\n" << json;
    ExpectSameConfig(*c, *back);
  }
}

TEST(ModelConfigTest, LoadModelConfigReadsFileAndNamesItInErrors) {
  const std::string dir = distill::testing::MakeTempDir("config_test");
  auto missing = LoadModelConfig(dir + "/config.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(dir + "/config.json"), std::string::npos);

  distill::testing::WriteFile(dir + "/config.json", kQwen3);
  auto c = LoadModelConfig(dir + "/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 128);

  distill::testing::WriteFile(dir + "/config.json", R"({"architectures": ["LlamaForCausalLM"]})");
  auto bad = LoadModelConfig(dir + "/config.json");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message().rfind(dir + "/config.json: missing field", 0), 0u)
      << bad.status();
}

TEST(ModelConfigTest, CountParametersOfTinyConfigs) {
  // kTiny (V=10, D=8, I=16, L=2, H=4, KV=2, hd=2), untied, no biases:
  //   embed_tokens 10*8 = 80, lm_head 80
  //   per layer: q 8*4*2 = 64, k 8*2*2 = 32, v 32, o 8*8 = 64 -> 192;
  //              mlp 3*8*16 = 384; two norms 16 -> 592; two layers 1184
  //   final norm 8 -> 80 + 80 + 1184 + 8 = 1352
  auto c = ParseModelConfig(kTiny, "tiny/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(CountParameters(*c), 1352);

  // + attention biases (q 8, k 4, v 4, o 8 = 24) and mlp biases (16 + 16 + 8 = 40)
  // per layer: 1352 + 2 * 64 = 1480.
  auto biased = ParseTinyWith("attention_bias", "true, \"mlp_bias\": true");
  ASSERT_TRUE(biased.ok()) << biased.status();
  EXPECT_EQ(CountParameters(*biased), 1480);

  // Tied embeddings drop lm_head: 1352 - 80 = 1272.
  auto tied = ParseTinyWith("tie_word_embeddings", "true");
  ASSERT_TRUE(tied.ok()) << tied.status();
  EXPECT_EQ(CountParameters(*tied), 1272);

  // Qwen3, tied, head_dim 4: q 8*16 = 128, k 8*8 = 64, v 64, o 16*8 = 128,
  // q/k norms 4 + 4 -> 392; mlp 384; norms 16 -> 792 per layer; 2 layers 1584;
  // + embed 80 + final norm 8 = 1672.
  std::string text = kTiny;
  text.replace(text.find("LlamaForCausalLM"), 16, "Qwen3ForCausalLM");
  text.insert(text.size() - 1, R"(, "head_dim": 4, "tie_word_embeddings": true)");
  auto qwen3 = ParseModelConfig(text, "tiny/config.json");
  ASSERT_TRUE(qwen3.ok()) << qwen3.status();
  EXPECT_EQ(CountParameters(*qwen3), 1672);
}

}  // namespace
}  // namespace distill::worker
