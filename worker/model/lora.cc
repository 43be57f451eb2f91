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
  return path == module ||
         (path.size() > module.size() && path.compare(path.size() - module.size(), module.size(), module) == 0 &&
          path[path.size() - module.size() - 1] == '.');
}

std::string PeftKey(const std::string& module_path, const char* which) {
  return absl::StrCat(kPeftPrefix, module_path, ".", which, ".weight");
}

}  // namespace

double LoraConfig::Scaling() const {
  return rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

absl::Status ApplyLora(LlamaForCausalLM& model, const LoraConfig& config, uint64_t seed) {
  if (config.rank < 1) return absl::InvalidArgumentError(absl::StrCat("lora rank must be >= 1, got ", config.rank));
  auto linears = NamedLinears(model);
  for (auto& [path, lin] : linears) {
    if (lin->has_lora()) return absl::InvalidArgumentError(absl::StrCat(path, ": already has a LoRA adapter"));
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
    return absl::InvalidArgumentError(absl::StrCat("lora target_modules [", absl::StrJoin(config.target_modules, ", "),
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
  for (auto& [key, t] : AdapterWeights(model)) tensors.emplace_back(key, t.detach().to(torch::kCPU).contiguous());
  if (tensors.empty()) return absl::FailedPreconditionError(absl::StrCat(dir, ": the model has no LoRA adapter"));
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
  RETURN_IF_ERROR(WriteSafetensors((fs::path(staging) / "adapter_model.safetensors").string(), tensors,
                                   {{"format", "pt"}}));
  return common::CommitStagingDir(staging, dir);
}

absl::StatusOr<LoraConfig> LoadAdapterConfig(const std::string& dir) {
  const std::string path = (fs::path(dir) / "adapter_config.json").string();
  ASSIGN_OR_RETURN(std::string text, common::ReadFileToString(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  auto bad = [&](const std::string& field, const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": field '", field, "': ", what));
  };
  if (j.value("peft_type", std::string()) != "LORA") return bad("peft_type", "expected \"LORA\"");
  LoraConfig c;
  if (!j.contains("r") || !j["r"].is_number_integer() || j["r"].get<int64_t>() < 1) {
    return bad("r", "expected a positive integer");
  }
  c.rank = j["r"].get<int64_t>();
  if (!j.contains("lora_alpha") || !j["lora_alpha"].is_number()) return bad("lora_alpha", "expected a number");
  c.alpha = j["lora_alpha"].get<double>();
  if (j.contains("lora_dropout") && j["lora_dropout"].is_number()) c.dropout = j["lora_dropout"].get<double>();
  if (j.contains("use_rslora") && j["use_rslora"].is_boolean()) c.rslora = j["use_rslora"].get<bool>();
  if (!j.contains("target_modules") || !j["target_modules"].is_array() || j["target_modules"].empty()) {
    return bad("target_modules", "expected a non-empty list of module names (regex targets are not supported)");
  }
  c.target_modules.clear();
  for (const auto& m : j["target_modules"]) {
    if (!m.is_string()) return bad("target_modules", "expected strings");
    c.target_modules.push_back(m.get<std::string>());
  }
  if (j.value("use_dora", false)) return bad("use_dora", "DoRA adapters are not supported");
  if (j.contains("bias") && j["bias"].is_string() && j["bias"] != "none") return bad("bias", "only \"none\" is supported");
  if (j.value("fan_in_fan_out", false)) return bad("fan_in_fan_out", "not supported");
  for (const char* f : {"rank_pattern", "alpha_pattern"}) {
    if (j.contains(f) && j[f].is_object() && !j[f].empty()) return bad(f, "per-module patterns are not supported");
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
      if (!st->Contains(alt)) return absl::InvalidArgumentError(absl::StrCat(file, ": missing tensor '", key, "'"));
      name = alt;
    }
    ASSIGN_OR_RETURN(torch::Tensor t, st->Get(name));
    if (t.sizes() != param.sizes()) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": tensor '", name, "' has shape ", c10::str(t.sizes()),
                                                     ", the model needs ", c10::str(param.sizes())));
    }
    param.copy_(t);
    used.insert(name);
  }
  for (const auto& name : st->names()) {
    if (!used.count(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": unexpected tensor '", name, "' (no such LoRA target in this model)"));
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
