// The Hugging Face config.json of a Llama-family causal LM.
//
// Supported architectures: LlamaForCausalLM, MistralForCausalLM,
// Qwen2ForCausalLM (q/k/v bias) and Qwen3ForCausalLM (q/k RMSNorm), with RoPE
// scaling (linear, dynamic, yarn, llama3) and sliding-window attention as
// transformers computes them. Both config styles are read: transformers 4.x
// (rope_theta, rope_scaling) and 5.x (rope_parameters, layer_types). Parsing
// checks every field the model needs and names the file and field in errors;
// what the model does not implement is an error, never ignored. Plain value
// type; thread-compatible.
#ifndef DISTILL_WORKER_MODEL_CONFIG_H_
#define DISTILL_WORKER_MODEL_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace distill::worker {

// How RoPE frequencies are scaled: transformers' rope_scaling (4.x) or
// rope_parameters (5.x) minus rope_theta. The math is in llama.cc (RopeTable),
// from transformers' modeling_rope_utils.py.
struct RopeScaling {
  std::string rope_type = "default";  // default | linear | dynamic | yarn | llama3
  double factor = 1.0;                // context extension factor (all but default)
  // Pretraining context length (yarn, llama3); defaults to
  // max_position_embeddings, as transformers fills it in.
  int64_t original_max_position_embeddings = 0;
  double low_freq_factor = 0.0;   // llama3
  double high_freq_factor = 0.0;  // llama3
  // yarn's optional knobs, kept absent when the file leaves them out (their
  // defaults: attention_factor from factor and mscale, beta_fast 32,
  // beta_slow 1, truncate true).
  std::optional<double> attention_factor, beta_fast, beta_slow, mscale, mscale_all_dim;
  std::optional<bool> truncate;
};
bool operator==(const RopeScaling& a, const RopeScaling& b);

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
  // Defaults per architecture as transformers' config classes: 2048 for
  // llama, 131072 for mistral, 32768 for qwen2/qwen3. Used by dynamic, yarn
  // and llama3 RoPE scaling.
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  // Note [Sliding window]: a query at position q sees keys k with
  // q - sliding_window < k <= q (transformers' masking_utils) on the layers
  // marked in sliding_layers. 0 = no window. Mistral: sliding_window on every
  // layer (null = none). Qwen2/Qwen3: only with use_sliding_window, on layers
  // >= max_window_layers, or as layer_types lists them. Llama: none.
  int64_t sliding_window = 0;
  bool use_sliding_window = false;   // qwen2/qwen3 switch, kept for the round trip
  int64_t max_window_layers = 28;    // qwen2/qwen3
  std::vector<bool> sliding_layers;  // per layer: windowed; empty = none

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

// The attention window of decoder layer `layer`: config.sliding_window when
// the layer slides, else 0 (full causal attention).
int64_t AttentionWindow(const ModelConfig& config, int64_t layer);

// Parses config.json text. `source` names it in errors ("DIR/config.json:
// missing field hidden_size"). Unknown architectures, hidden_act other than
// silu, rope types other than those above, partial rotary factors and
// per-layer RoPE are InvalidArgument naming the field.
absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text,
                                             const std::string& source);

// Reads and parses the file at `path`.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);

// The config as transformers 4.x writes it (rope_theta and rope_scaling at the
// top level; plus layer_types for Qwen), which transformers 4.x and 5.x both
// read back to the same model.
std::string ModelConfigToJson(const ModelConfig& config);

// Parameter count of one decoder layer (attention, MLP, their biases and
// norms), the same for every layer.
int64_t DecoderLayerParameters(const ModelConfig& config);

// Parameter count of the model the config describes (embeddings included once
// when tied).
int64_t CountParameters(const ModelConfig& config);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_MODEL_CONFIG_H_
