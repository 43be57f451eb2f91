// LoRA adapters on a LlamaForCausalLM, in PEFT's on-disk layout.
//
// An adapter is saved as adapter_config.json + adapter_model.safetensors with
// PEFT key names ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"),
// loadable by `peft`; merging folds W += scaling * B A into a plain model.
// Thread-compatible.
#ifndef DISTILL_WORKER_MODEL_LORA_H_
#define DISTILL_WORKER_MODEL_LORA_H_

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/model/llama.h"

namespace distill::worker {

struct LoraConfig {
  int64_t rank = 8;      // r
  double alpha = 16.0;   // lora_alpha
  double dropout = 0.0;  // on the adapter's input, training only
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};
  bool rslora = false;  // scaling alpha / sqrt(r) instead of alpha / r
  double Scaling() const;
};

// Adds an adapter to every Linear whose name ends in a target module, and
// freezes every base parameter (only adapters train). A is drawn from `seed`.
// InvalidArgument if no module matches or the model already has adapters.
absl::Status ApplyLora(LlamaForCausalLM& model, const LoraConfig& config, uint64_t seed);

// Adapter tensors under PEFT key names, in module order.
std::vector<std::pair<std::string, torch::Tensor>> AdapterWeights(LlamaForCausalLM& model);

// Writes DIR/adapter_config.json and DIR/adapter_model.safetensors (atomically
// replacing DIR). `base_model` is recorded as base_model_name_or_path.
absl::Status SaveAdapter(LlamaForCausalLM& model, const LoraConfig& config, const std::string& dir,
                         const std::string& base_model);

// Parses DIR/adapter_config.json as peft writes it. PEFT features we do not
// implement (LoRA variants such as DoRA, bias training, modules_to_save,
// rank/alpha patterns, layer selection, fan_in_fan_out, regex targets, and any
// unknown field that is not null/false/empty) are InvalidArgument naming the
// file and the field. See Note [PEFT adapter fields] in lora.cc.
absl::StatusOr<LoraConfig> LoadAdapterConfig(const std::string& dir);

// ApplyLora with the adapter's config, then loads its weights. Missing,
// unexpected or mis-shaped tensors are InvalidArgument naming file and key.
absl::Status LoadAdapter(LlamaForCausalLM& model, const std::string& dir);

// Folds every adapter into its base weight and removes it.
void MergeLora(LlamaForCausalLM& model);

// Elements of parameters with requires_grad.
int64_t CountTrainableParameters(torch::nn::Module& module);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_MODEL_LORA_H_
