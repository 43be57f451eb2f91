// A Llama-family decoder-only causal LM in LibTorch, parameter names equal to
// Hugging Face's (named_parameters() of LlamaForCausalLM yields
// "model.layers.0.self_attn.q_proj.weight", "lm_head.weight", ...).
//
// Covers Llama/Mistral (RMSNorm, half-split RoPE with rope_theta and RoPE
// scaling, grouped-query attention, SwiGLU MLP, tied or untied embeddings,
// sliding windows), Qwen2 (q/k/v bias) and Qwen3 (q/k RMSNorm) through
// ModelConfig switches. Every Linear can carry a
// LoRA adapter (lora.h). Modules are not thread-safe: one training thread.
#ifndef DISTILL_WORKER_MODEL_LLAMA_H_
#define DISTILL_WORKER_MODEL_LLAMA_H_

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "worker/model/config.h"

namespace distill::worker {

// y = x W^T + b, plus (when enabled) the LoRA path
// scaling * dropout(x) A^T B^T with A [r, in] and B [out, r].
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias);
  torch::Tensor forward(const torch::Tensor& x);

  // Adds lora_A (Kaiming-uniform, as PEFT, drawn from `gen`) and lora_B
  // (zeros). Base weights are left as they are (the caller freezes them).
  void EnableLora(int64_t rank, double scaling, double dropout, torch::Generator gen);
  bool has_lora() const { return lora_A.defined(); }
  // weight += scaling * B A, then the adapter is removed.
  void MergeLora();

  int64_t in_features, out_features;
  torch::Tensor weight, bias;    // bias undefined when absent
  torch::Tensor lora_A, lora_B;  // undefined without LoRA
  double lora_scaling = 0.0;
  double lora_dropout = 0.0;
};
TORCH_MODULE(Linear);

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const ModelConfig& c);
  // x [B, T, D]; cos/sin [T, head_dim], or [B, 1, T, head_dim] for per-slot
  // positions. Causal when `visible` is undefined; otherwise `visible` ([T, T]
  // or [B, 1, T, T] bool, true = attend) says which keys each query sees (a
  // sliding window, packed examples: Note [Packed attention] in llama.cc).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& visible = {});

  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  RMSNorm q_norm{nullptr}, k_norm{nullptr};  // qwen3 only
  int64_t num_heads, num_kv_heads, head_dim;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x);  // down(silu(gate(x)) * up(x))
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(Mlp);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  explicit DecoderLayerImpl(const ModelConfig& c);
  // As AttentionImpl::forward.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& visible = {});
  Attention self_attn{nullptr};
  Mlp mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

// Which parts of the model a process holds. The default is the whole model;
// a teacher pipeline stage (distill/teacher_pipeline.h) holds a contiguous
// block of decoder layers, the embeddings only on the first stage and the
// final norm and lm_head only on the last. An absent decoder layer is an empty
// placeholder module in `layers`, so parameter names stay Hugging Face's
// ("model.layers.7...") and absent parts have no parameters at all.
struct ModelPart {
  int64_t layer_begin = 0;
  int64_t layer_end = -1;  // exclusive; -1 = through the last layer
  bool embed = true;       // model.embed_tokens
  bool head = true;        // model.norm and lm_head (the embedding when tied)
};

// Hugging Face's "model" submodule: embeddings, layers, final norm.
class LlamaBackboneImpl : public torch::nn::Module {
 public:
  explicit LlamaBackboneImpl(const ModelConfig& c, const ModelPart& part = {});
  // [V, D], registered as "embed_tokens.weight"; undefined when not held.
  torch::Tensor embed_tokens;
  torch::nn::ModuleList layers{nullptr};  // all layers; placeholders outside the part
  RMSNorm norm{nullptr};                  // null when the part has no head
};
TORCH_MODULE(LlamaBackbone);

class LlamaForCausalLMImpl : public torch::nn::Module {
 public:
  // `part`: the whole model by default (ModelPart).
  explicit LlamaForCausalLMImpl(const ModelConfig& config, const ModelPart& part = {});

  // input_ids [B, T] (int64) -> logits [B, T, V] in fp32. `positions`
  // ([B, T] int64, each row as Note [Packed rows] in worker/data/
  // sequence_data.h says) packs several examples into a row: each slot is
  // rotated by its own position and attends only to the earlier slots of its
  // example. Undefined: one sequence per row, positions 0..T-1.
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& positions = {});

  // The final normalised hidden state [B, T, D]. When `capture` is given,
  // (*capture)[i] receives the output of decoder layer i (0-based) for every
  // i in `capture_layers` (the input embedding is layer -1). `positions` as
  // in forward().
  torch::Tensor Hidden(const torch::Tensor& input_ids,
                       const std::vector<int64_t>& capture_layers = {},
                       std::map<int64_t, torch::Tensor>* capture = nullptr,
                       const torch::Tensor& positions = {});
  // The pieces of Hidden(), for a model split over processes (every piece
  // needs its part held): Hidden(ids) is
  // FinalNorm(RunLayers(Embed(ids), 0, num_hidden_layers)), op for op.
  // input_ids [B, T] (int64) -> the input embedding [B, T, D].
  torch::Tensor Embed(const torch::Tensor& input_ids);
  // Decoder layers [begin, end) on x [B, T, D] at `positions` (as in
  // forward(); undefined = 0..T-1 on every row); captures the outputs of the
  // layers in `capture_layers` within [begin, end) as Hidden() does. Rows
  // whose positions are all 0..T-1 give what undefined positions give, bit for
  // bit (telling costs one comparison, a host sync on a GPU).
  torch::Tensor RunLayers(const torch::Tensor& x, int64_t begin, int64_t end,
                          const std::vector<int64_t>& capture_layers = {},
                          std::map<int64_t, torch::Tensor>* capture = nullptr,
                          const torch::Tensor& positions = {});
  // The final RMSNorm.
  torch::Tensor FinalNorm(const torch::Tensor& x);
  // hidden [.., D] -> logits [.., V] through lm_head (or the tied embedding).
  torch::Tensor Logits(const torch::Tensor& hidden);
  // The lm_head weight [V, D] (the embedding when tied).
  torch::Tensor LmHeadWeight() const;

  // Hugging Face's init: weights ~ N(0, initializer_range), biases 0, norms 1.
  // Deterministic for a given seed.
  void InitWeights(uint64_t seed);

  const ModelConfig& config() const { return config_; }
  const ModelPart& part() const { return part_; }

  // When on, RunLayers (so forward and Hidden) keeps only each decoder
  // layer's input and recomputes the layer in backward (Note [Activation
  // checkpointing] in activation_checkpoint.cc): same gradients, less memory,
  // one more forward of the layers per step. Applies only in training mode
  // with grad mode on; eval and no-grad calls run as without. Off by default.
  void set_activation_checkpointing(bool on) { activation_checkpointing_ = on; }
  bool activation_checkpointing() const { return activation_checkpointing_; }

  LlamaBackbone model{nullptr};
  torch::Tensor lm_head;  // [V, D], "lm_head.weight"; undefined when tied or not held

 private:
  // cos/sin tables [T, head_dim] for positions 0..T-1 (HF's half-split layout,
  // scaled as config.rope_scaling says: Note [RoPE scaling] in llama.cc),
  // cached per length and device.
  std::pair<torch::Tensor, torch::Tensor> Rope(int64_t seq_len, const torch::Device& device);

  ModelConfig config_;
  ModelPart part_;  // layer_end resolved (never -1)
  torch::Tensor rope_cos_, rope_sin_;
  int64_t rope_key_ = 0;  // the length dynamic RoPE was scaled for; 0 = unscaled
  bool activation_checkpointing_ = false;
};
TORCH_MODULE(LlamaForCausalLM);

// Mean next-token cross-entropy: logits [B, T, V], targets [B, T] (int64).
// Targets equal to kIgnoreTarget (worker/data/sequence_data.h, Hugging Face's
// -100) count in no average; with no counted target the loss is 0 (and so is
// its gradient), not NaN.
torch::Tensor CausalLmLoss(const torch::Tensor& logits, const torch::Tensor& targets);

// Every Linear of the model with its Hugging Face module path
// ("model.layers.0.self_attn.q_proj").
std::vector<std::pair<std::string, Linear>> NamedLinears(LlamaForCausalLM& model);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_MODEL_LLAMA_H_
