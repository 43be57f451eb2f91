// LlamaForCausalLM against transformers itself: tests/reference/hf_models.py
// builds tiny random models with transformers (plain RoPE, linear, dynamic,
// yarn and llama3 scaling, Mistral and Qwen2/Qwen3 sliding windows, each in
// the 4.x and the 5.x config.json style) and saves its logits, loss and
// gradients. We load each model, compare, and save it back for transformers
// to load (tests/reference/check_hf_load.py).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "tests/test_util/reference_util.h"
#include "tests/test_util/test_util.h"
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

}  // namespace
}  // namespace distill::worker
