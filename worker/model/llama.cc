#include "worker/model/llama.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace distill::worker {
namespace F = torch::nn::functional;

// ---------------------------------------------------------------------------
// Linear (+ LoRA)

LinearImpl::LinearImpl(int64_t in, int64_t out, bool with_bias) : in_features(in), out_features(out) {
  weight = register_parameter("weight", torch::empty({out, in}));
  if (with_bias) bias = register_parameter("bias", torch::zeros({out}));
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = torch::nn::functional::linear(x, weight, bias);
  if (lora_A.defined()) {
    torch::Tensor h = x;
    if (lora_dropout > 0 && is_training()) h = F::dropout(h, F::DropoutFuncOptions().p(lora_dropout).training(true));
    y = y + torch::matmul(torch::matmul(h, lora_A.t()), lora_B.t()) * lora_scaling;
  }
  return y;
}

void LinearImpl::EnableLora(int64_t rank, double scaling, double dropout, torch::Generator gen) {
  torch::NoGradGuard no_grad;
  auto opts = weight.options();
  torch::Tensor a = torch::empty({rank, in_features}, opts);
  // PEFT: nn.init.kaiming_uniform_(lora_A, a=sqrt(5)) -> bound = 1/sqrt(fan_in).
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  a.uniform_(-bound, bound, gen);
  lora_A = register_parameter("lora_A", a);
  lora_B = register_parameter("lora_B", torch::zeros({out_features, rank}, opts));
  lora_scaling = scaling;
  lora_dropout = dropout;
}

void LinearImpl::MergeLora() {
  if (!lora_A.defined()) return;
  {
    torch::NoGradGuard no_grad;
    weight.add_(torch::matmul(lora_B, lora_A) * lora_scaling);
  }
  // Module has no unregister for parameters; rebuild the parameter dict.
  parameters_.erase("lora_A");
  parameters_.erase("lora_B");
  lora_A = torch::Tensor();
  lora_B = torch::Tensor();
}

// ---------------------------------------------------------------------------
// RMSNorm

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  // As Hugging Face: normalise in fp32, cast back, then scale.
  torch::Tensor h = x.to(torch::kFloat);
  h = h * torch::rsqrt(h.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * h.to(x.scalar_type());
}

// ---------------------------------------------------------------------------
// Attention

namespace {

// Note [RoPE and attention passes]: HF computes x * cos + rotate_half(x) * sin
// with rotate_half(x) = cat(-x2, x1), and attention as softmax(mask(q k^T *
// scale)) v. We compute the same products and sums in fewer passes over memory:
// roll(x, half) * cat(-sin1, sin2) + x * cos (negation is exact and addition
// commutes, so the RoPE result is bit-identical), written so that the output
// is contiguous [B, H, T, hd] and feeds bmm without a copy; the scale and the
// causal mask go into one baddbmm (mask + scale * q k^T), so no elementwise
// pass over the [B*H, T, T] scores besides softmax, forward or backward.

// The sin table with the sign of rotate_half folded in: cat(-sin1, sin2).
torch::Tensor SignedSin(const torch::Tensor& sin) {
  const int64_t half = sin.size(-1) / 2;
  return torch::cat({-sin.narrow(-1, 0, half), sin.narrow(-1, half, half)}, -1);
}

// x [B, H, T, hd] (any strides) -> contiguous [B, H, T, hd].
torch::Tensor ApplyRope(const torch::Tensor& x, const torch::Tensor& cos,
                        const torch::Tensor& signed_sin) {
  // roll's output is contiguous, so the addcmul writes a contiguous tensor.
  return torch::addcmul(torch::roll(x, x.size(-1) / 2, -1) * signed_sin, x, cos);
}

torch::Tensor CausalAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  // q, k, v: [B, H, T, hd]; k/v already expanded to H heads.
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0,
                                          /*is_causal=*/true);
#else
  const int64_t b = q.size(0), h = q.size(1), t = q.size(2), hd = q.size(3);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  torch::Tensor q3 = q.reshape({b * h, t, hd});
  torch::Tensor k3 = k.reshape({b * h, t, hd});
  torch::Tensor v3 = v.reshape({b * h, t, hd});
  // Additive causal mask: 0 on and below the diagonal, -inf above.
  const double inf = std::numeric_limits<double>::infinity();
  torch::Tensor mask = torch::full({t, t}, -inf, q.options()).triu_(1);
  torch::Tensor scores = at::baddbmm(mask, q3, k3.transpose(1, 2), /*beta=*/1.0, /*alpha=*/scale);
  torch::Tensor probs = torch::softmax(scores, -1, torch::kFloat).to(q.scalar_type());
  return at::bmm(probs, v3).view({b, h, t, hd});
#endif
}

}  // namespace

AttentionImpl::AttentionImpl(const ModelConfig& c)
    : num_heads(c.num_attention_heads), num_kv_heads(c.num_key_value_heads), head_dim(c.head_dim) {
  q_proj = register_module("q_proj", Linear(c.hidden_size, num_heads * head_dim, c.qkv_bias));
  k_proj = register_module("k_proj", Linear(c.hidden_size, num_kv_heads * head_dim, c.qkv_bias));
  v_proj = register_module("v_proj", Linear(c.hidden_size, num_kv_heads * head_dim, c.qkv_bias));
  o_proj = register_module("o_proj", Linear(num_heads * head_dim, c.hidden_size, c.o_bias));
  if (c.qk_norm) {
    q_norm = register_module("q_norm", RMSNorm(head_dim, c.rms_norm_eps));
    k_norm = register_module("k_norm", RMSNorm(head_dim, c.rms_norm_eps));
  }
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                     const torch::Tensor& sin) {
  const int64_t b = x.size(0), t = x.size(1);
  torch::Tensor q = q_proj(x).view({b, t, num_heads, head_dim});
  torch::Tensor k = k_proj(x).view({b, t, num_kv_heads, head_dim});
  torch::Tensor v = v_proj(x).view({b, t, num_kv_heads, head_dim});
  if (q_norm) {
    q = q_norm(q);
    k = k_norm(k);
  }
  q = q.transpose(1, 2);  // [B, H, T, hd]
  k = k.transpose(1, 2);
  v = v.transpose(1, 2);
  const torch::Tensor signed_sin = SignedSin(sin);
  q = ApplyRope(q, cos, signed_sin);
  k = ApplyRope(k, cos, signed_sin);
  if (num_kv_heads != num_heads) {
    // HF repeat_kv: kv head j serves query heads j*n_rep .. j*n_rep + n_rep - 1.
    const int64_t rep = num_heads / num_kv_heads;
    k = k.unsqueeze(2).expand({b, num_kv_heads, rep, t, head_dim}).reshape({b, num_heads, t, head_dim});
    v = v.unsqueeze(2).expand({b, num_kv_heads, rep, t, head_dim}).reshape({b, num_heads, t, head_dim});
  }
  torch::Tensor o = CausalAttention(q, k, v);  // [B, H, T, hd]
  o = o.transpose(1, 2).reshape({b, t, num_heads * head_dim});
  return o_proj(o);
}

// ---------------------------------------------------------------------------
// MLP, decoder layer, backbone

MlpImpl::MlpImpl(const ModelConfig& c) {
  gate_proj = register_module("gate_proj", Linear(c.hidden_size, c.intermediate_size, c.mlp_bias));
  up_proj = register_module("up_proj", Linear(c.hidden_size, c.intermediate_size, c.mlp_bias));
  down_proj = register_module("down_proj", Linear(c.intermediate_size, c.hidden_size, c.mlp_bias));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  return down_proj(torch::silu(gate_proj(x)) * up_proj(x));
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c) {
  self_attn = register_module("self_attn", Attention(c));
  mlp = register_module("mlp", Mlp(c));
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                        const torch::Tensor& sin) {
  torch::Tensor h = x + self_attn(input_layernorm(x), cos, sin);
  return h + mlp(post_attention_layernorm(h));
}

namespace {

// A module holding a single "weight" (the embedding table), so that the HF
// name "model.embed_tokens.weight" comes out of named_parameters().
class WeightHolderImpl : public torch::nn::Module {
 public:
  explicit WeightHolderImpl(torch::Tensor w) { weight = register_parameter("weight", std::move(w)); }
  torch::Tensor weight;
};
TORCH_MODULE(WeightHolder);

}  // namespace

LlamaBackboneImpl::LlamaBackboneImpl(const ModelConfig& c, const ModelPart& part) {
  if (part.embed || (part.head && c.tie_word_embeddings)) {
    embed_tokens =
        register_module("embed_tokens", WeightHolder(torch::empty({c.vocab_size, c.hidden_size})))
            ->weight;
  }
  layers = register_module("layers", torch::nn::ModuleList());
  const int64_t end = part.layer_end < 0 ? c.num_hidden_layers : part.layer_end;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    if (i >= part.layer_begin && i < end) {
      layers->push_back(DecoderLayer(c));
    } else {
      layers->push_back(std::make_shared<torch::nn::Module>("AbsentDecoderLayer"));
    }
  }
  if (part.head) norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

// ---------------------------------------------------------------------------
// Causal LM

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const ModelConfig& config, const ModelPart& part)
    : config_(config), part_(part) {
  if (part_.layer_end < 0) part_.layer_end = config.num_hidden_layers;
  model = register_module("model", LlamaBackbone(config, part_));
  if (part.head && !config.tie_word_embeddings) {
    lm_head = register_module("lm_head", WeightHolder(torch::empty({config.vocab_size, config.hidden_size})))
                  ->weight;
  }
  InitWeights(0);
}

void LlamaForCausalLMImpl::InitWeights(uint64_t seed) {
  torch::NoGradGuard no_grad;
  torch::Generator gen = at::detail::createCPUGenerator(seed);
  const double std = config_.initializer_range;
  for (auto& p : named_parameters(/*recurse=*/true)) {
    const std::string& name = p.key();
    torch::Tensor& t = p.value();
    if (name.find("lora_") != std::string::npos) continue;
    torch::Tensor init;
    if (t.dim() >= 2) {
      init = at::normal(0.0, std, t.sizes(), gen, torch::TensorOptions().dtype(torch::kFloat));
    } else if (name.find("norm") != std::string::npos) {
      init = torch::ones(t.sizes());
    } else {
      init = torch::zeros(t.sizes());
    }
    t.copy_(init);
  }
}

std::pair<torch::Tensor, torch::Tensor> LlamaForCausalLMImpl::Rope(int64_t seq_len,
                                                                   const torch::Device& device) {
  if (!rope_cos_.defined() || rope_cos_.size(0) < seq_len || rope_cos_.device() != device) {
    const int64_t hd = config_.head_dim;
    // In fp32 throughout, as Hugging Face computes the table.
    auto f32 = torch::TensorOptions().dtype(torch::kFloat);
    torch::Tensor inv_freq = 1.0 / torch::pow(config_.rope_theta, torch::arange(0, hd, 2, f32) / hd);
    torch::Tensor pos = torch::arange(seq_len, torch::TensorOptions().dtype(torch::kFloat));
    torch::Tensor freqs = torch::outer(pos, inv_freq);
    torch::Tensor emb = torch::cat({freqs, freqs}, -1);
    rope_cos_ = emb.cos().to(device);
    rope_sin_ = emb.sin().to(device);
  }
  return {rope_cos_.narrow(0, 0, seq_len), rope_sin_.narrow(0, 0, seq_len)};
}

torch::Tensor LlamaForCausalLMImpl::Hidden(const torch::Tensor& input_ids,
                                           const std::vector<int64_t>& capture_layers,
                                           std::map<int64_t, torch::Tensor>* capture) {
  torch::Tensor h = Embed(input_ids);
  if (capture != nullptr &&
      std::find(capture_layers.begin(), capture_layers.end(), -1) != capture_layers.end()) {
    (*capture)[-1] = h;
  }
  h = RunLayers(h, 0, config_.num_hidden_layers, capture_layers, capture);
  return FinalNorm(h);
}

torch::Tensor LlamaForCausalLMImpl::Embed(const torch::Tensor& input_ids) {
  return torch::embedding(model->embed_tokens, input_ids);
}

torch::Tensor LlamaForCausalLMImpl::RunLayers(const torch::Tensor& x, int64_t begin, int64_t end,
                                              const std::vector<int64_t>& capture_layers,
                                              std::map<int64_t, torch::Tensor>* capture) {
  auto want = [&](int64_t layer) {
    return capture != nullptr &&
           std::find(capture_layers.begin(), capture_layers.end(), layer) != capture_layers.end();
  };
  auto [cos, sin] = Rope(x.size(1), x.device());
  torch::Tensor h = x;
  for (int64_t i = begin; i < end; ++i) {
    auto* layer = model->layers->ptr(static_cast<size_t>(i))->as<DecoderLayerImpl>();
    TORCH_CHECK(layer != nullptr, "decoder layer ", i, " is not part of this model (layers ",
                part_.layer_begin, " to ", part_.layer_end - 1, ")");
    h = layer->forward(h, cos, sin);
    if (want(i)) (*capture)[i] = h;
  }
  return h;
}

torch::Tensor LlamaForCausalLMImpl::FinalNorm(const torch::Tensor& x) { return model->norm(x); }

torch::Tensor LlamaForCausalLMImpl::LmHeadWeight() const {
  return lm_head.defined() ? lm_head : model->embed_tokens;
}

torch::Tensor LlamaForCausalLMImpl::Logits(const torch::Tensor& hidden) {
  return torch::nn::functional::linear(hidden, LmHeadWeight()).to(torch::kFloat);
}

torch::Tensor LlamaForCausalLMImpl::forward(const torch::Tensor& input_ids) {
  return Logits(Hidden(input_ids));
}

torch::Tensor CausalLmLoss(const torch::Tensor& logits, const torch::Tensor& targets) {
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                              targets.reshape({-1}));
}

std::vector<std::pair<std::string, Linear>> NamedLinears(LlamaForCausalLM& model) {
  std::vector<std::pair<std::string, Linear>> out;
  for (const auto& item : model->named_modules()) {
    if (auto lin = std::dynamic_pointer_cast<LinearImpl>(item.value())) {
      out.emplace_back(item.key(), Linear(lin));
    }
  }
  return out;
}

}  // namespace distill::worker
