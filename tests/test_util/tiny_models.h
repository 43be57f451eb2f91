// Tiny models and data for the worker tests: model configs small enough to
// train in a second on a CPU, a token stream with structure to learn, and
// model loading that fails the test instead of returning a status.
#ifndef DISTILL_TESTS_TEST_UTIL_TINY_MODELS_H_
#define DISTILL_TESTS_TEST_UTIL_TINY_MODELS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "worker/model/config.h"
#include "worker/model/llama.h"

namespace distill::testing {

// config.json of the tiny student the trainer and distillation tests train:
// vocabulary 64, width 32, 2 layers, 4 heads (2 KV), untied.
extern const char kTinyStudentConfigJson[];

// A 2-layer Llama of width 16 (4 heads of 4, 2 KV heads), vocabulary 40.
distill::worker::ModelConfig TinyLlamaConfig();

// `n` token ids below `vocab` (<= 64): every third a pseudo-random draw, the
// others the previous id + 1, so a tiny model's loss falls fast.
std::vector<uint32_t> StructuredTokens(int n, uint32_t vocab = 64);

// LoadHfModel(dir) on the CPU; fails the test and returns a null model when
// it cannot.
distill::worker::LlamaForCausalLM LoadModelOrFail(const std::string& dir);

// A model of `config` initialised with `seed`, saved as a Hugging Face
// directory `dir` (config.json + model.safetensors); fails the test if not.
void SaveRandomModel(const distill::worker::ModelConfig& config, uint64_t seed, const std::string& dir);

}  // namespace distill::testing

#endif  // DISTILL_TESTS_TEST_UTIL_TINY_MODELS_H_
