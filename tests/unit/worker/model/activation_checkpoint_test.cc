#include "worker/model/activation_checkpoint.h"

#include <ATen/autocast_mode.h>
#include <c10/core/CPUAllocator.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tests/test_util/counting_allocator.h"
#include "tests/test_util/tiny_models.h"
#include "worker/model/hf_io.h"
#include "worker/model/llama.h"
#include "worker/model/lora.h"

namespace distill::worker {
namespace {

using distill::testing::CountingCpuAllocator;

// The tiny Llama with 4 layers, the second and fourth with a sliding window
// of 5, so that checkpointed layers see every kind of mask.
ModelConfig FourLayerConfig() {
  ModelConfig c = distill::testing::TinyLlamaConfig();
  c.num_hidden_layers = 4;
  c.sliding_window = 5;
  c.sliding_layers = {false, true, false, true};
  return c;
}

struct Batch {
  torch::Tensor ids, targets, positions;  // positions undefined: one sequence per row
};

Batch MakeBatch(int64_t b, int64_t t, int64_t vocab, bool packed) {
  torch::manual_seed(3);
  Batch batch;
  batch.ids = torch::randint(0, vocab, {b, t}, torch::kLong);
  batch.targets = torch::randint(0, vocab, {b, t}, torch::kLong);
  if (packed) {
    // Row 0: segments of 5, 7 and 4 slots; row 1: 9 and 7 (t = 16).
    auto seg = [](std::vector<int64_t> lengths) {
      std::vector<torch::Tensor> parts;
      for (int64_t n : lengths) parts.push_back(torch::arange(n, torch::kLong));
      return torch::cat(parts);
    };
    batch.positions = torch::stack({seg({5, 7, 4}), seg({9, 7})});
  }
  return batch;
}

struct StepResult {
  torch::Tensor loss;
  std::map<std::string, torch::Tensor> grads;  // by parameter name; undefined when none
  torch::Tensor next_draw;  // the RNG's next numbers after the step (CPU, then the model's device)
};

struct StepOptions {
  // The loss adds, for each layer here, the mean square of its captured output
  // (a stand-in for a feature-distillation loss).
  std::vector<int64_t> capture_layers;
  uint64_t rng_seed = 5;  // seeds the draws of LoRA dropout
  // When set, the forward runs under bf16 autocast on this device type (the
  // backward outside it, as the trainer does).
  std::optional<at::DeviceType> autocast;
};

// bf16 autocast on `device` for its lifetime (then off, its cache cleared).
class ScopedAutocast {
 public:
  explicit ScopedAutocast(std::optional<at::DeviceType> device) : device_(device) {
    if (!device_) return;
    at::autocast::set_autocast_dtype(*device_, at::kBFloat16);
    at::autocast::set_autocast_enabled(*device_, true);
  }
  ~ScopedAutocast() {
    if (!device_) return;
    at::autocast::set_autocast_enabled(*device_, false);
    at::autocast::clear_cache();
  }

 private:
  std::optional<at::DeviceType> device_;
};

// One forward + backward from cleared gradients; batch on the model's device.
StepResult Step(LlamaForCausalLM& model, const Batch& batch, const StepOptions& o = {}) {
  for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
  torch::manual_seed(o.rng_seed);
  torch::Tensor loss;
  {
    ScopedAutocast autocast(o.autocast);
    std::map<int64_t, torch::Tensor> captured;
    torch::Tensor hidden = model->Hidden(batch.ids, o.capture_layers, &captured, batch.positions);
    loss = CausalLmLoss(model->Logits(hidden), batch.targets);
    for (int64_t layer : o.capture_layers) {
      loss = loss + captured.at(layer).to(torch::kFloat).pow(2).mean();
    }
  }
  loss.backward();
  StepResult r;
  r.loss = loss.detach();
  for (const auto& p : model->named_parameters()) {
    r.grads[p.key()] = p.value().grad().defined() ? p.value().grad().clone() : torch::Tensor();
  }
  const auto device = torch::TensorOptions().device(batch.ids.device());
  r.next_draw = torch::cat({torch::rand({8}), torch::rand({8}, device).cpu()});
  return r;
}

// Both runs give the same loss and, parameter for parameter, the same
// gradient (or none on both), bit for bit.
void ExpectSameStep(const StepResult& plain, const StepResult& ckpt) {
  EXPECT_TRUE(torch::equal(plain.loss, ckpt.loss))
      << plain.loss.item<double>() << " vs " << ckpt.loss.item<double>();
  // The recompute's draws are undone: the rest of the step sees the same RNG.
  EXPECT_TRUE(torch::equal(plain.next_draw, ckpt.next_draw));
  ASSERT_EQ(plain.grads.size(), ckpt.grads.size());
  for (const auto& [name, g] : plain.grads) {
    const torch::Tensor& c = ckpt.grads.at(name);
    ASSERT_EQ(g.defined(), c.defined()) << name;
    if (g.defined()) {
      EXPECT_TRUE(torch::equal(g, c)) << name;
    }
  }
}

// As ExpectSameStep, but gradients within `rtol` of the largest element of
// the plain gradient, and bit for bit for the parameters named in `exact`.
void ExpectCloseStep(const StepResult& plain, const StepResult& ckpt, double rtol,
                     const std::vector<std::string>& exact) {
  EXPECT_TRUE(torch::equal(plain.loss, ckpt.loss));
  EXPECT_TRUE(torch::equal(plain.next_draw, ckpt.next_draw));
  ASSERT_EQ(plain.grads.size(), ckpt.grads.size());
  for (const auto& [name, g] : plain.grads) {
    const torch::Tensor& c = ckpt.grads.at(name);
    ASSERT_TRUE(g.defined() && c.defined()) << name;
    if (std::find(exact.begin(), exact.end(), name) != exact.end()) {
      EXPECT_TRUE(torch::equal(g, c)) << name;
      continue;
    }
    const double scale = g.abs().max().item<double>();
    const double diff = (g - c).abs().max().item<double>();
    EXPECT_LE(diff, rtol * scale) << name << ": max |diff| " << diff << ", max |grad| " << scale;
  }
}

// Plain, then checkpointed, on one model (same weights, same RNG seed).
std::pair<StepResult, StepResult> PlainAndCheckpointed(LlamaForCausalLM& model, const Batch& batch,
                                                       const StepOptions& o = {}) {
  model->set_activation_checkpointing(false);
  StepResult plain = Step(model, batch, o);
  model->set_activation_checkpointing(true);
  StepResult ckpt = Step(model, batch, o);
  model->set_activation_checkpointing(false);
  return {plain, ckpt};
}

bool IsCheckpointNode(const torch::Tensor& t) {
  return t.grad_fn() != nullptr &&
         t.grad_fn()->name().find("CheckpointFunction") != std::string::npos;
}

TEST(ActivationCheckpointTest, OnlyTrainingWithGradModeIsCheckpointed) {
  LlamaForCausalLM model = InitModel(FourLayerConfig(), 1);
  EXPECT_FALSE(model->activation_checkpointing());
  model->set_activation_checkpointing(true);
  EXPECT_TRUE(model->activation_checkpointing());
  const Batch batch = MakeBatch(2, 16, 40, /*packed=*/false);
  torch::Tensor x = model->Embed(batch.ids);
  model->train();
  EXPECT_TRUE(IsCheckpointNode(model->RunLayers(x, 0, 4)));
  {
    torch::NoGradGuard no_grad;
    EXPECT_FALSE(model->RunLayers(x, 0, 4).requires_grad());
  }
  model->eval();
  torch::Tensor eval_out = model->RunLayers(x, 0, 4);
  EXPECT_TRUE(eval_out.requires_grad());
  EXPECT_FALSE(IsCheckpointNode(eval_out));
  model->train();
  model->set_activation_checkpointing(false);
  EXPECT_FALSE(IsCheckpointNode(model->RunLayers(x, 0, 4)));
}

TEST(ActivationCheckpointTest, FullFineTuneGradientsEqualPlain) {
  LlamaForCausalLM model = InitModel(FourLayerConfig(), 1);
  model->train();
  auto [plain, ckpt] = PlainAndCheckpointed(model, MakeBatch(2, 16, 40, /*packed=*/false));
  ExpectSameStep(plain, ckpt);
  EXPECT_TRUE(ckpt.grads.at("model.embed_tokens.weight").defined());
  EXPECT_GT(ckpt.grads.at("model.layers.0.mlp.up_proj.weight").abs().sum().item<double>(), 0);
}

TEST(ActivationCheckpointTest, PackedRowsGradientsEqualPlain) {
  LlamaForCausalLM model = InitModel(FourLayerConfig(), 2);
  model->train();
  auto [plain, ckpt] = PlainAndCheckpointed(model, MakeBatch(2, 16, 40, /*packed=*/true));
  ExpectSameStep(plain, ckpt);
}

// Captured hidden states carry gradients into the layers below them: the
// feature terms change layer 0's gradient, and alike in both runs. Not bit
// for bit below a captured layer: the gradient reaching a captured output i
// is the sum of the feature term f and of the three terms a, b, c from layer
// i + 1 (its residual and its input RMSNorm's two uses). The plain engine
// adds them one by one as they arrive, ((f + a) + b) + c; checkpointed,
// layer i + 1's recompute sums its own first, f + ((a + b) + c), and float
// addition is not associative. Above the last capture (layer 3, the head)
// nothing changes order: bit for bit there. Elsewhere a few float32 ulps of
// reordering, carried through the layers below (3e-7 of the largest
// gradient element here): within 1e-5 of it.
TEST(ActivationCheckpointTest, CapturedHiddenStatesCarryGradients) {
  LlamaForCausalLM model = InitModel(FourLayerConfig(), 3);
  model->train();
  const Batch batch = MakeBatch(2, 16, 40, /*packed=*/true);
  StepOptions capture;
  capture.capture_layers = {-1, 1, 2};
  auto [plain, ckpt] = PlainAndCheckpointed(model, batch, capture);
  std::vector<std::string> exact = {"lm_head.weight", "model.norm.weight"};
  for (const auto& [name, g] : plain.grads) {
    if (name.rfind("model.layers.3.", 0) == 0) exact.push_back(name);
  }
  ExpectCloseStep(plain, ckpt, 1e-5, exact);
  model->set_activation_checkpointing(true);
  const StepResult without = Step(model, batch);
  const std::string name = "model.layers.0.self_attn.q_proj.weight";
  EXPECT_FALSE(torch::equal(without.grads.at(name), ckpt.grads.at(name)));
}

// `config` initialised, with rank-4 LoRA adapters (`dropout`) on q, v, up
// and down whose B is non-zero (so A gets gradients).
LlamaForCausalLM LoraModel(const ModelConfig& config, double dropout) {
  LlamaForCausalLM model = InitModel(config, 4);
  LoraConfig lora;
  lora.rank = 4;
  lora.dropout = dropout;
  lora.target_modules = {"q_proj", "v_proj", "up_proj", "down_proj"};
  EXPECT_TRUE(ApplyLora(model, lora, 0).ok());
  torch::NoGradGuard no_grad;
  torch::manual_seed(11);
  for (auto& [path, lin] : NamedLinears(model)) {
    if (lin->has_lora()) lin->lora_B.normal_(0, 0.5);
  }
  return model;
}

// LoRA: the embedding is frozen, so layer 0's input needs no grad (the dummy
// input gets the node recorded); dropout draws in forward and again in the
// recompute, equal only because the RNG state is restored.
TEST(ActivationCheckpointTest, LoraWithDropoutGradientsEqualPlain) {
  LlamaForCausalLM model = LoraModel(FourLayerConfig(), /*dropout=*/0.3);
  model->train();
  const Batch batch = MakeBatch(2, 16, 40, /*packed=*/true);
  auto [plain, ckpt] = PlainAndCheckpointed(model, batch);
  ExpectSameStep(plain, ckpt);
  for (const auto& [name, g] : ckpt.grads) {
    const bool adapter = name.find(".lora_") != std::string::npos;
    EXPECT_EQ(g.defined(), adapter) << name;  // the base stays frozen
    EXPECT_EQ(model->named_parameters()[name].requires_grad(), adapter) << name;
  }
  const std::string a0 = "model.layers.0.self_attn.q_proj.lora_A";
  EXPECT_GT(ckpt.grads.at(a0).abs().sum().item<double>(), 0);
  // Other dropout masks give other gradients: equality above needs the same masks.
  StepOptions other_seed;
  other_seed.rng_seed = 6;
  const StepResult other_masks = Step(model, batch, other_seed);
  EXPECT_FALSE(torch::equal(other_masks.grads.at(a0), plain.grads.at(a0)));
}

// The recompute runs under the autocast state of the forward, not of the
// backward (outside the trainer's autocast region): bf16 again, so the
// gradients equal plain bit for bit, and differ from an fp32 step.
TEST(ActivationCheckpointTest, AutocastOfTheForwardIsRestoredForTheRecompute) {
  LlamaForCausalLM model = LoraModel(FourLayerConfig(), /*dropout=*/0.1);
  model->train();
  const Batch batch = MakeBatch(2, 16, 40, /*packed=*/true);
  StepOptions bf16;
  bf16.autocast = at::kCPU;
  auto [plain, ckpt] = PlainAndCheckpointed(model, batch, bf16);
  ExpectSameStep(plain, ckpt);
  EXPECT_FALSE(at::autocast::is_autocast_enabled(at::kCPU));  // put back after the recompute
  const StepResult fp32 = Step(model, batch);
  const std::string a0 = "model.layers.0.self_attn.q_proj.lora_A";
  EXPECT_FALSE(torch::equal(fp32.grads.at(a0), plain.grads.at(a0)));
}

// GradReducer launches buckets from parameter hooks: with checkpointing each
// hook still runs exactly once per backward, with the gradient .grad gets.
TEST(ActivationCheckpointTest, ParameterHooksFireOncePerBackward) {
  LlamaForCausalLM model = InitModel(FourLayerConfig(), 5);
  model->train();
  model->set_activation_checkpointing(true);
  const std::vector<std::string> names = {"model.layers.0.self_attn.q_proj.weight",
                                          "model.layers.3.mlp.down_proj.weight",
                                          "model.embed_tokens.weight"};
  std::vector<int> calls(names.size(), 0);
  std::vector<torch::Tensor> seen(names.size());
  auto params = model->named_parameters();
  for (size_t i = 0; i < names.size(); ++i) {
    params[names[i]].register_hook([&calls, &seen, i](torch::Tensor grad) {
      ++calls[i];
      seen[i] = grad.clone();
    });
  }
  const Batch batch = MakeBatch(2, 16, 40, /*packed=*/false);
  for (int step = 1; step <= 2; ++step) {
    const StepResult r = Step(model, batch);
    for (size_t i = 0; i < names.size(); ++i) {
      EXPECT_EQ(calls[i], step) << names[i];
      EXPECT_TRUE(torch::equal(seen[i], r.grads.at(names[i]))) << names[i];
    }
  }
}

// Note [Checkpoint memory bound]: forward + backward of L layers keeps, in
// the plain run, every layer's saved activations until backward reaches the
// layer; among them the MLP's four [B, T, I] tensors (gate_proj's output for
// silu, silu's output and up_proj's output for the product, the product for
// down_proj), 16 B T I bytes per layer. Checkpointed, only the L layer inputs
// (4 B T D bytes each) stay, and one layer's activations exist at a time,
// during its recompute. The parameter gradients (the same in both runs) can
// put the checkpointed peak at the end of backward, when they all exist but
// the plain run has freed most activations, so the guaranteed saving is
// (L - 1) * 16 B T I - L * 4 B T D - (all parameters' bytes).
TEST(ActivationCheckpointTest, PeakMemoryIsLowerByTheLayersActivations) {
  ModelConfig c = distill::testing::TinyLlamaConfig();
  c.vocab_size = 64;
  c.hidden_size = 64;
  c.intermediate_size = 256;
  c.num_hidden_layers = 6;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  constexpr int64_t kB = 2, kT = 256;
  LlamaForCausalLM model = InitModel(c, 6);
  model->train();
  const Batch batch = MakeBatch(kB, kT, c.vocab_size, /*packed=*/false);
  int64_t param_bytes = 0;
  for (const auto& p : model->parameters()) param_bytes += p.numel() * 4;
  const int64_t mlp_saved = 16 * kB * kT * c.intermediate_size;
  const int64_t layer_input = 4 * kB * kT * c.hidden_size;
  const int64_t saving =
      (c.num_hidden_layers - 1) * mlp_saved - c.num_hidden_layers * layer_input - param_bytes;
  ASSERT_GT(saving, 0);

  static CountingCpuAllocator* counting = new CountingCpuAllocator(c10::GetCPUAllocator());
  c10::Allocator* const base = c10::GetCPUAllocator();
  auto peak_of = [&](bool checkpointing) {
    model->set_activation_checkpointing(checkpointing);
    for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
    // Priority 255: above the default CPU allocator's, and the same to put it back.
    c10::SetCPUAllocator(counting, 255);
    const int64_t live_before = counting->Reset();
    {
      torch::Tensor loss = CausalLmLoss(model->forward(batch.ids), batch.targets);
      loss.backward();
    }
    const int64_t peak = counting->peak() - live_before;
    c10::SetCPUAllocator(base, 255);
    return peak;
  };
  const int64_t plain = peak_of(false);
  const int64_t ckpt = peak_of(true);
  std::printf("peak: plain %.2f MB, checkpointed %.2f MB, guaranteed saving %.2f MB\n", plain / 1e6,
              ckpt / 1e6, saving / 1e6);
  RecordProperty("plain_peak_bytes", std::to_string(plain));
  RecordProperty("checkpointed_peak_bytes", std::to_string(ckpt));
  EXPECT_LE(ckpt, plain - saving) << "plain " << plain << " checkpointed " << ckpt;
}

// On CUDA (skipped without a device; scripts/gpu_check.sh runs it): the CUDA
// generator's state is restored for the recompute (LoRA dropout on the GPU)
// and put back after it, under the trainer's bf16 autocast. Not bit for bit:
// the attention backward kernels may accumulate in a different order from
// run to run, so within 2e-2 of the largest gradient element (bf16 rounding
// carried through 4 layers; other dropout masks move the gradients by tens
// of percent). The RNG draws after the step are exact.
TEST(ActivationCheckpointCudaTest, LoraDropoutUnderBf16AutocastMatchesPlain) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  ModelConfig c = FourLayerConfig();
  c.vocab_size = 512;
  c.hidden_size = 256;
  c.intermediate_size = 688;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 4;
  c.head_dim = 32;
  LlamaForCausalLM model = LoraModel(c, /*dropout=*/0.1);
  model->to(torch::kCUDA);
  model->train();
  Batch batch = MakeBatch(2, 16, c.vocab_size, /*packed=*/true);
  batch.ids = batch.ids.to(torch::kCUDA);
  batch.targets = batch.targets.to(torch::kCUDA);
  batch.positions = batch.positions.to(torch::kCUDA);
  StepOptions bf16;
  bf16.autocast = at::kCUDA;
  auto [plain, ckpt] = PlainAndCheckpointed(model, batch, bf16);
  EXPECT_TRUE(torch::equal(plain.next_draw, ckpt.next_draw));
  EXPECT_LE((plain.loss - ckpt.loss).abs().item<double>(), 1e-5 * plain.loss.abs().item<double>());
  for (const auto& [name, g] : plain.grads) {
    if (!g.defined()) continue;
    const double scale = g.abs().max().item<double>();
    const double diff = (g - ckpt.grads.at(name)).abs().max().item<double>();
    EXPECT_LE(diff, 2e-2 * scale) << name << ": max |diff| " << diff << ", max |grad| " << scale;
  }
}

}  // namespace
}  // namespace distill::worker
