#include "worker/model/config.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/str_cat.h"
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
  FieldReader(const json& j, const std::string& source) : j_(j), source_(source) {}

  absl::Status Error(const std::string& problem) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", problem));
  }
  absl::Status FieldError(const char* field, const std::string& problem) const {
    return Error(absl::StrCat("field '", field, "': ", problem));
  }

  // The value of `field`, or nullptr when absent or null.
  const json* Find(const char* field) const {
    auto it = j_.find(field);
    if (it == j_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  absl::StatusOr<int64_t> RequiredPositiveInt(const char* field) const {
    if (Find(field) == nullptr) return Error(absl::StrCat("missing field '", field, "'"));
    return PositiveInt(field, 0);
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
  if (r.Find("head_dim") == nullptr && c.hidden_size % c.num_attention_heads != 0) {
    return r.FieldError("hidden_size",
                        absl::StrCat(c.hidden_size, " is not divisible by num_attention_heads ",
                                     c.num_attention_heads, " and head_dim is not given"));
  }
  ASSIGN_OR_RETURN(c.head_dim, r.PositiveInt("head_dim", c.hidden_size / c.num_attention_heads));
  ASSIGN_OR_RETURN(c.max_position_embeddings, r.PositiveInt("max_position_embeddings", 2048));
  return absl::OkStatus();
}

// Features the model does not implement are errors, not silent mismatches.
absl::Status CheckUnsupported(const FieldReader& r) {
  ASSIGN_OR_RETURN(std::string act, r.String("hidden_act", "silu"));
  if (act != "silu")
    return r.FieldError("hidden_act", absl::StrCat("'", act, "' is not supported (only silu)"));
  if (const json* rs = r.Find("rope_scaling")) {
    // {"rope_type": "default"} is plain RoPE; anything else changes positions.
    const bool is_default = rs->is_object() && rs->size() == 1 &&
                            ((rs->contains("rope_type") && (*rs)["rope_type"] == "default") ||
                             (rs->contains("type") && (*rs)["type"] == "default"));
    if (!is_default) return r.Error("rope_scaling is not supported yet");
  }
  ASSIGN_OR_RETURN(bool sliding, r.Bool("use_sliding_window", false));
  if (sliding)
    return r.FieldError("use_sliding_window", "sliding-window attention is not supported");
  return absl::OkStatus();
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
  ASSIGN_OR_RETURN(c.rms_norm_eps, r.PositiveNumber("rms_norm_eps", 1e-6));
  ASSIGN_OR_RETURN(c.rope_theta, r.PositiveNumber("rope_theta", 10000.0));
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
      {"rope_scaling", nullptr},
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
  // MistralConfig defaults sliding_window to 4096; the model here attends fully.
  if (c.model_type != "llama") {
    j["sliding_window"] = nullptr;
    j["use_sliding_window"] = false;
  }
  return j.dump(2) + "\n";
}

int64_t CountParameters(const ModelConfig& c) {
  const int64_t d = c.hidden_size, hd = c.head_dim;
  const int64_t q = c.num_attention_heads * hd, kv = c.num_key_value_heads * hd;
  int64_t attn = d * q + 2 * d * kv + q * d;
  if (c.qkv_bias) attn += q + 2 * kv;
  if (c.o_bias) attn += d;
  if (c.qk_norm) attn += 2 * hd;
  int64_t mlp = 3 * d * c.intermediate_size;
  if (c.mlp_bias) mlp += 2 * c.intermediate_size + d;
  const int64_t layer = attn + mlp + 2 * d;
  const int64_t embeddings = c.vocab_size * d * (c.tie_word_embeddings ? 1 : 2);
  return embeddings + c.num_hidden_layers * layer + d;
}

}  // namespace distill::worker
