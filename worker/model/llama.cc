#include "worker/model/llama.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "worker/data/sequence_data.h"
#include "worker/model/activation_checkpoint.h"

namespace distill::worker {
namespace F = torch::nn::functional;

// ---------------------------------------------------------------------------
// Linear (+ LoRA)

LinearImpl::LinearImpl(int64_t in, int64_t out, bool with_bias)
    : in_features(in), out_features(out) {
  weight = register_parameter("weight", torch::empty({out, in}));
  if (with_bias) bias = register_parameter("bias", torch::zeros({out}));
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = torch::nn::functional::linear(x, weight, bias);
  if (lora_A.defined()) {
    torch::Tensor h = x;
    if (lora_dropout > 0 && is_training())
      h = F::dropout(h, F::DropoutFuncOptions().p(lora_dropout).training(true));
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
// is contiguous [B, H, T, hd]. Attention is at::scaled_dot_product_attention:
// is_causal when every key up to the query is visible, an explicit boolean
// mask when a sliding window hides some (Note [Sliding window] in config.h) or
// the row packs several examples (Note [Packed attention]).

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

// q, k, v: [B, H, T, hd]; k/v already expanded to H heads. `visible`: a
// boolean [T, T] or [B, 1, T, T] mask (true = attend), or undefined for plain
// causal attention (the is_causal fast path).
torch::Tensor CausalAttention(const torch::Tensor& q, const torch::Tensor& k,
                              const torch::Tensor& v, const torch::Tensor& visible) {
  if (!visible.defined()) {
    return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0,
                                            /*is_causal=*/true);
  }
  return at::scaled_dot_product_attention(q, k, v, visible, /*dropout_p=*/0.0,
                                          /*is_causal=*/false);
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
                                     const torch::Tensor& sin, const torch::Tensor& visible) {
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
    k = k.unsqueeze(2)
            .expand({b, num_kv_heads, rep, t, head_dim})
            .reshape({b, num_heads, t, head_dim});
    v = v.unsqueeze(2)
            .expand({b, num_kv_heads, rep, t, head_dim})
            .reshape({b, num_heads, t, head_dim});
  }
  torch::Tensor o = CausalAttention(q, k, v, visible);  // [B, H, T, hd]
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
                                        const torch::Tensor& sin, const torch::Tensor& visible) {
  torch::Tensor h = x + self_attn->forward(input_layernorm(x), cos, sin, visible);
  return h + mlp(post_attention_layernorm(h));
}

namespace {

// A module holding a single "weight" (the embedding table), so that the HF
// name "model.embed_tokens.weight" comes out of named_parameters().
class WeightHolderImpl : public torch::nn::Module {
 public:
  explicit WeightHolderImpl(torch::Tensor w) {
    weight = register_parameter("weight", std::move(w));
  }
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
// RoPE frequencies and attention windows

namespace {

// Note [RoPE scaling]: the inverse frequencies as transformers'
// modeling_rope_utils.py computes them (5.x; the same math as 4.x), op for op:
// float32 tensors where it uses tensors, double where it uses Python floats,
// reciprocal() where it writes `1.0 / tensor`. So the tables agree to the
// last bit or nearly, not just to a tolerance.

// arange(0, dim, 2) / dim in float32: the exponents of the base.
torch::Tensor RopeExponents(int64_t dim) {
  return torch::arange(0, dim, 2, torch::kLong).to(torch::kFloat) / dim;
}

// 1 / base^(2i/dim).
torch::Tensor PlainInvFreq(double base, int64_t dim) {
  return torch::pow(base, RopeExponents(dim)).reciprocal();
}

// yarn's mscale: 0.1 * mscale * ln(scale) + 1 (1 for scale <= 1).
double YarnMscale(double scale, double mscale) {
  return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

std::pair<torch::Tensor, double> YarnInvFreq(const ModelConfig& c, int64_t dim) {
  const RopeScaling& s = c.rope_scaling;
  const double base = c.rope_theta, factor = s.factor;
  double attention_factor = 0;
  if (s.attention_factor.has_value()) {
    attention_factor = *s.attention_factor;
  } else if (s.mscale.value_or(0) != 0 && s.mscale_all_dim.value_or(0) != 0) {
    attention_factor = YarnMscale(factor, *s.mscale) / YarnMscale(factor, *s.mscale_all_dim);
  } else {
    attention_factor = YarnMscale(factor, 1.0);
  }
  // `beta_fast or 32`: an absent or zero beta takes the default.
  const double beta_fast = s.beta_fast.value_or(0) != 0 ? *s.beta_fast : 32;
  const double beta_slow = s.beta_slow.value_or(0) != 0 ? *s.beta_slow : 1;
  const double original = static_cast<double>(s.original_max_position_embeddings);
  auto correction_dim = [&](double rotations) {
    return (dim * std::log(original / (rotations * 2 * M_PI))) / (2 * std::log(base));
  };
  double low = correction_dim(beta_fast), high = correction_dim(beta_slow);
  if (s.truncate.value_or(true)) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // as transformers, against a singular ramp
  torch::Tensor ramp = torch::clamp(
      (torch::arange(dim / 2, torch::TensorOptions().dtype(torch::kFloat)) - low) / (high - low), 0,
      1);
  torch::Tensor pos_freqs = torch::pow(base, RopeExponents(dim));
  torch::Tensor extrapolation = pos_freqs.reciprocal();
  torch::Tensor interpolation = (pos_freqs * factor).reciprocal();
  torch::Tensor extrapolation_factor = 1 - ramp;
  torch::Tensor inv_freq =
      interpolation * (1 - extrapolation_factor) + extrapolation * extrapolation_factor;
  return {inv_freq, attention_factor};
}

torch::Tensor Llama3InvFreq(const ModelConfig& c, int64_t dim) {
  const RopeScaling& s = c.rope_scaling;
  torch::Tensor inv_freq = PlainInvFreq(c.rope_theta, dim);
  const double old_context = static_cast<double>(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_context / s.low_freq_factor;
  const double high_freq_wavelen = old_context / s.high_freq_factor;
  torch::Tensor wavelen = inv_freq.reciprocal() * (2 * M_PI);
  torch::Tensor scaled = torch::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
  torch::Tensor smooth =
      (wavelen.reciprocal() * s.original_max_position_embeddings - s.low_freq_factor) /
      (s.high_freq_factor - s.low_freq_factor);
  torch::Tensor smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
  torch::Tensor medium =
      (wavelen < high_freq_wavelen).logical_not() * (wavelen > low_freq_wavelen).logical_not();
  return torch::where(medium, smoothed, scaled);
}

// Dynamic NTK: the base grows with the sequence past max_position_embeddings.
// Past it transformers computes the base as a float32 tensor (the length is
// one); up to it, in Python floats.
torch::Tensor DynamicInvFreq(const ModelConfig& c, int64_t dim, int64_t seq_len) {
  const double factor = c.rope_scaling.factor;
  const int64_t mpe = c.max_position_embeddings;
  const double exponent = static_cast<double>(dim) / static_cast<double>(dim - 2);
  if (seq_len <= mpe) {
    const double base =
        c.rope_theta *
        std::pow(factor * static_cast<double>(mpe) / static_cast<double>(mpe) - (factor - 1),
                 exponent);
    return PlainInvFreq(base, dim);
  }
  torch::Tensor len = torch::tensor(seq_len, torch::kLong);
  torch::Tensor base = torch::pow(len * factor / mpe - (factor - 1), exponent) * c.rope_theta;
  return torch::pow(base, RopeExponents(dim)).reciprocal();
}

// The inverse frequencies [head_dim / 2] and the factor cos and sin are
// scaled by, for a sequence of `seq_len` positions.
std::pair<torch::Tensor, double> RopeInvFreq(const ModelConfig& c, int64_t seq_len) {
  const int64_t dim = c.head_dim;
  const std::string& type = c.rope_scaling.rope_type;
  if (type == "linear") return {PlainInvFreq(c.rope_theta, dim) / c.rope_scaling.factor, 1.0};
  if (type == "dynamic") return {DynamicInvFreq(c, dim, seq_len), 1.0};
  if (type == "yarn") return YarnInvFreq(c, dim);
  if (type == "llama3") return {Llama3InvFreq(c, dim), 1.0};
  TORCH_CHECK(type == "default", "unsupported rope_type '", type, "'");
  return {PlainInvFreq(c.rope_theta, dim), 1.0};
}

// Note [Sliding window] in config.h: true where query q may attend key k,
// q - window < k <= q. [T, T] bool.
torch::Tensor SlidingWindowMask(int64_t t, int64_t window, const torch::Device& device) {
  torch::Tensor pos = torch::arange(t, torch::TensorOptions().dtype(torch::kLong).device(device));
  torch::Tensor back = pos.unsqueeze(1) - pos.unsqueeze(0);  // q - k
  return back.ge(0).logical_and(back.lt(window));
}

// Note [Packed attention]: with positions (Note [Packed rows] in
// worker/data/sequence_data.h), slot j of a row belongs to segment
// cumsum(positions == 0)[j] (an example, or the padding after the last one).
// Query q sees key k when both lie in one segment and k <= q, and on a
// sliding-window layer also q - k < window: within a segment slots and
// positions advance together, so the slot distance is the position distance.
// Each slot's q and k are rotated by the cos/sin row of its own position
// (RoPE scores depend on q - k only, so rotating by slot index would agree in
// exact arithmetic; the example's own positions give the rounding it has alone
// and keep the angles small in long rows). The masks ([B, 1, T, T], shared
// by the heads) are built once per RunLayers call.
// A batch whose rows are all 0..T-1 is one segment per row and takes the
// unpacked path (is_causal), so it matches undefined positions bit for bit.

// True when every row of `positions` [B, T] is 0..T-1.
bool SingleSegmentRows(const torch::Tensor& positions) {
  torch::Tensor plain = torch::arange(positions.size(1), positions.options());
  return torch::equal(positions, plain.expand_as(positions));
}

// [B, 1, T, T] bool: query q may attend key k of its own segment, k <= q.
torch::Tensor PackedCausalMask(const torch::Tensor& positions) {
  torch::Tensor segment = positions.eq(0).cumsum(1);                   // [B, T]
  torch::Tensor same = segment.unsqueeze(2).eq(segment.unsqueeze(1));  // [B, q, k]
  torch::Tensor slot = torch::arange(positions.size(1), positions.options());
  torch::Tensor causal = slot.unsqueeze(1).ge(slot.unsqueeze(0));  // [q, k]: k <= q
  return same.logical_and(causal).unsqueeze(1);
}

// The rows of a cos or sin table [N, hd] at each slot's position:
// [B, 1, T, hd], broadcasting over the heads.
torch::Tensor AtPositions(const torch::Tensor& table, const torch::Tensor& positions) {
  return table.index_select(0, positions.reshape({-1}))
      .view({positions.size(0), 1, positions.size(1), table.size(1)});
}

// Decoder layer `layer` on h, through CheckpointedCall when `checkpoint`
// (Note [Activation checkpointing] in activation_checkpoint.cc): the lambda
// keeps the layer and its other inputs (none requires grad) until backward.
torch::Tensor CallLayer(const std::shared_ptr<DecoderLayerImpl>& layer, const torch::Tensor& h,
                        const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& visible, bool checkpoint) {
  if (!checkpoint) return layer->forward(h, cos, sin, visible);
  return CheckpointedCall(
      [layer, cos, sin, visible](const torch::Tensor& x) {
        return layer->forward(x, cos, sin, visible);
      },
      h);
}

}  // namespace

// ---------------------------------------------------------------------------
// Causal LM

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const ModelConfig& config, const ModelPart& part)
    : config_(config), part_(part) {
  if (part_.layer_end < 0) part_.layer_end = config.num_hidden_layers;
  model = register_module("model", LlamaBackbone(config, part_));
  if (part.head && !config.tie_word_embeddings) {
    lm_head = register_module("lm_head",
                              WeightHolder(torch::empty({config.vocab_size, config.hidden_size})))
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
  // Dynamic NTK rescales for each length past max_position_embeddings.
  const bool grows =
      config_.rope_scaling.rope_type == "dynamic" && seq_len > config_.max_position_embeddings;
  const int64_t key = grows ? seq_len : 0;
  if (!rope_cos_.defined() || rope_key_ != key || rope_cos_.size(0) < seq_len ||
      rope_cos_.device() != device) {
    const auto [inv_freq, attention_scaling] = RopeInvFreq(config_, seq_len);
    // In fp32 throughout, as Hugging Face computes the table.
    torch::Tensor pos = torch::arange(seq_len, torch::TensorOptions().dtype(torch::kFloat));
    torch::Tensor freqs = torch::outer(pos, inv_freq);
    torch::Tensor emb = torch::cat({freqs, freqs}, -1);
    torch::Tensor cos = emb.cos(), sin = emb.sin();
    if (attention_scaling != 1.0) {
      cos = cos * attention_scaling;
      sin = sin * attention_scaling;
    }
    rope_cos_ = cos.to(device);
    rope_sin_ = sin.to(device);
    rope_key_ = key;
  }
  return {rope_cos_.narrow(0, 0, seq_len), rope_sin_.narrow(0, 0, seq_len)};
}

torch::Tensor LlamaForCausalLMImpl::Hidden(const torch::Tensor& input_ids,
                                           const std::vector<int64_t>& capture_layers,
                                           std::map<int64_t, torch::Tensor>* capture,
                                           const torch::Tensor& positions) {
  torch::Tensor h = Embed(input_ids);
  if (capture != nullptr &&
      std::find(capture_layers.begin(), capture_layers.end(), -1) != capture_layers.end()) {
    (*capture)[-1] = h;
  }
  h = RunLayers(h, 0, config_.num_hidden_layers, capture_layers, capture, positions);
  return FinalNorm(h);
}

torch::Tensor LlamaForCausalLMImpl::Embed(const torch::Tensor& input_ids) {
  return torch::embedding(model->embed_tokens, input_ids);
}

torch::Tensor LlamaForCausalLMImpl::RunLayers(const torch::Tensor& x, int64_t begin, int64_t end,
                                              const std::vector<int64_t>& capture_layers,
                                              std::map<int64_t, torch::Tensor>* capture,
                                              const torch::Tensor& positions) {
  auto want = [&](int64_t layer) {
    return capture != nullptr &&
           std::find(capture_layers.begin(), capture_layers.end(), layer) != capture_layers.end();
  };
  const int64_t t = x.size(1);
  // Dynamic NTK RoPE scales by the row length T, packed or not. Run alone, an
  // example would be scaled by its own length (Hugging Face scales a packed
  // row by its largest position + 1): the base differs only for lengths past
  // max_position_embeddings, below which it is rope_theta for every length.
  // The tables are fp32; as Hugging Face, they take the hidden states' dtype
  // (a no-op in fp32; bf16 weights keep q and k in bf16).
  auto [cos32, sin32] = Rope(t, x.device());
  torch::Tensor cos = cos32.to(x.scalar_type()), sin = sin32.to(x.scalar_type());
  torch::Tensor packed;  // Note [Packed attention]; undefined: one sequence per row
  if (positions.defined()) {
    TORCH_CHECK(positions.dim() == 2 && positions.size(0) == x.size(0) && positions.size(1) == t &&
                    positions.scalar_type() == torch::kLong,
                "positions must be int64 [", x.size(0), ", ", t, "], got ", positions.scalar_type(),
                " ", positions.sizes());
    torch::Tensor pos = positions.to(x.device());
    if (!SingleSegmentRows(pos)) {
      cos = AtPositions(cos, pos);
      sin = AtPositions(sin, pos);
      packed = PackedCausalMask(pos);
    }
  }
  const bool checkpoint =
      activation_checkpointing_ && is_training() && torch::GradMode::is_enabled();
  std::map<int64_t, torch::Tensor> windowed;  // per window size
  torch::Tensor h = x;
  for (int64_t i = begin; i < end; ++i) {
    auto layer =
        std::dynamic_pointer_cast<DecoderLayerImpl>(model->layers->ptr(static_cast<size_t>(i)));
    TORCH_CHECK(layer != nullptr, "decoder layer ", i, " is not part of this model (layers ",
                part_.layer_begin, " to ", part_.layer_end - 1, ")");
    const int64_t window = AttentionWindow(config_, i);
    torch::Tensor visible = packed;
    if (window > 0 && window < t) {
      torch::Tensor& mask = windowed[window];
      if (!mask.defined()) {
        mask = SlidingWindowMask(t, window, x.device());
        if (packed.defined()) mask = packed.logical_and(mask);
      }
      visible = mask;
    }
    h = CallLayer(layer, h, cos, sin, visible, checkpoint);
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

torch::Tensor LlamaForCausalLMImpl::forward(const torch::Tensor& input_ids,
                                            const torch::Tensor& positions) {
  return Logits(Hidden(input_ids, {}, nullptr, positions));
}

torch::Tensor CausalLmLoss(const torch::Tensor& logits, const torch::Tensor& targets) {
  // cross_entropy's ignore_index defaults to -100 too; it is named here so
  // that the rule does not hang on a default. The sum over the counted
  // targets, then one division by their count (at least 1): what the mean
  // reduction computes when some target counts (the same sum, divided by the
  // same count), 0 rather than 0 / 0 when none does.
  torch::Tensor flat = targets.reshape({-1});
  torch::Tensor sum = F::cross_entropy(
      logits.reshape({-1, logits.size(-1)}), flat,
      F::CrossEntropyFuncOptions().ignore_index(kIgnoreTarget).reduction(torch::kSum));
  torch::Tensor counted = flat.ne(kIgnoreTarget).sum().clamp_min(1).to(sum.scalar_type());
  return sum / counted;
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
