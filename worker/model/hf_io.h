// Hugging Face model directories <-> LlamaForCausalLM: config.json plus
// model.safetensors (or sharded with model.safetensors.index.json).
//
// Loading checks every expected tensor is present with the right shape and no
// unexpected one is left (HF's rotary inv_freq buffers are ignored); errors
// name the file and tensor. Saving writes into a temp dir, then renames, so a
// crash never leaves a half-written model. Thread-compatible.
#ifndef DISTILL_WORKER_MODEL_HF_IO_H_
#define DISTILL_WORKER_MODEL_HF_IO_H_

#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/model/config.h"
#include "worker/model/llama.h"

namespace distill::worker {

// Reads DIR/config.json and the weights into an fp32 model on `device`. A
// peft adapter directory (adapter_config.json, no config.json) is an
// InvalidArgument saying so.
absl::StatusOr<LlamaForCausalLM> LoadHfModel(const std::string& dir,
                                             torch::Device device = torch::kCPU);

// Reads only the tensors of `part` (a teacher pipeline stage: some decoder
// layers, the embeddings, the head) into an fp32 model on `device` that holds
// just that part (ModelPart). The other tensors stay unread in the
// memory-mapped files. Checks the part's tensors as LoadHfModel does.
absl::StatusOr<LlamaForCausalLM> LoadHfModelPart(const std::string& dir, const ModelPart& part,
                                                 torch::Device device = torch::kCPU);

// The tensors of the model in DIR (model.safetensors or the shards of
// model.safetensors.index.json) whose HF names `want` accepts, aliasing the
// memory-mapped files as ReadSafetensorsDir does; shards holding none of them
// are not opened. A wanted name the index lists but its shard lacks is an
// error naming both.
absl::StatusOr<std::map<std::string, torch::Tensor>> ReadHfTensors(
    const std::string& dir, const std::function<bool(const std::string&)>& want);

// The first `rows` rows of the lm_head of the model in DIR (the embedding
// table when tie_word_embeddings) as float32 on `device`, reading no other
// weight. InvalidArgument when the tensor is missing, is not [vocab_size,
// hidden_size] or has fewer than `rows` rows.
absl::StatusOr<torch::Tensor> LoadHfLmHead(const std::string& dir, int64_t rows,
                                           torch::Device device = torch::kCPU);

// A randomly initialised model (LlamaForCausalLM::InitWeights(seed)). Callers
// check CheckModelFits first.
LlamaForCausalLM InitModel(const ModelConfig& config, uint64_t seed);

// The parameters of `part` of a model of `config` (CountParameters for the
// whole model; a stage's own lm_head copy when tied and without embed).
int64_t PartParameters(const ModelConfig& config, const ModelPart& part);

// Note [Model fits memory]: FailedPrecondition, naming `source` (the
// config.json), the parameter count and both sizes, when `part` of the model
// in float32 exceeds `host_bytes` (0: unknown, no check). LoadHfModel and
// LoadHfModelPart check it themselves.
absl::Status CheckModelFits(const ModelConfig& config, const ModelPart& part,
                            const std::string& source, int64_t host_bytes);
absl::Status CheckModelFits(const ModelConfig& config, const std::string& source);

// Copies `tensors` (HF names) into the model's base parameters (LoRA adapters
// excluded). `source` names where they came from in errors.
absl::Status LoadBaseWeights(LlamaForCausalLM& model,
                             const std::map<std::string, torch::Tensor>& tensors,
                             const std::string& source);

// The base parameters under HF names (no LoRA adapters; no lm_head when tied).
std::vector<std::pair<std::string, torch::Tensor>> BaseWeights(LlamaForCausalLM& model);

// Writes config.json and model.safetensors (in `dtype`) to `dir`, replacing it
// atomically. The model must have no LoRA adapter (merge first).
absl::Status SaveHfModel(LlamaForCausalLM& model, const std::string& dir,
                         torch::Dtype dtype = torch::kFloat);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_MODEL_HF_IO_H_
