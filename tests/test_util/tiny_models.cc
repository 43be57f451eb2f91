#include "tests/test_util/tiny_models.h"

#include <gtest/gtest.h>

#include <utility>

#include "worker/model/hf_io.h"

namespace distill::testing {

const char kTinyStudentConfigJson[] =
    R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 64, "hidden_size": 32,
  "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
  "hidden_act": "silu", "tie_word_embeddings": false})";

distill::worker::ModelConfig TinyLlamaConfig() {
  distill::worker::ModelConfig c;
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 4;
  return c;
}

std::vector<uint32_t> StructuredTokens(int n, uint32_t vocab) {
  std::vector<uint32_t> ids;
  ids.reserve(static_cast<size_t>(n));
  uint32_t x = 1;
  for (int i = 0; i < n; ++i) {
    x = (x * 1103515245u + 12345u) & 0x7fffffffu;
    ids.push_back(i % 3 == 0 ? (x >> 8) % vocab : (ids.empty() ? 0 : (ids.back() + 1) % vocab));
  }
  return ids;
}

distill::worker::LlamaForCausalLM LoadModelOrFail(const std::string& dir) {
  auto model = distill::worker::LoadHfModel(dir);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? *std::move(model) : distill::worker::LlamaForCausalLM(nullptr);
}

void SaveRandomModel(const distill::worker::ModelConfig& config, uint64_t seed, const std::string& dir) {
  distill::worker::LlamaForCausalLM model = distill::worker::InitModel(config, seed);
  const absl::Status st = distill::worker::SaveHfModel(model, dir);
  EXPECT_TRUE(st.ok()) << st;
}

}  // namespace distill::testing
