#include "worker/model/hf_io.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/host_memory.h"
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

// A peft adapter directory given where a model belongs: say so, rather than
// that config.json is missing.
absl::Status CheckNotAdapterDir(const std::string& dir) {
  if (fs::exists(fs::path(dir) / "config.json") ||
      !fs::exists(fs::path(dir) / "adapter_config.json")) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat(dir,
                   ": holds a LoRA adapter (adapter_config.json), not a model; load its base model "
                   "and apply the adapter"));
}

}  // namespace

std::vector<std::pair<std::string, torch::Tensor>> BaseWeights(LlamaForCausalLM& model) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : model->named_parameters(/*recurse=*/true)) {
    if (!IsAdapterName(p.key())) out.emplace_back(p.key(), p.value());
  }
  return out;
}

absl::Status LoadBaseWeights(LlamaForCausalLM& model,
                             const std::map<std::string, torch::Tensor>& tensors,
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
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": tensor '", name, "' has shape ", ShapeString(it->second.sizes()),
                       ", the config needs ", ShapeString(param.sizes())));
    }
    if (!it->second.is_floating_point()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": tensor '", name, "' is not a floating-point tensor"));
    }
    // A NaN or Inf weight poisons every output; training on it only spreads it.
    const int64_t bad = (~torch::isfinite(it->second)).sum().item<int64_t>();
    if (bad > 0) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": tensor '", name, "' holds ", bad,
                                                     " NaN or infinite value(s) of ",
                                                     it->second.numel()));
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

int64_t PartParameters(const ModelConfig& c, const ModelPart& part) {
  const int64_t end = part.layer_end < 0 ? c.num_hidden_layers : part.layer_end;
  const int64_t table = c.vocab_size * c.hidden_size;
  int64_t n = (end - part.layer_begin) * DecoderLayerParameters(c);
  if (part.embed) n += table;
  if (part.head) n += c.hidden_size + (c.tie_word_embeddings && part.embed ? 0 : table);
  return n;
}

// Note [Model fits memory]: a model is built in float32 in host memory before
// its weights are read or it moves to a GPU, so a config.json whose sizes are
// each within Note [Config size limits] may still describe a model larger
// than the host: LibTorch's allocator then throws "can't allocate memory"
// naming neither file nor field, or, with overcommit, initialising the
// weights gets the process killed by the kernel with no message at all. The
// part a rank builds (a teacher stage holds its layers only) is compared with
// the host's memory (common::HostMemoryBytes: physical memory or the cgroup's
// limit) before anything is allocated. Only what cannot fit even alone is
// refused: optimizer state and activations come on top, and a model that
// passes may still run out later.
absl::Status CheckModelFits(const ModelConfig& c, const ModelPart& part, const std::string& source,
                            int64_t host_bytes) {
  const int64_t params = PartParameters(c, part);
  const double bytes = 4.0 * static_cast<double>(params);
  if (host_bytes <= 0 || bytes <= static_cast<double>(host_bytes)) return absl::OkStatus();
  const bool whole = part.layer_begin == 0 && part.layer_end < 0 && part.embed && part.head;
  return absl::FailedPreconditionError(absl::StrCat(
      source, ": ", whole ? "the model's " : "this rank's part of the model has ", params,
      " parameters", whole ? " need " : ", ", common::HumanBytes(bytes),
      " in float32, more than this host's ", common::HumanBytes(static_cast<double>(host_bytes)),
      " of memory (Note [Model fits memory])"));
}

absl::Status CheckModelFits(const ModelConfig& c, const std::string& source) {
  return CheckModelFits(c, ModelPart{}, source, common::HostMemoryBytes());
}

LlamaForCausalLM InitModel(const ModelConfig& config, uint64_t seed) {
  LlamaForCausalLM model(config);
  model->InitWeights(seed);
  return model;
}

absl::StatusOr<LlamaForCausalLM> LoadHfModel(const std::string& dir, torch::Device device) {
  RETURN_IF_ERROR(CheckNotAdapterDir(dir));
  const std::string config_path = (fs::path(dir) / "config.json").string();
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(config_path));
  RETURN_IF_ERROR(CheckModelFits(config, config_path));
  ASSIGN_OR_RETURN(auto tensors, ReadSafetensorsDir(dir));
  LlamaForCausalLM model(config);
  RETURN_IF_ERROR(LoadBaseWeights(model, tensors, dir));
  model->to(device);
  return model;
}

absl::StatusOr<std::map<std::string, torch::Tensor>> ReadHfTensors(
    const std::string& dir, const std::function<bool(const std::string&)>& want) {
  std::map<std::string, torch::Tensor> out;
  const std::string index_path = (fs::path(dir) / "model.safetensors.index.json").string();
  const std::string single_path = (fs::path(dir) / "model.safetensors").string();
  std::map<std::string, std::vector<std::string>> names_by_shard;
  if (!fs::exists(index_path)) {
    if (!fs::exists(single_path)) {
      return absl::NotFoundError(
          absl::StrCat(dir, ": no model.safetensors or model.safetensors.index.json"));
    }
    ASSIGN_OR_RETURN(std::shared_ptr<SafetensorsFile> file, SafetensorsFile::Open(single_path));
    for (const std::string& name : file->names()) {
      if (!want(name)) continue;
      ASSIGN_OR_RETURN(out[name], file->Get(name));
    }
    return out;
  }
  ASSIGN_OR_RETURN(std::string text, common::ReadFileToString(index_path));
  const nlohmann::json index = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded())
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": not valid JSON"));
  auto wm = index.is_object() ? index.find("weight_map") : index.end();
  if (wm == index.end() || !wm->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": no 'weight_map' object"));
  }
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!want(it.key())) continue;
    const std::string shard = it.value().is_string() ? it.value().get<std::string>() : "";
    if (shard.empty() || shard.find('/') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": invalid shard file name for '", it.key(), "'"));
    }
    names_by_shard[shard].push_back(it.key());
  }
  for (const auto& [shard, names] : names_by_shard) {
    const std::string shard_path = (fs::path(dir) / shard).string();
    absl::StatusOr<std::shared_ptr<SafetensorsFile>> file = SafetensorsFile::Open(shard_path);
    if (!file.ok()) {
      return absl::Status(file.status().code(),
                          absl::StrCat(index_path, ": shard '", shard,
                                       "' listed in weight_map: ", file.status().message()));
    }
    for (const std::string& name : names) {
      if (!(*file)->Contains(name)) {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path, ": tensor '", name, "' is not in shard ", shard_path));
      }
      ASSIGN_OR_RETURN(out[name], (*file)->Get(name));
    }
  }
  return out;
}

absl::StatusOr<LlamaForCausalLM> LoadHfModelPart(const std::string& dir, const ModelPart& part,
                                                 torch::Device device) {
  RETURN_IF_ERROR(CheckNotAdapterDir(dir));
  const std::string config_path = (fs::path(dir) / "config.json").string();
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(config_path));
  RETURN_IF_ERROR(CheckModelFits(config, part, config_path, common::HostMemoryBytes()));
  LlamaForCausalLM model(config, part);
  std::set<std::string> names;
  for (const auto& [name, t] : BaseWeights(model)) names.insert(name);
  ASSIGN_OR_RETURN(auto tensors,
                   ReadHfTensors(dir, [&](const std::string& n) { return names.count(n) > 0; }));
  RETURN_IF_ERROR(LoadBaseWeights(model, tensors, dir));
  model->to(device);
  return model;
}

absl::StatusOr<torch::Tensor> LoadHfLmHead(const std::string& dir, int64_t rows,
                                           torch::Device device) {
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig((fs::path(dir) / "config.json").string()));
  const std::string name =
      config.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  ASSIGN_OR_RETURN(auto tensors,
                   ReadHfTensors(dir, [&](const std::string& n) { return n == name; }));
  auto it = tensors.find(name);
  if (it == tensors.end()) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": missing tensor '", name, "'"));
  }
  const torch::Tensor& w = it->second;
  const std::vector<int64_t> expected = {config.vocab_size, config.hidden_size};
  if (w.sizes() != c10::IntArrayRef(expected)) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": tensor '", name, "' has shape ",
                                                   ShapeString(w.sizes()), ", the config needs ",
                                                   ShapeString(expected)));
  }
  if (!w.is_floating_point()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": tensor '", name, "' is not a floating-point tensor"));
  }
  if (rows < 1 || rows > config.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": ", rows, " lm_head rows wanted, the model has ", config.vocab_size));
  }
  // A copy in float32 on `device`: never an alias of the read-only mapping.
  return w.narrow(0, 0, rows)
      .to(device, torch::kFloat, /*non_blocking=*/false, /*copy=*/true)
      .contiguous();
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
  config.torch_dtype = dtype == torch::kBFloat16 ? "bfloat16"
                       : dtype == torch::kHalf   ? "float16"
                                                 : "float32";

  ASSIGN_OR_RETURN(std::string staging, common::MakeStagingDir(dir));
  RETURN_IF_ERROR(common::WriteFileAtomically((fs::path(staging) / "config.json").string(),
                                              ModelConfigToJson(config) + "\n"));
  RETURN_IF_ERROR(WriteSafetensors((fs::path(staging) / "model.safetensors").string(), tensors,
                                   {{"format", "pt"}}));
  return common::CommitStagingDir(staging, dir);
}

}  // namespace distill::worker
