// LlamaForCausalLM against transformers itself: tests/reference/hf_models.py
// builds tiny random models with transformers (plain RoPE, linear, dynamic,
// yarn and llama3 scaling, Mistral and Qwen2/Qwen3 sliding windows, each in
// the 4.x and the 5.x config.json style) and saves its logits, loss and
// gradients. We load each model, compare, and save it back for transformers
// to load (tests/reference/check_hf_load.py). And packed rows against
// transformers' examples run alone (tests/reference/hf_packed.py).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "tests/test_util/reference_util.h"
#include "tests/test_util/test_util.h"
#include "worker/data/sequence_data.h"
#include "worker/model/hf_io.h"
#include "worker/model/llama.h"
#include "worker/model/safetensors.h"

namespace distill::worker {
namespace {
using distill::testing::Golden;
using distill::testing::RelativeError;

// Note [HF tolerance]: both sides run float32 on the same weights and differ
// only in summation order (matmul blocking, attention kernels), ~1e-7
// relative per operation. We compare the Frobenius norm of the difference
// over the Frobenius norm of transformers' tensor (the whole tensor, all
// batch rows and positions): <= 1e-5 for logits, loss and every gradient. A
// wrong RoPE frequency, attention factor or window position moves the logits
// by 1e-2 or more (hf_models.py checks that each feature changes them).
constexpr double kRelTol = 1e-5;

// The cases of hf_models.py, each also as NAME_v4 (transformers 4.x config).
const char* const kCases[] = {
    "llama_plain",
    "llama_linear",
    "llama_dynamic",
    "llama_yarn",
    "llama_yarn_mscale",
    "llama3",
    "llama_tied_bias",
    "qwen2",
    "qwen3",
    "mistral_window",
    "qwen2_window",
    "qwen3_window",
    "qwen3_layer_types",
};

std::string CaseDir(const std::string& name) {
  return distill::testing::ReferenceDir() + "/hf_models/" + name;
}

std::vector<std::string> AllCases() {
  std::vector<std::string> names;
  for (const char* name : kCases) {
    names.push_back(name);
    names.push_back(std::string(name) + "_v4");
  }
  return names;
}

class LlamaHfTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LlamaHfTest, LogitsLossAndGradientsMatchTransformers) {
  const std::string dir = CaseDir(GetParam());
  auto model = LoadHfModel(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  auto golden = SafetensorsFile::Open(dir + "/golden.safetensors");
  ASSERT_TRUE(golden.ok()) << golden.status();
  torch::Tensor ids = Golden(**golden, "input_ids");
  ASSERT_TRUE(ids.defined());

  torch::Tensor logits = (*model)->forward(ids);
  EXPECT_LE(RelativeError(logits, Golden(**golden, "logits")), kRelTol) << "logits";
  // transformers' loss with labels = input_ids: position t predicts t + 1.
  const int64_t t = ids.size(1);
  torch::Tensor loss = CausalLmLoss(logits.narrow(1, 0, t - 1), ids.narrow(1, 1, t - 1));
  EXPECT_LE(RelativeError(loss, Golden(**golden, "loss").reshape({})), kRelTol) << "loss";

  loss.backward();
  int64_t checked = 0;
  for (const auto& item : (*model)->named_parameters()) {
    ASSERT_TRUE(item.value().grad().defined()) << item.key();
    EXPECT_LE(RelativeError(item.value().grad(), Golden(**golden, "grad." + item.key())), kRelTol)
        << "grad." << item.key();
    ++checked;
  }
  int64_t expected = 0;
  for (const std::string& n : (*golden)->names()) expected += n.rfind("grad.", 0) == 0 ? 1 : 0;
  EXPECT_EQ(checked, expected);
}

INSTANTIATE_TEST_SUITE_P(Transformers, LlamaHfTest, ::testing::ValuesIn(AllCases()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// The other direction: what we save, transformers loads (from_pretrained) to
// the same model: our logits, and the config it reads means what the
// reference's does. One Python run for all cases.
TEST(LlamaHfSaveTest, TransformersLoadsSavedModelsWithOurLogits) {
  const char* python = std::getenv("DISTILL_PYTHON");
  const char* source = std::getenv("DISTILL_SOURCE_DIR");
  ASSERT_TRUE(python != nullptr && source != nullptr)
      << "DISTILL_PYTHON and DISTILL_SOURCE_DIR must be set (tests/with_test_env.sh)";
  const std::string tmp = distill::testing::MakeTempDir("llama_hf_save");
  std::string args;
  for (const char* name : kCases) {
    SCOPED_TRACE(name);
    auto model = LoadHfModel(CaseDir(name));
    ASSERT_TRUE(model.ok()) << model.status();
    auto golden = SafetensorsFile::Open(CaseDir(name) + "/golden.safetensors");
    ASSERT_TRUE(golden.ok()) << golden.status();
    const std::string out = tmp + "/" + name;
    ASSERT_TRUE(SaveHfModel(*model, out).ok());
    torch::Tensor ids = Golden(**golden, "input_ids");
    torch::NoGradGuard no_grad;
    torch::Tensor logits = (*model)->forward(ids);
    ASSERT_TRUE(
        WriteSafetensors(out + "/ours.safetensors", {{"input_ids", ids}, {"logits", logits}}).ok());
    args += " '" + out + "' '" + CaseDir(name) + "'";
  }
  const std::string log = tmp + "/check.log";
  const std::string command = std::string("'") + python + "' '" + source +
                              "/tests/reference/check_hf_load.py'" + args + " > '" + log + "' 2>&1";
  const int status = std::system(command.c_str());
  EXPECT_EQ(status, 0) << command << "\n" << distill::testing::ReadFile(log);
}

// ---------------------------------------------------------------------------
// Packed rows (Note [Packed rows] in worker/data/sequence_data.h, Note
// [Packed attention] in llama.cc): tests/reference/hf_packed.py packs five
// examples of different lengths into two rows of 32 slots with padding, for a
// tiny Llama, a Qwen3 (q/k norm) and a Qwen3 with a 4-slot sliding window on
// layers 1 and 2, and saves transformers' logits for each example run alone.

// Note [Packed tolerance]: packed and alone, our model runs the same float32
// operations on the same values; only the shapes differ (T = 32 slots against
// an example's n - 1), and with them matmul blocking and the attention
// kernel's summation order. Masked keys add exact zeros. Measured here:
// max |diff| <= 9e-7 of the largest logit, <= 1.7e-6 of the largest entry of
// each gradient (a few float32 ulps after 3 layers and their backward). 1e-5
// of the largest value leaves room for other CPUs' kernels; attention across
// an example boundary moves the logits by more than 1e-2 (hf_packed.py checks
// that the mask matters; with the segments dropped these tests fail).
constexpr double kPackedTol = 1e-5;

struct PackedExample {
  torch::Tensor tokens;     // [1, n]
  torch::Tensor hf_logits;  // [1, n - 1, V]: transformers, the example alone
  int64_t row = 0, start = 0;
  int64_t slots() const { return tokens.size(1) - 1; }
};

struct PackedCase {
  LlamaForCausalLM model{nullptr};
  torch::Tensor ids, targets, positions;  // [B, T]
  torch::Tensor hf_logits;                // [B, T, V]: transformers' packed forward
  std::vector<PackedExample> examples;
};

void LoadPacked(const std::string& name, PackedCase* c) {
  const std::string dir = distill::testing::ReferenceDir() + "/hf_packed/" + name;
  auto model = LoadHfModel(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  c->model = *std::move(model);
  auto golden = SafetensorsFile::Open(dir + "/golden.safetensors");
  ASSERT_TRUE(golden.ok()) << golden.status();
  const SafetensorsFile& g = **golden;
  c->ids = Golden(g, "packed_ids");
  c->targets = Golden(g, "packed_targets");
  c->positions = Golden(g, "packed_positions");
  c->hf_logits = Golden(g, "packed_logits");
  const std::vector<std::string>& names = g.names();
  for (int e = 0;; ++e) {
    const std::string key = "example." + std::to_string(e);
    if (std::find(names.begin(), names.end(), key) == names.end()) break;
    PackedExample ex;
    ex.tokens = Golden(g, key);
    ex.hf_logits = Golden(g, "logits." + std::to_string(e));
    ex.row = Golden(g, "example_row." + std::to_string(e)).item<int64_t>();
    ex.start = Golden(g, "example_start." + std::to_string(e)).item<int64_t>();
    c->examples.push_back(ex);
  }
  ASSERT_EQ(c->examples.size(), 5u);
}

// Example ex's slots of packed rows [B, T, ...].
torch::Tensor Slots(const torch::Tensor& rows, const PackedExample& ex) {
  return rows.narrow(0, ex.row, 1).narrow(1, ex.start, ex.slots());
}

// max |a - b| / max |b|.
double MaxRelative(const torch::Tensor& a, const torch::Tensor& b) {
  torch::Tensor x = a.detach().to(torch::kDouble), y = b.detach().to(torch::kDouble);
  return (x - y).abs().max().item<double>() / y.abs().max().item<double>();
}

class LlamaPackedTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LlamaPackedTest, PackedRowsMatchTransformersExampleByExample) {
  PackedCase c;
  ASSERT_NO_FATAL_FAILURE(LoadPacked(GetParam(), &c));
  torch::NoGradGuard no_grad;
  torch::Tensor logits = c.model->forward(c.ids, c.positions);
  for (size_t e = 0; e < c.examples.size(); ++e) {
    const PackedExample& ex = c.examples[e];
    EXPECT_LE(RelativeError(Slots(logits, ex), ex.hf_logits), kRelTol) << "example " << e;
  }
  // Padding slots too: transformers also sees them as a segment of their own.
  EXPECT_LE(RelativeError(logits, c.hf_logits), kRelTol);
}

TEST_P(LlamaPackedTest, PackedRowsMatchEachExampleAloneWithGradients) {
  PackedCase c;
  ASSERT_NO_FATAL_FAILURE(LoadPacked(GetParam(), &c));
  LlamaForCausalLM& model = c.model;
  // The packed loss averages every counted target of the batch ...
  torch::Tensor packed_logits = model->forward(c.ids, c.positions);
  CausalLmLoss(packed_logits, c.targets).backward();
  std::map<std::string, torch::Tensor> packed_grads;
  for (const auto& item : model->named_parameters()) {
    packed_grads[item.key()] = item.value().grad().clone();
    item.value().mutable_grad().zero_();
  }
  // ... so it is the sum of each example's mean loss weighted by its share.
  int64_t counted = 0;
  for (const PackedExample& ex : c.examples) counted += ex.slots();
  torch::Tensor total = torch::zeros({});
  for (size_t e = 0; e < c.examples.size(); ++e) {
    const PackedExample& ex = c.examples[e];
    torch::Tensor alone = model->forward(ex.tokens.narrow(1, 0, ex.slots()));
    EXPECT_LE(MaxRelative(Slots(packed_logits, ex), alone), kPackedTol) << "example " << e;
    torch::Tensor targets = ex.tokens.narrow(1, 1, ex.slots());
    total = total + CausalLmLoss(alone, targets) * (static_cast<double>(ex.slots()) / counted);
  }
  EXPECT_LE(MaxRelative(CausalLmLoss(packed_logits, c.targets).reshape({1}), total.reshape({1})),
            kPackedTol);
  total.backward();
  for (const auto& item : model->named_parameters()) {
    EXPECT_LE(MaxRelative(packed_grads[item.key()], item.value().grad()), kPackedTol)
        << "grad." << item.key();
  }
}

// Positions 0..T-1 on every row are one example per row: the unpacked path,
// bit for bit, through forward() and through the pieces a pipeline runs.
TEST_P(LlamaPackedTest, PlainPositionsAreBitIdenticalToNone) {
  PackedCase c;
  ASSERT_NO_FATAL_FAILURE(LoadPacked(GetParam(), &c));
  torch::NoGradGuard no_grad;
  const int64_t t = c.ids.size(1);
  torch::Tensor plain = torch::arange(t, torch::kLong).expand({c.ids.size(0), t});
  EXPECT_TRUE(torch::equal(c.model->forward(c.ids, plain), c.model->forward(c.ids)));
  EXPECT_FALSE(torch::equal(c.model->forward(c.ids, c.positions), c.model->forward(c.ids)));
}

// Embed, RunLayers over two blocks, FinalNorm and Logits (a teacher split in
// stages) give forward()'s packed logits, bit for bit.
TEST_P(LlamaPackedTest, LayerBlocksWithPositionsComposeToForward) {
  PackedCase c;
  ASSERT_NO_FATAL_FAILURE(LoadPacked(GetParam(), &c));
  torch::NoGradGuard no_grad;
  LlamaForCausalLM& m = c.model;
  const int64_t layers = m->config().num_hidden_layers;
  torch::Tensor h = m->RunLayers(m->Embed(c.ids), 0, 1, {}, nullptr, c.positions);
  h = m->RunLayers(h, 1, layers, {}, nullptr, c.positions);
  EXPECT_TRUE(torch::equal(m->Logits(m->FinalNorm(h)), m->forward(c.ids, c.positions)));
}

TEST_P(LlamaPackedTest, PositionsOfAnotherShapeThrow) {
  PackedCase c;
  ASSERT_NO_FATAL_FAILURE(LoadPacked(GetParam(), &c));
  torch::NoGradGuard no_grad;
  EXPECT_THROW(c.model->forward(c.ids, c.positions.narrow(1, 0, 8)), c10::Error);
  EXPECT_THROW(c.model->forward(c.ids, c.positions.to(torch::kInt)), c10::Error);
}

INSTANTIATE_TEST_SUITE_P(Transformers, LlamaPackedTest,
                         ::testing::Values("llama", "qwen3", "qwen3_window"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// Targets equal to kIgnoreTarget count in no average: the loss is the mean
// over the others, computed here from log_softmax by hand.
TEST(CausalLmLossTest, IgnoredTargetsCountInNoAverage) {
  torch::manual_seed(3);
  torch::Tensor logits = torch::randn({2, 5, 7});
  torch::Tensor targets = torch::randint(0, 7, {2, 5}, torch::kLong);
  targets[0][1] = kIgnoreTarget;
  targets[1][0] = kIgnoreTarget;
  targets[1][4] = kIgnoreTarget;
  torch::Tensor logp = torch::log_softmax(logits.to(torch::kDouble), -1);
  double sum = 0;
  int counted = 0;
  for (int b = 0; b < 2; ++b) {
    for (int t = 0; t < 5; ++t) {
      const int64_t y = targets[b][t].item<int64_t>();
      if (y == kIgnoreTarget) continue;
      sum -= logp[b][t][y].item<double>();
      ++counted;
    }
  }
  ASSERT_EQ(counted, 7);
  EXPECT_NEAR(CausalLmLoss(logits, targets).item<double>(), sum / counted, 1e-6);
  // With every target counted: torch's mean cross-entropy, bit for bit.
  torch::Tensor all = torch::randint(0, 7, {2, 5}, torch::kLong);
  EXPECT_TRUE(torch::equal(
      CausalLmLoss(logits, all),
      torch::nn::functional::cross_entropy(logits.reshape({10, 7}), all.reshape({10}))));
}

TEST(CausalLmLossTest, NoCountedTargetGivesZeroNotNan) {
  torch::Tensor logits = torch::randn({1, 4, 6}, torch::requires_grad());
  torch::Tensor targets = torch::full({1, 4}, kIgnoreTarget, torch::kLong);
  torch::Tensor loss = CausalLmLoss(logits, targets);
  EXPECT_EQ(loss.item<double>(), 0.0);
  loss.backward();
  EXPECT_TRUE(torch::equal(logits.grad(), torch::zeros_like(logits)));
}

}  // namespace
}  // namespace distill::worker
