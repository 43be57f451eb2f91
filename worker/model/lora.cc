#include "worker/model/lora.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "worker/model/safetensors.h"

namespace distill::worker {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr char kPeftPrefix[] = "base_model.model.";

bool EndsWithModule(const std::string& path, const std::string& module) {
  return path == module || (path.size() > module.size() &&
                            path.compare(path.size() - module.size(), module.size(), module) == 0 &&
                            path[path.size() - module.size() - 1] == '.');
}

std::string PeftKey(const std::string& module_path, const char* which) {
  return absl::StrCat(kPeftPrefix, module_path, ".", which, ".weight");
}

// Note [PEFT adapter fields]: peft's LoraConfig has many fields that change
// the forward pass (LoRA variants, per-layer selection, extra trainable
// modules). Each must hold its neutral value (null, false, empty); so must a
// field we do not know, so that an adapter written by a newer peft never loads
// with part of its meaning silently dropped. Fields that are metadata or only
// steer initialisation are accepted as they are.

// Fields parsed by LoadAdapterConfig or checked by CheckAdapterFeatures itself,
// and metadata / initialisation-only fields.
bool IsKnownField(const std::string& field) {
  static const auto* const kKnown = new std::set<std::string>{"r",
                                                              "lora_alpha",
                                                              "lora_dropout",
                                                              "use_rslora",
                                                              "target_modules",
                                                              "peft_type",
                                                              "bias",
                                                              "task_type",
                                                              "init_lora_weights",
                                                              "base_model_name_or_path",
                                                              "revision",
                                                              "inference_mode",
                                                              "auto_mapping",
                                                              "peft_version",
                                                              "megatron_config",
                                                              "megatron_core",
                                                              "loftq_config",
                                                              "eva_config",
                                                              "corda_config",
                                                              "lora_ga_config",
                                                              "qalora_group_size",
                                                              "runtime_config",
                                                              "layers_pattern",
                                                              "ensure_weight_tying"};
  return kKnown->count(field) > 0;
}

// Features that must be off, with what setting them would need.
const std::map<std::string, std::string>& UnsupportedFields() {
  static const auto* const kUnsupported = new std::map<std::string, std::string>{
      {"use_dora", "DoRA adapters are not supported"},
      {"fan_in_fan_out", "transposed (Conv1D) weights are not supported"},
      {"lora_bias", "a bias on lora_B is not supported"},
      {"modules_to_save", "fully trained extra modules are not supported"},
      {"layers_to_transform", "adapting only some layers is not supported"},
      {"layer_replication", "layer replication is not supported"},
      {"rank_pattern", "per-module ranks are not supported"},
      {"alpha_pattern", "per-module alphas are not supported"},
      {"exclude_modules", "excluded modules are not supported"},
      {"trainable_token_indices", "trainable token embeddings are not supported"},
      {"target_parameters", "LoRA on parameters (not Linear modules) is not supported"},
      {"alora_invocation_tokens", "activated LoRA (aLoRA) is not supported"},
      {"use_qalora", "QALoRA is not supported"},
      {"arrow_config", "Arrow routing is not supported"},
      {"use_bdlora", "block-diagonal LoRA is not supported"},
      {"velora_config", "VeLoRA is not supported"},
      {"monteclora_config", "MonteCLoRA is not supported"},
      {"kasa_config", "KaSA is not supported"},
  };
  return *kUnsupported;
}

bool IsNeutral(const json& v) {
  return v.is_null() || (v.is_boolean() && !v.get<bool>()) ||
         ((v.is_object() || v.is_array()) && v.empty());
}

// See Note [PEFT adapter fields]. `path` is the adapter_config.json.
absl::Status CheckAdapterFeatures(const json& j, const std::string& path) {
  auto bad = [&](const std::string& field, const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": field '", field, "': ", what));
  };
  if (j.value("peft_type", std::string()) != "LORA") return bad("peft_type", "expected \"LORA\"");
  if (j.contains("bias") && !(j["bias"].is_null() || j["bias"] == "none")) {
    return bad("bias", "only \"none\" is supported (bias training changes the base model)");
  }
  if (j.contains("task_type") && !(j["task_type"].is_null() || j["task_type"] == "CAUSAL_LM")) {
    return bad("task_type", "only CAUSAL_LM (or null) is supported");
  }
  if (j.contains("init_lora_weights")) {
    // The others (PiSSA, OLoRA, CorDA, LoftQ, LoRA-GA) rewrite the base
    // weights: such an adapter belongs to that changed base.
    static const auto* const kPlainInit =
        new std::set<std::string>{"gaussian", "orthogonal", "eva", "mica"};
    const json& init = j["init_lora_weights"];
    if (!init.is_boolean() && !(init.is_string() && kPlainInit->count(init.get<std::string>()))) {
      return bad("init_lora_weights",
                 absl::StrCat(init.dump(),
                              " changes the base weights; convert the adapter to plain LoRA "
                              "(peft: path_initial_model_for_weight_conversion) first"));
    }
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (IsKnownField(it.key()) || IsNeutral(it.value())) continue;
    auto u = UnsupportedFields().find(it.key());
    if (u != UnsupportedFields().end()) return bad(it.key(), u->second);
    return bad(it.key(), absl::StrCat("unknown field set to ", it.value().dump(),
                                      " (a newer peft feature?); only plain LoRA is supported"));
  }
  return absl::OkStatus();
}

}  // namespace

double LoraConfig::Scaling() const {
  return rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

absl::Status ApplyLora(LlamaForCausalLM& model, const LoraConfig& config, uint64_t seed) {
  if (config.rank < 1)
    return absl::InvalidArgumentError(absl::StrCat("lora rank must be >= 1, got ", config.rank));
  auto linears = NamedLinears(model);
  for (auto& [path, lin] : linears) {
    if (lin->has_lora())
      return absl::InvalidArgumentError(absl::StrCat(path, ": already has a LoRA adapter"));
  }
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  torch::Generator gen = at::detail::createCPUGenerator(seed);
  int matched = 0;
  for (auto& [path, lin] : linears) {
    bool target = false;
    for (const auto& m : config.target_modules) target = target || EndsWithModule(path, m);
    if (!target) continue;
    lin->EnableLora(config.rank, config.Scaling(), config.dropout, gen);
    ++matched;
  }
  if (matched == 0) {
    return absl::InvalidArgumentError(absl::StrCat("lora target_modules [",
                                                   absl::StrJoin(config.target_modules, ", "),
                                                   "] match no Linear of the model"));
  }
  return absl::OkStatus();
}

std::vector<std::pair<std::string, torch::Tensor>> AdapterWeights(LlamaForCausalLM& model) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& [path, lin] : NamedLinears(model)) {
    if (!lin->has_lora()) continue;
    out.emplace_back(PeftKey(path, "lora_A"), lin->lora_A);
    out.emplace_back(PeftKey(path, "lora_B"), lin->lora_B);
  }
  return out;
}

absl::Status SaveAdapter(LlamaForCausalLM& model, const LoraConfig& config, const std::string& dir,
                         const std::string& base_model) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (auto& [key, t] : AdapterWeights(model))
    tensors.emplace_back(key, t.detach().to(torch::kCPU).contiguous());
  if (tensors.empty())
    return absl::FailedPreconditionError(absl::StrCat(dir, ": the model has no LoRA adapter"));
  json cfg = {
      {"peft_type", "LORA"},
      {"task_type", "CAUSAL_LM"},
      {"base_model_name_or_path", base_model},
      {"r", config.rank},
      {"lora_alpha", config.alpha},
      {"lora_dropout", config.dropout},
      {"target_modules", config.target_modules},
      {"use_rslora", config.rslora},
      {"use_dora", false},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"inference_mode", true},
      {"init_lora_weights", true},
      {"modules_to_save", nullptr},
      {"layers_to_transform", nullptr},
      {"layers_pattern", nullptr},
      {"rank_pattern", json::object()},
      {"alpha_pattern", json::object()},
      {"revision", nullptr},
  };
  ASSIGN_OR_RETURN(std::string staging, common::MakeStagingDir(dir));
  RETURN_IF_ERROR(common::WriteFileAtomically((fs::path(staging) / "adapter_config.json").string(),
                                              cfg.dump(2) + "\n"));
  RETURN_IF_ERROR(WriteSafetensors((fs::path(staging) / "adapter_model.safetensors").string(),
                                   tensors, {{"format", "pt"}}));
  return common::CommitStagingDir(staging, dir);
}

absl::StatusOr<LoraConfig> LoadAdapterConfig(const std::string& dir) {
  const std::string path = (fs::path(dir) / "adapter_config.json").string();
  ASSIGN_OR_RETURN(std::string text, common::ReadFileToString(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  RETURN_IF_ERROR(CheckAdapterFeatures(j, path));
  auto bad = [&](const std::string& field, const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": field '", field, "': ", what));
  };
  LoraConfig c;
  if (!j.contains("r") || !j["r"].is_number_integer() || j["r"].get<int64_t>() < 1) {
    return bad("r", "expected a positive integer");
  }
  c.rank = j["r"].get<int64_t>();
  if (!j.contains("lora_alpha") || !j["lora_alpha"].is_number())
    return bad("lora_alpha", "expected a number");
  c.alpha = j["lora_alpha"].get<double>();
  if (j.contains("lora_dropout") && j["lora_dropout"].is_number())
    c.dropout = j["lora_dropout"].get<double>();
  if (j.contains("use_rslora") && !j["use_rslora"].is_boolean())
    return bad("use_rslora", "expected true or false");
  c.rslora = j.value("use_rslora", false);
  if (!j.contains("target_modules") || !j["target_modules"].is_array() ||
      j["target_modules"].empty()) {
    return bad("target_modules",
               "expected a non-empty list of module names (a regex string or \"all-linear\" is not "
               "supported)");
  }
  c.target_modules.clear();
  for (const auto& m : j["target_modules"]) {
    if (!m.is_string()) return bad("target_modules", "expected strings");
    c.target_modules.push_back(m.get<std::string>());
  }
  return c;
}

absl::Status LoadAdapter(LlamaForCausalLM& model, const std::string& dir) {
  ASSIGN_OR_RETURN(LoraConfig config, LoadAdapterConfig(dir));
  const std::string file = (fs::path(dir) / "adapter_model.safetensors").string();
  ASSIGN_OR_RETURN(auto st, SafetensorsFile::Open(file));
  RETURN_IF_ERROR(ApplyLora(model, config, /*seed=*/0));
  std::set<std::string> used;
  torch::NoGradGuard no_grad;
  for (auto& [key, param] : AdapterWeights(model)) {
    std::string name = key;
    if (!st->Contains(name)) {
      // Some PEFT versions keep the adapter name: "...lora_A.default.weight".
      std::string alt = name;
      alt.insert(alt.size() - std::string(".weight").size(), ".default");
      if (!st->Contains(alt))
        return absl::InvalidArgumentError(absl::StrCat(file, ": missing tensor '", key, "'"));
      name = alt;
    }
    ASSIGN_OR_RETURN(torch::Tensor t, st->Get(name));
    if (t.sizes() != param.sizes()) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": tensor '", name, "' has shape ",
                                                     c10::str(t.sizes()), ", the model needs ",
                                                     c10::str(param.sizes())));
    }
    param.copy_(t);
    used.insert(name);
  }
  for (const auto& name : st->names()) {
    if (!used.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": unexpected tensor '", name,
                                                     "' (no such LoRA target in this model)"));
    }
  }
  return absl::OkStatus();
}

void MergeLora(LlamaForCausalLM& model) {
  for (auto& [path, lin] : NamedLinears(model)) lin->MergeLora();
}

int64_t CountTrainableParameters(torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) {
    if (p.requires_grad()) n += p.numel();
  }
  return n;
}

}  // namespace distill::worker
