// The Hugging Face config.json of a Llama-family causal LM.
//
// Supported architectures: LlamaForCausalLM, MistralForCausalLM (full
// attention), Qwen2ForCausalLM (q/k/v bias) and Qwen3ForCausalLM (q/k RMSNorm).
// Parsing checks every field the model needs and names the file and field in
// errors. Plain value type; thread-compatible.
#ifndef DISTILL_WORKER_MODEL_CONFIG_H_
#define DISTILL_WORKER_MODEL_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace distill::worker {

struct ModelConfig {
  std::string architecture = "LlamaForCausalLM";  // architectures[0]
  std::string model_type = "llama";               // llama | mistral | qwen2 | qwen3
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads; must divide it
  int64_t head_dim = 0;             // defaults to hidden_size / num_attention_heads
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  double initializer_range = 0.02;  // std of the normal init of weights
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // bias on q/k/v/o (Llama's flag); Qwen2: q/k/v only
  bool qkv_bias = false;        // bias on q/k/v (true for qwen2, or attention_bias)
  bool o_bias = false;          // bias on o_proj (attention_bias for llama)
  bool mlp_bias = false;        // bias on gate/up/down (Llama's mlp_bias)
  bool qk_norm = false;         // RMSNorm over head_dim on q and k (qwen3)
  int64_t bos_token_id = -1;    // -1 when absent
  int64_t eos_token_id = -1;
  std::string torch_dtype = "float32";
};

// Parses config.json text. `source` names it in errors ("DIR/config.json:
// missing field hidden_size"). Unknown architectures, hidden_act other than
// silu, and rope_scaling are InvalidArgument.
absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text, const std::string& source);

// Reads and parses the file at `path`.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);

// The config as Hugging Face writes it (transformers can load the result).
std::string ModelConfigToJson(const ModelConfig& config);

// Parameter count of the model the config describes (embeddings included once
// when tied).
int64_t CountParameters(const ModelConfig& config);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_MODEL_CONFIG_H_
