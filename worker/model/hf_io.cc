#include "worker/model/hf_io.h"

#include <filesystem>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "worker/model/safetensors.h"

namespace distill::worker {
namespace fs = std::filesystem;

namespace {

bool IsAdapterName(const std::string& name) { return name.find(".lora_") != std::string::npos; }

std::string ShapeString(c10::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) absl::StrAppend(&out, i ? ", " : "", s[i]);
  return out + "]";
}

}  // namespace

std::vector<std::pair<std::string, torch::Tensor>> BaseWeights(LlamaForCausalLM& model) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : model->named_parameters(/*recurse=*/true)) {
    if (!IsAdapterName(p.key())) out.emplace_back(p.key(), p.value());
  }
  return out;
}

absl::Status LoadBaseWeights(LlamaForCausalLM& model, const std::map<std::string, torch::Tensor>& tensors,
                             const std::string& source) {
  std::set<std::string> expected;
  torch::NoGradGuard no_grad;
  for (auto& [name, param] : BaseWeights(model)) {
    expected.insert(name);
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": missing tensor '", name, "'"));
    }
    if (it->second.sizes() != param.sizes()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": tensor '", name, "' has shape ",
                                                     ShapeString(it->second.sizes()), ", the config needs ",
                                                     ShapeString(param.sizes())));
    }
    if (!it->second.is_floating_point()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": tensor '", name, "' is not a floating-point tensor"));
    }
    param.copy_(it->second);
  }
  for (const auto& [name, t] : tensors) {
    if (expected.count(name)) continue;
    // Older HF checkpoints carry the rotary table as a buffer; it is derived.
    if (absl::EndsWith(name, ".rotary_emb.inv_freq")) continue;
    if (name == "lm_head.weight" && model->config().tie_word_embeddings) continue;
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": unexpected tensor '", name, "' (not part of a ",
                     model->config().architecture, " with this config)"));
  }
  return absl::OkStatus();
}

LlamaForCausalLM InitModel(const ModelConfig& config, uint64_t seed) {
  LlamaForCausalLM model(config);
  model->InitWeights(seed);
  return model;
}

absl::StatusOr<LlamaForCausalLM> LoadHfModel(const std::string& dir, torch::Device device) {
  const std::string config_path = (fs::path(dir) / "config.json").string();
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(config_path));
  ASSIGN_OR_RETURN(auto tensors, ReadSafetensorsDir(dir));
  LlamaForCausalLM model(config);
  RETURN_IF_ERROR(LoadBaseWeights(model, tensors, dir));
  model->to(device);
  return model;
}

absl::Status SaveHfModel(LlamaForCausalLM& model, const std::string& dir, torch::Dtype dtype) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (auto& [name, t] : BaseWeights(model)) {
    tensors.emplace_back(name, t.detach().to(torch::kCPU, dtype).contiguous());
  }
  for (const auto& p : model->named_parameters()) {
    if (IsAdapterName(p.key())) {
      return absl::FailedPreconditionError(
          absl::StrCat(dir, ": the model still carries LoRA adapters; merge them before saving"));
    }
  }
  ModelConfig config = model->config();
  config.torch_dtype = dtype == torch::kBFloat16 ? "bfloat16" : dtype == torch::kHalf ? "float16" : "float32";

  ASSIGN_OR_RETURN(std::string staging, common::MakeStagingDir(dir));
  RETURN_IF_ERROR(common::WriteFileAtomically((fs::path(staging) / "config.json").string(),
                                              ModelConfigToJson(config) + "\n"));
  RETURN_IF_ERROR(WriteSafetensors((fs::path(staging) / "model.safetensors").string(), tensors,
                                   {{"format", "pt"}}));
  return common::CommitStagingDir(staging, dir);
}

}  // namespace distill::worker
