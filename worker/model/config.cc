#include "worker/model/config.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs_util.h"
#include "common/status_macros.h"

namespace distill::worker {
namespace {

using json = nlohmann::json;

struct Architecture {
  const char* name;
  const char* model_type;
};

constexpr Architecture kArchitectures[] = {
    {"LlamaForCausalLM", "llama"},
    {"MistralForCausalLM", "mistral"},
    {"Qwen2ForCausalLM", "qwen2"},
    {"Qwen3ForCausalLM", "qwen3"},
};

constexpr char kSupported[] =
    "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM";

const Architecture* FindArchitecture(const std::string& name) {
  for (const Architecture& a : kArchitectures) {
    if (name == a.name) return &a;
  }
  return nullptr;
}

const Architecture* FindModelType(const std::string& model_type) {
  for (const Architecture& a : kArchitectures) {
    if (model_type == a.model_type) return &a;
  }
  return nullptr;
}

// Typed access to the fields of one config.json; errors name the source and
// the field. An optional field that is absent or null takes its default.
class FieldReader {
 public:
  // `prefix` names a nested object in errors ("rope_scaling." gives
  // "field 'rope_scaling.factor'").
  FieldReader(const json& j, const std::string& source, std::string prefix = "")
      : j_(j), source_(source), prefix_(std::move(prefix)) {}

  const std::string& source() const { return source_; }

  absl::Status Error(const std::string& problem) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", problem));
  }
  absl::Status FieldError(const std::string& field, const std::string& problem) const {
    return Error(absl::StrCat("field '", prefix_, field, "': ", problem));
  }

  // Whether `field` is written at all (null included).
  bool Present(const char* field) const { return j_.contains(field); }

  // The value of `field`, or nullptr when absent or null.
  const json* Find(const char* field) const {
    auto it = j_.find(field);
    if (it == j_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  absl::StatusOr<int64_t> RequiredPositiveInt(const char* field) const {
    if (Find(field) == nullptr) return Error(absl::StrCat("missing field '", prefix_, field, "'"));
    return PositiveInt(field, 0);
  }

  absl::StatusOr<double> RequiredPositiveNumber(const char* field) const {
    if (Find(field) == nullptr) return Error(absl::StrCat("missing field '", prefix_, field, "'"));
    return PositiveNumber(field, 0);
  }

  absl::StatusOr<int64_t> NonNegativeInt(const char* field, int64_t default_value) const {
    const json* v = Find(field);
    if (v == nullptr) return default_value;
    if (!v->is_number_integer() || (v->is_number_unsigned() && v->get<uint64_t>() > INT64_MAX) ||
        v->get<int64_t>() < 0) {
      return FieldError(field, "expected a non-negative integer");
    }
    return v->get<int64_t>();
  }

  // Any number, or nullopt when absent or null.
  absl::StatusOr<std::optional<double>> OptionalNumber(const char* field) const {
    const json* v = Find(field);
    if (v == nullptr) return std::optional<double>();
    if (!v->is_number()) return FieldError(field, "expected a number");
    return std::optional<double>(v->get<double>());
  }

  absl::StatusOr<int64_t> PositiveInt(const char* field, int64_t default_value) const {
    const json* v = Find(field);
    if (v == nullptr) return default_value;
    if (!v->is_number_integer() || (v->is_number_unsigned() && v->get<uint64_t>() > INT64_MAX) ||
        v->get<int64_t>() <= 0) {
      return FieldError(field, "expected a positive integer");
    }
    return v->get<int64_t>();
  }

  absl::StatusOr<double> PositiveNumber(const char* field, double default_value) const {
    const json* v = Find(field);
    if (v == nullptr) return default_value;
    if (!v->is_number() || !(v->get<double>() > 0)) {
      return FieldError(field, "expected a positive number");
    }
    return v->get<double>();
  }

  absl::StatusOr<bool> Bool(const char* field, bool default_value) const {
    const json* v = Find(field);
    if (v == nullptr) return default_value;
    if (!v->is_boolean()) return FieldError(field, "expected true or false");
    return v->get<bool>();
  }

  absl::StatusOr<std::string> String(const char* field, const std::string& default_value) const {
    const json* v = Find(field);
    if (v == nullptr) return default_value;
    if (!v->is_string()) return FieldError(field, "expected a string");
    return v->get<std::string>();
  }

  // A token id: an integer, a list of them (the first is taken), or null (-1).
  absl::StatusOr<int64_t> TokenId(const char* field) const {
    const json* v = Find(field);
    if (v != nullptr && v->is_array()) {
      if (v->empty()) return -1;
      v = &(*v)[0];
    }
    if (v == nullptr) return -1;
    if (!v->is_number_integer() || v->get<int64_t>() < 0) {
      return FieldError(field, "expected a non-negative integer, a list of them, or null");
    }
    return v->get<int64_t>();
  }

 private:
  const json& j_;
  const std::string& source_;
  std::string prefix_;
};

absl::Status ParseArchitecture(const FieldReader& r, ModelConfig& c) {
  ASSIGN_OR_RETURN(std::string model_type, r.String("model_type", ""));
  const Architecture* arch = nullptr;
  if (const json* archs = r.Find("architectures")) {
    if (!archs->is_array() || archs->empty() || !(*archs)[0].is_string()) {
      return r.FieldError("architectures", "expected a non-empty list of strings");
    }
    const std::string name = (*archs)[0].get<std::string>();
    arch = FindArchitecture(name);
    if (arch == nullptr) {
      return r.Error(
          absl::StrCat("unknown architecture '", name, "' (supported: ", kSupported, ")"));
    }
  } else {
    arch = FindModelType(model_type);
    if (arch == nullptr) {
      return r.Error(absl::StrCat("unknown architecture '", model_type,
                                  "' (no architectures; model_type must be llama, mistral, qwen2 "
                                  "or qwen3; supported: ",
                                  kSupported, ")"));
    }
  }
  c.architecture = arch->name;
  c.model_type = model_type.empty() ? arch->model_type : model_type;
  return absl::OkStatus();
}

// Note [Config size limits]: each size at most a power of two well above
// any released model's (vocabularies ~256k, hidden 16k-25k, 126 layers,
// heads 128, contexts 10M), so that a corrupt or hostile config.json is an
// error naming the field instead of a signed overflow in CountParameters or
// a std::bad_alloc that names nothing; within them CountParameters stays
// below 2^54 (tests/fuzz/config_fuzz).
absl::Status CheckSizeLimits(const FieldReader& r, const ModelConfig& c) {
  const struct {
    const char* field;
    int64_t value, limit;
  } sizes[] = {{"vocab_size", c.vocab_size, int64_t{1} << 24},
               {"hidden_size", c.hidden_size, int64_t{1} << 17},
               {"intermediate_size", c.intermediate_size, int64_t{1} << 20},
               {"num_hidden_layers", c.num_hidden_layers, int64_t{1} << 10},
               {"num_attention_heads", c.num_attention_heads, int64_t{1} << 12},
               {"num_key_value_heads", c.num_key_value_heads, int64_t{1} << 12},
               {"head_dim", c.head_dim, int64_t{1} << 12},
               {"max_position_embeddings", c.max_position_embeddings, int64_t{1} << 26}};
  for (const auto& s : sizes) {
    if (s.value > s.limit) {
      return r.FieldError(s.field, absl::StrCat(s.value, " exceeds the limit ", s.limit,
                                                " (Note [Config size limits])"));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseSizes(const FieldReader& r, ModelConfig& c) {
  ASSIGN_OR_RETURN(c.vocab_size, r.RequiredPositiveInt("vocab_size"));
  ASSIGN_OR_RETURN(c.hidden_size, r.RequiredPositiveInt("hidden_size"));
  ASSIGN_OR_RETURN(c.intermediate_size, r.RequiredPositiveInt("intermediate_size"));
  ASSIGN_OR_RETURN(c.num_hidden_layers, r.RequiredPositiveInt("num_hidden_layers"));
  ASSIGN_OR_RETURN(c.num_attention_heads, r.RequiredPositiveInt("num_attention_heads"));
  ASSIGN_OR_RETURN(c.num_key_value_heads,
                   r.PositiveInt("num_key_value_heads", c.num_attention_heads));
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return r.FieldError("num_key_value_heads",
                        absl::StrCat(c.num_key_value_heads, " does not divide num_attention_heads ",
                                     c.num_attention_heads));
  }
  // Qwen3Config defaults head_dim to 128; the others derive it.
  const bool derived_head_dim = c.architecture != "Qwen3ForCausalLM";
  if (r.Find("head_dim") == nullptr && derived_head_dim &&
      c.hidden_size % c.num_attention_heads != 0) {
    return r.FieldError("hidden_size",
                        absl::StrCat(c.hidden_size, " is not divisible by num_attention_heads ",
                                     c.num_attention_heads, " and head_dim is not given"));
  }
  ASSIGN_OR_RETURN(
      c.head_dim,
      r.PositiveInt("head_dim", derived_head_dim ? c.hidden_size / c.num_attention_heads : 128));
  // The defaults of transformers' config classes.
  const int64_t default_positions = c.architecture == "LlamaForCausalLM"     ? 2048
                                    : c.architecture == "MistralForCausalLM" ? 4096 * 32
                                                                             : 32768;
  ASSIGN_OR_RETURN(c.max_position_embeddings,
                   r.PositiveInt("max_position_embeddings", default_positions));
  return CheckSizeLimits(r, c);
}

// Features the model does not implement are errors, not silent mismatches.
absl::Status CheckUnsupported(const FieldReader& r) {
  ASSIGN_OR_RETURN(std::string act, r.String("hidden_act", "silu"));
  if (act != "silu")
    return r.FieldError("hidden_act", absl::StrCat("'", act, "' is not supported (only silu)"));
  return absl::OkStatus();
}

// The keys transformers reads for each rope_type (its
// _validate_<type>_rope_parameters); "type" is the older name of rope_type.
const std::vector<std::string>* RopeKeys(const std::string& rope_type) {
  static const auto* const kKeys =
      new std::vector<std::pair<std::string, std::vector<std::string>>>{
          {"default", {}},
          {"linear", {"factor"}},
          {"dynamic", {"factor"}},
          {"yarn",
           {"factor", "original_max_position_embeddings", "attention_factor", "beta_fast",
            "beta_slow", "mscale", "mscale_all_dim", "truncate"}},
          {"llama3",
           {"factor", "original_max_position_embeddings", "low_freq_factor", "high_freq_factor"}},
      };
  for (const auto& [type, keys] : *kKeys) {
    if (type == rope_type) return &keys;
  }
  return nullptr;
}

// The scaling-specific values of a rope dict `d` of type `s.rope_type`.
absl::Status ParseRopeValues(const FieldReader& top, const FieldReader& d, ModelConfig& c) {
  RopeScaling& s = c.rope_scaling;
  if (s.rope_type == "default") return absl::OkStatus();
  ASSIGN_OR_RETURN(s.factor, d.RequiredPositiveNumber("factor"));
  if (s.rope_type == "yarn" || s.rope_type == "llama3") {
    // As transformers' standardize_rope_params: a top-level
    // original_max_position_embeddings (Phi-3 style) wins over the dict's,
    // and max_position_embeddings fills it in.
    ASSIGN_OR_RETURN(s.original_max_position_embeddings,
                     d.PositiveInt("original_max_position_embeddings", c.max_position_embeddings));
    ASSIGN_OR_RETURN(
        s.original_max_position_embeddings,
        top.PositiveInt("original_max_position_embeddings", s.original_max_position_embeddings));
  }
  if (s.rope_type == "llama3") {
    ASSIGN_OR_RETURN(s.low_freq_factor, d.RequiredPositiveNumber("low_freq_factor"));
    ASSIGN_OR_RETURN(s.high_freq_factor, d.RequiredPositiveNumber("high_freq_factor"));
    if (!(s.high_freq_factor > s.low_freq_factor)) {
      return d.FieldError("high_freq_factor", "must be greater than low_freq_factor");
    }
  }
  if (s.rope_type == "yarn") {
    ASSIGN_OR_RETURN(s.attention_factor, d.OptionalNumber("attention_factor"));
    ASSIGN_OR_RETURN(s.beta_fast, d.OptionalNumber("beta_fast"));
    ASSIGN_OR_RETURN(s.beta_slow, d.OptionalNumber("beta_slow"));
    ASSIGN_OR_RETURN(s.mscale, d.OptionalNumber("mscale"));
    ASSIGN_OR_RETURN(s.mscale_all_dim, d.OptionalNumber("mscale_all_dim"));
    if (d.Find("truncate") != nullptr) {
      ASSIGN_OR_RETURN(bool truncate, d.Bool("truncate", true));
      s.truncate = truncate;
    }
  }
  return absl::OkStatus();
}

// Note [RoPE config styles]: transformers 4.x writes rope_theta and
// rope_scaling (null for plain RoPE) at the top level; 5.x writes
// rope_parameters {rope_type, rope_theta, ...}. 5.x reads both: a non-null
// rope_scaling wins over rope_parameters, and a rope_theta inside the dict
// over the top-level one.
absl::Status ParseRope(const FieldReader& r, ModelConfig& c) {
  ASSIGN_OR_RETURN(c.rope_theta, r.PositiveNumber("rope_theta", 10000.0));
  ASSIGN_OR_RETURN(double partial, r.PositiveNumber("partial_rotary_factor", 1.0));
  if (partial != 1.0) {
    return r.FieldError("partial_rotary_factor", "partial rotary embeddings are not supported");
  }
  std::string field = "rope_scaling";
  const json* rope = r.Find("rope_scaling");
  if (rope == nullptr) {
    field = "rope_parameters";
    rope = r.Find("rope_parameters");
  }
  if (rope == nullptr) return absl::OkStatus();
  if (!rope->is_object()) return r.FieldError(field, "expected an object or null");
  for (const char* layer_type : {"full_attention", "sliding_attention"}) {
    if (rope->contains(layer_type)) {
      return r.FieldError(field, "RoPE parameters per layer type are not supported");
    }
  }
  const FieldReader d(*rope, r.source(), field + ".");
  ASSIGN_OR_RETURN(std::string type, d.String("type", "default"));
  ASSIGN_OR_RETURN(c.rope_scaling.rope_type, d.String("rope_type", type));
  const std::vector<std::string>* keys = RopeKeys(c.rope_scaling.rope_type);
  if (keys == nullptr) {
    return d.FieldError("rope_type", absl::StrCat("'", c.rope_scaling.rope_type,
                                                  "' is not supported (supported: default, "
                                                  "linear, dynamic, yarn, llama3)"));
  }
  for (const auto& item : rope->items()) {
    const std::string& key = item.key();
    if (key == "rope_type" || key == "type" || key == "rope_theta" ||
        key == "partial_rotary_factor" ||
        std::find(keys->begin(), keys->end(), key) != keys->end()) {
      continue;
    }
    return d.FieldError(key,
                        absl::StrCat("not supported with rope_type '", c.rope_scaling.rope_type,
                                     "' (supported keys: ", absl::StrJoin(*keys, ", "), ")"));
  }
  ASSIGN_OR_RETURN(c.rope_theta, d.PositiveNumber("rope_theta", c.rope_theta));
  ASSIGN_OR_RETURN(partial, d.PositiveNumber("partial_rotary_factor", 1.0));
  if (partial != 1.0) {
    return d.FieldError("partial_rotary_factor", "partial rotary embeddings are not supported");
  }
  return ParseRopeValues(r, d, c);
}

// Note [Sliding window] in config.h; defaults as transformers' config classes
// (sliding_window 4096 when absent, null when switched off).
absl::Status ParseSlidingWindow(const FieldReader& r, ModelConfig& c) {
  const int64_t layers = c.num_hidden_layers;
  int64_t window = 4096;
  if (r.Present("sliding_window")) {
    ASSIGN_OR_RETURN(window, r.PositiveInt("sliding_window", 0));
  }
  ASSIGN_OR_RETURN(c.use_sliding_window, r.Bool("use_sliding_window", false));
  ASSIGN_OR_RETURN(c.max_window_layers, r.NonNegativeInt("max_window_layers", 28));
  std::vector<bool> sliding(layers, false);
  const bool qwen = c.architecture == "Qwen2ForCausalLM" || c.architecture == "Qwen3ForCausalLM";
  if (c.architecture == "MistralForCausalLM") {
    c.sliding_window = window;
    sliding.assign(layers, window > 0);
  } else if (qwen) {
    c.sliding_window = c.use_sliding_window ? window : 0;
    for (int64_t i = 0; i < layers; ++i) {
      sliding[i] = c.sliding_window > 0 && i >= c.max_window_layers;
    }
  } else {
    c.sliding_window = 0;  // LlamaForCausalLM attends fully whatever the file says
  }
  if (const json* types = r.Find("layer_types")) {
    if (!types->is_array() || static_cast<int64_t>(types->size()) != layers) {
      return r.FieldError("layer_types", absl::StrCat("expected a list of ", layers, " strings"));
    }
    for (int64_t i = 0; i < layers; ++i) {
      const json& t = (*types)[i];
      if (t != "full_attention" && t != "sliding_attention") {
        return r.FieldError("layer_types", absl::StrCat("entry ", i, " is ", t.dump(),
                                                        " (supported: full_attention, "
                                                        "sliding_attention)"));
      }
      const bool slides = t == "sliding_attention";
      if (qwen && slides && c.sliding_window == 0) {
        return r.FieldError("layer_types", absl::StrCat("layer ", i,
                                                        " is sliding_attention but there is no "
                                                        "window (use_sliding_window false or "
                                                        "sliding_window null)"));
      }
      // Llama and Mistral ignore layer_types in transformers: only a list
      // that agrees with what they compute is accepted.
      if (!qwen && slides != sliding[i]) {
        return r.FieldError("layer_types",
                            absl::StrCat("layer ", i, " is ", t.dump(), " but ", c.architecture,
                                         " does not read layer_types"));
      }
      sliding[i] = slides;
    }
  }
  c.sliding_layers = std::move(sliding);
  return absl::OkStatus();
}

// rope_scaling as transformers 4.x writes it (null for plain RoPE).
json RopeScalingJson(const RopeScaling& s) {
  if (s.rope_type == "default") return nullptr;
  json j = {{"rope_type", s.rope_type}, {"factor", s.factor}};
  if (s.rope_type == "yarn" || s.rope_type == "llama3") {
    j["original_max_position_embeddings"] = s.original_max_position_embeddings;
  }
  if (s.rope_type == "llama3") {
    j["low_freq_factor"] = s.low_freq_factor;
    j["high_freq_factor"] = s.high_freq_factor;
  }
  auto optional = [&j](const char* key, const auto& value) {
    if (value.has_value()) j[key] = *value;
  };
  optional("attention_factor", s.attention_factor);
  optional("beta_fast", s.beta_fast);
  optional("beta_slow", s.beta_slow);
  optional("mscale", s.mscale);
  optional("mscale_all_dim", s.mscale_all_dim);
  optional("truncate", s.truncate);
  return j;
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text,
                                             const std::string& source) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON: ", e.what()));
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
  }
  const FieldReader r(j, source);
  ModelConfig c;
  RETURN_IF_ERROR(ParseArchitecture(r, c));
  RETURN_IF_ERROR(ParseSizes(r, c));
  RETURN_IF_ERROR(CheckUnsupported(r));
  RETURN_IF_ERROR(ParseRope(r, c));
  RETURN_IF_ERROR(ParseSlidingWindow(r, c));
  ASSIGN_OR_RETURN(c.rms_norm_eps, r.PositiveNumber("rms_norm_eps", 1e-6));
  ASSIGN_OR_RETURN(c.initializer_range, r.PositiveNumber("initializer_range", 0.02));
  ASSIGN_OR_RETURN(c.tie_word_embeddings, r.Bool("tie_word_embeddings", false));
  ASSIGN_OR_RETURN(c.attention_bias, r.Bool("attention_bias", false));
  ASSIGN_OR_RETURN(c.mlp_bias, r.Bool("mlp_bias", false));
  ASSIGN_OR_RETURN(c.bos_token_id, r.TokenId("bos_token_id"));
  ASSIGN_OR_RETURN(c.eos_token_id, r.TokenId("eos_token_id"));
  // Newer transformers write "dtype" instead of "torch_dtype".
  ASSIGN_OR_RETURN(std::string dtype, r.String("dtype", "float32"));
  ASSIGN_OR_RETURN(c.torch_dtype, r.String("torch_dtype", dtype));

  // Note [Bias switches]: as the transformers modeling code builds each model.
  // Llama: q/k/v/o follow attention_bias, gate/up/down follow mlp_bias.
  // Mistral: no biases at all (its attention and MLP hard-code bias=False).
  // Qwen2: bias on q/k/v only. Qwen3: q/k/v/o follow attention_bias, q/k
  // RMSNorm. Neither Qwen has MLP biases.
  const std::string arch = c.architecture;
  if (arch == "LlamaForCausalLM") {
    c.qkv_bias = c.o_bias = c.attention_bias;
  } else if (arch == "MistralForCausalLM") {
    c.qkv_bias = c.o_bias = c.mlp_bias = false;
  } else if (arch == "Qwen2ForCausalLM") {
    c.qkv_bias = true;
    c.o_bias = c.mlp_bias = false;
  } else {  // Qwen3ForCausalLM
    c.qkv_bias = c.o_bias = c.attention_bias;
    c.qk_norm = true;
    c.mlp_bias = false;
  }
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path) {
  RETURN_IF_ERROR(common::CheckInputFile(path));
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string msg = absl::StrCat(path, ": cannot open: ", std::strerror(err));
    if (err == ENOENT || err == ENOTDIR) return absl::NotFoundError(msg);
    if (err == EACCES) return absl::PermissionDeniedError(msg);
    return absl::InternalError(msg);
  }
  std::stringstream text;
  text << in.rdbuf();
  return ParseModelConfig(text.str(), path);
}

bool operator==(const RopeScaling& a, const RopeScaling& b) {
  return a.rope_type == b.rope_type && a.factor == b.factor &&
         a.original_max_position_embeddings == b.original_max_position_embeddings &&
         a.low_freq_factor == b.low_freq_factor && a.high_freq_factor == b.high_freq_factor &&
         a.attention_factor == b.attention_factor && a.beta_fast == b.beta_fast &&
         a.beta_slow == b.beta_slow && a.mscale == b.mscale &&
         a.mscale_all_dim == b.mscale_all_dim && a.truncate == b.truncate;
}

int64_t AttentionWindow(const ModelConfig& c, int64_t layer) {
  if (c.sliding_window <= 0 || layer < 0 ||
      layer >= static_cast<int64_t>(c.sliding_layers.size())) {
    return 0;
  }
  return c.sliding_layers[layer] ? c.sliding_window : 0;
}

std::string ModelConfigToJson(const ModelConfig& c) {
  json j = {
      {"architectures", json::array({c.architecture})},
      {"model_type", c.model_type},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads},
      {"head_dim", c.head_dim},
      {"max_position_embeddings", c.max_position_embeddings},
      {"rms_norm_eps", c.rms_norm_eps},
      {"rope_theta", c.rope_theta},
      {"rope_scaling", RopeScalingJson(c.rope_scaling)},
      {"initializer_range", c.initializer_range},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"attention_bias", c.attention_bias},
      {"mlp_bias", c.mlp_bias},
      {"hidden_act", "silu"},
      {"torch_dtype", c.torch_dtype},
      {"use_cache", true},
  };
  j["bos_token_id"] = c.bos_token_id >= 0 ? json(c.bos_token_id) : json(nullptr);
  j["eos_token_id"] = c.eos_token_id >= 0 ? json(c.eos_token_id) : json(nullptr);
  // Note [Sliding window]. Mistral and Qwen default sliding_window to 4096
  // when absent, so "none" is written as null.
  const json window = c.sliding_window > 0 ? json(c.sliding_window) : json(nullptr);
  if (c.architecture == "MistralForCausalLM") {
    j["sliding_window"] = window;
  } else if (c.architecture != "LlamaForCausalLM") {
    j["sliding_window"] = window;
    j["use_sliding_window"] = c.use_sliding_window;
    j["max_window_layers"] = c.max_window_layers;
    json types = json::array();
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      types.push_back(AttentionWindow(c, i) > 0 ? "sliding_attention" : "full_attention");
    }
    j["layer_types"] = types;
  }
  return j.dump(2) + "\n";
}

int64_t DecoderLayerParameters(const ModelConfig& c) {
  const int64_t d = c.hidden_size, hd = c.head_dim;
  const int64_t q = c.num_attention_heads * hd, kv = c.num_key_value_heads * hd;
  int64_t attn = d * q + 2 * d * kv + q * d;
  if (c.qkv_bias) attn += q + 2 * kv;
  if (c.o_bias) attn += d;
  if (c.qk_norm) attn += 2 * hd;
  int64_t mlp = 3 * d * c.intermediate_size;
  if (c.mlp_bias) mlp += 2 * c.intermediate_size + d;
  return attn + mlp + 2 * d;
}

int64_t CountParameters(const ModelConfig& c) {
  const int64_t embeddings = c.vocab_size * c.hidden_size * (c.tie_word_embeddings ? 1 : 2);
  return embeddings + c.num_hidden_layers * DecoderLayerParameters(c) + c.hidden_size;
}

}  // namespace distill::worker
