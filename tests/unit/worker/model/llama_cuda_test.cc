// CUDA checks of the model; skipped on machines without a GPU (CI here), run
// by scripts/gpu_check.sh on a GPU machine.
#include <gtest/gtest.h>

#include "worker/model/hf_io.h"
#include "worker/model/llama.h"
#include "worker/train/autocast.h"

namespace distill::worker {
namespace {

ModelConfig SmallConfig() {
  ModelConfig c;
  c.vocab_size = 512;
  c.hidden_size = 256;
  c.intermediate_size = 688;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 4;
  c.head_dim = 32;
  return c;
}

TEST(LlamaCudaTest, Fp32OnCudaMatchesCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  LlamaForCausalLM model = InitModel(SmallConfig(), 5);
  torch::Tensor ids = torch::randint(0, 512, {2, 64}, torch::kLong);
  torch::Tensor cpu = model->forward(ids).detach();
  model->to(torch::kCUDA);
  torch::Tensor gpu = model->forward(ids.to(torch::kCUDA)).detach().cpu();
  // TF32 may be on for matmuls on Hopper: allow 1e-3.
  EXPECT_LE((gpu - cpu).abs().max().item<double>(), 1e-3 * std::max(1.0, cpu.abs().max().item<double>()));
}

TEST(LlamaCudaTest, Bf16AutocastIsWithin1e2OfFp32) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  LlamaForCausalLM model = InitModel(SmallConfig(), 5);
  model->to(torch::kCUDA);
  torch::Tensor ids = torch::randint(0, 512, {2, 64}, torch::kLong).to(torch::kCUDA);
  torch::Tensor fp32 = model->forward(ids).detach();
  torch::Tensor bf16;
  {
    AutocastGuard autocast(true);
    bf16 = model->forward(ids).detach();
  }
  EXPECT_EQ(bf16.scalar_type(), torch::kFloat);  // logits come back in fp32
  const double scale = std::max(1.0, fp32.abs().max().item<double>());
  EXPECT_LE((bf16 - fp32).abs().max().item<double>(), 1e-2 * scale);
  // Master weights stay fp32.
  for (const auto& p : model->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat);
}

}  // namespace
}  // namespace distill::worker
