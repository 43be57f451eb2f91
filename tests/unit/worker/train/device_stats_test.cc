// Note [Model FLOPs]: the training FLOPs per token, checked against the
// parameter count of a real model built from the same config (the 6 N term
// is the weights a token passes: all but the embedding, the lm_head counted
// once even when tied) and the attention term written out; the device table.
#include "worker/train/device_stats.h"

#include <gtest/gtest.h>

#include "worker/model/llama.h"

namespace distill::worker {
namespace {

ModelConfig Config(bool tied) {
  ModelConfig c;
  c.vocab_size = 300;
  c.hidden_size = 48;
  c.intermediate_size = 80;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 6;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.tie_word_embeddings = tied;
  return c;
}

// The weights every token multiplies with: the model's parameters less the
// norms and the embedding table (plus the lm_head's when it is tied to it).
double MatmulWeights(const ModelConfig& c) {
  LlamaForCausalLM model(c);
  double n = 0;
  for (const auto& p : model->named_parameters()) {
    if (p.key().find("norm") != std::string::npos) continue;
    n += static_cast<double>(p.value().numel());
  }
  const double table = static_cast<double>(c.vocab_size * c.hidden_size);
  return c.tie_word_embeddings ? n : n - table;
}

TEST(DeviceStatsTest, FlopsPerTokenAreSixTimesTheMatmulWeightsPlusAttention) {
  for (bool tied : {false, true}) {
    const ModelConfig c = Config(tied);
    const int64_t seq = 128;
    const double attention = 12.0 * 3 * (6 * 8) * seq;
    EXPECT_DOUBLE_EQ(TrainingFlopsPerToken(c, seq), 6 * MatmulWeights(c) + attention) << "tied " << tied;
  }
}

TEST(DeviceStatsTest, PeaksOfKnownDevicesAndNoneForOthers) {
  EXPECT_EQ(CudaPeakTflops("NVIDIA H200", true), 989);
  EXPECT_EQ(CudaPeakTflops("NVIDIA H100 80GB HBM3", true), 989);
  EXPECT_EQ(CudaPeakTflops("NVIDIA H100 PCIe", true), 756);
  EXPECT_EQ(CudaPeakTflops("NVIDIA A100-SXM4-80GB", false), 156);
  EXPECT_EQ(CudaPeakTflops("Some Other GPU", true), 0);
  EXPECT_EQ(CudaPeakTflops("", true), 0);
}

}  // namespace
}  // namespace distill::worker
