#include "worker/distill/colocated_teacher.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "tests/test_util/reference_util.h"
#include "tests/test_util/test_util.h"
#include "worker/model/hf_io.h"
#include "worker/model/safetensors.h"

namespace distill::worker {
namespace {
namespace fs = std::filesystem;
using distill::testing::Golden;
using distill::testing::MakeTempDir;
using distill::testing::ReferenceDir;
using distill::testing::RelativeError;
using distill::testing::WriteFile;

// tests/reference/make_distill_reference.py: a student of vocabulary 50 and a
// teacher of 56 rows (6 padding rows), width 48, 4 layers, tied embeddings.
std::string TeacherDir() { return ReferenceDir() + "/distill/teacher"; }
std::string StudentDir() { return ReferenceDir() + "/distill/student"; }

ModelConfig StudentConfig() {
  auto c = LoadModelConfig(StudentDir() + "/config.json");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

torch::Tensor Inputs() {
  auto golden = SafetensorsFile::Open(ReferenceDir() + "/distill/golden.safetensors");
  EXPECT_TRUE(golden.ok()) << golden.status();
  return Golden(**golden, "input_ids");
}

void ExpectPrefix(const absl::Status& st, const std::string& prefix) {
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_EQ(std::string(st.message()).rfind(prefix, 0), 0u) << st.message();
}

TEST(TeacherTest, PaddedVocabularyIsCutToTheStudentsInEveryTransport) {
  auto teacher = ColocatedTeacher::Load(TeacherDir(), StudentConfig(), StudentDir(), torch::kCPU);
  ASSERT_TRUE(teacher.ok()) << teacher.status();
  ColocatedTeacher& t = **teacher;
  EXPECT_EQ(t.vocab(), 50);
  EXPECT_TRUE(t.padded());
  for (const auto& p : t.model()->parameters()) EXPECT_FALSE(p.requires_grad());

  const torch::Tensor inputs = Inputs();  // [2, 7]
  torch::Tensor full;
  {
    torch::NoGradGuard no_grad;
    full = t.model()->forward(inputs).reshape({14, 56});
  }
  TeacherRunConfig dense;
  dense.capture_layers = {1, 3};
  auto d = t.Run(inputs, dense);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->output.logits.sizes(), (std::vector<int64_t>{14, 50}));
  EXPECT_TRUE(torch::allclose(d->output.logits, full.narrow(1, 0, 50), 1e-5, 1e-6));
  ASSERT_EQ(d->features.size(), 2u);
  EXPECT_EQ(d->features.at(3).sizes(), (std::vector<int64_t>{14, 48}));
  EXPECT_GT(d->seconds, 0.0);
  EXPECT_EQ(d->bytes, (14 * 50 + 2 * 14 * 48) * 4);

  TeacherRunConfig hidden;
  hidden.transport = distill::v1::HIDDEN;
  auto h = t.Run(inputs, hidden);
  ASSERT_TRUE(h.ok()) << h.status();
  ASSERT_EQ(h->output.lm_head.sizes(), (std::vector<int64_t>{50, 48}));
  EXPECT_FALSE(h->output.lm_head.requires_grad());
  EXPECT_TRUE(torch::allclose(torch::matmul(h->output.hidden, h->output.lm_head.t()),
                              d->output.logits, 1e-5, 1e-5));

  TeacherRunConfig topk;
  topk.transport = distill::v1::TOPK;
  topk.top_k = 8;
  topk.temperature = 2.0;
  topk.chunk_tokens = 5;  // 14 rows in chunks of 5, 5, 4
  auto k = t.Run(inputs, topk);
  ASSERT_TRUE(k.ok()) << k.status();
  ASSERT_EQ(k->output.topk_ids.sizes(), (std::vector<int64_t>{14, 8}));
  auto expected = d->output.logits.topk(8, 1);
  EXPECT_TRUE(torch::allclose(std::get<0>(expected), k->output.topk_logits));
  EXPECT_TRUE(
      torch::allclose((d->output.logits / 2.0).logsumexp(1), k->output.topk_lse, 1e-5, 1e-5));
}

// Through the Teacher interface (teacher.h): Next computes the run
// configuration given to Load; no lookahead, nothing to stop.
TEST(TeacherTest, NextThroughTheInterfaceRunsTheLoadsConfiguration) {
  TeacherRunConfig topk;
  topk.transport = distill::v1::TOPK;
  topk.top_k = 4;
  topk.capture_layers = {2};
  auto loaded =
      ColocatedTeacher::Load(TeacherDir(), StudentConfig(), StudentDir(), torch::kCPU, topk);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ColocatedTeacher& colocated = **loaded;
  Teacher& teacher = colocated;
  EXPECT_EQ(teacher.Lookahead(), 0);
  EXPECT_EQ(teacher.Placement(), "");
  EXPECT_EQ(teacher.vocab(), 50);
  EXPECT_EQ(teacher.config().vocab_size, 56);
  const torch::Tensor inputs = Inputs();
  EXPECT_TRUE(teacher.Enqueue({inputs, {}, {}, {}, {}}).ok());
  auto next = teacher.Next({inputs, {}, {}, {}, {}});
  ASSERT_TRUE(next.ok()) << next.status();
  auto run = colocated.Run(inputs, topk);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(next->output.transport, distill::v1::TOPK);
  ASSERT_EQ(next->output.topk_ids.sizes(), (std::vector<int64_t>{14, 4}));
  EXPECT_TRUE(torch::equal(next->output.topk_ids, run->output.topk_ids));
  EXPECT_TRUE(torch::allclose(next->output.topk_logits, run->output.topk_logits));
  ASSERT_EQ(next->features.size(), 1u);
  EXPECT_TRUE(torch::allclose(next->features.at(2), run->features.at(2)));
  EXPECT_TRUE(teacher.Stop().ok());
}

TEST(TeacherTest, SmallerTeacherVocabularyNamesTeacherModel) {
  ModelConfig student = StudentConfig();
  student.vocab_size = 60;
  auto t = ColocatedTeacher::Load(TeacherDir(), student, "", torch::kCPU);
  ExpectPrefix(t.status(), "teacher.model: ");
  EXPECT_NE(t.status().message().find("smaller than the student's 60"), std::string::npos)
      << t.status();
}

TEST(TeacherTest, ExtraRowsUsedByTheTokenizerAreNotPadding) {
  const std::string dir = MakeTempDir("teacher_test");
  fs::copy(TeacherDir(), dir + "/teacher");
  // Qwen3's tokenizer uses ~151k ids, far beyond the student's 50. Its
  // tokenizer.json comes from the npm tarball, extracted by the fixture
  // tests/reference/hf_tokenizers.py.
  const std::string qwen = ReferenceDir() + "/hf_tokenizers/qwen3/tokenizer.json";
  ASSERT_TRUE(fs::exists(qwen)) << qwen
                                << " is missing (written by tests/reference/hf_tokenizers.py)";
  fs::copy(qwen, dir + "/teacher/tokenizer.json");
  auto t = ColocatedTeacher::Load(dir + "/teacher", StudentConfig(), "", torch::kCPU);
  ExpectPrefix(t.status(), "teacher.model: ");
  EXPECT_NE(t.status().message().find("not padding"), std::string::npos) << t.status();
}

TEST(TeacherTest, TokenizersMustBeIdentical) {
  const std::string dir = MakeTempDir("teacher_test");
  fs::copy(TeacherDir(), dir + "/teacher");
  fs::create_directories(dir + "/student");
  ModelConfig student = StudentConfig();
  student.vocab_size = 56;  // no padding: only the tokenizer files are compared
  WriteFile(dir + "/teacher/tokenizer.json", "{\"version\": \"1.0\", \"a\": 1}");
  WriteFile(dir + "/student/tokenizer.json", "{\"version\": \"1.0\", \"a\": 2}");
  auto t = ColocatedTeacher::Load(dir + "/teacher", student, dir + "/student", torch::kCPU);
  ExpectPrefix(t.status(), "student.model: ");
  WriteFile(dir + "/student/tokenizer.json", "{\"version\": \"1.0\", \"a\": 1}");
  t = ColocatedTeacher::Load(dir + "/teacher", student, dir + "/student", torch::kCPU);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE((*t)->CheckTokenizer(dir + "/student/missing.json", "data.tokenizer")
                  .ok());  // nothing to compare
  WriteFile(dir + "/other.json", "{}");
  ExpectPrefix((*t)->CheckTokenizer(dir + "/other.json", "data.tokenizer"), "data.tokenizer: ");
}

TEST(TeacherTest, BadRunConfigsAreInvalidArgument) {
  auto teacher = ColocatedTeacher::Load(TeacherDir(), StudentConfig(), "", torch::kCPU);
  ASSERT_TRUE(teacher.ok()) << teacher.status();
  TeacherRunConfig layers;
  layers.capture_layers = {4};
  ExpectPrefix((*teacher)->Run(Inputs(), layers).status(), "teacher.model: ");
  TeacherRunConfig topk;
  topk.transport = distill::v1::TOPK;
  topk.top_k = 51;
  ExpectPrefix((*teacher)->Run(Inputs(), topk).status(), "distill.top_k: ");
}

// The captured features are the teacher's decoder-layer outputs, against
// transformers' output_hidden_states of the same model (hf_models.py):
// hidden_states[i + 1] is layer i's output, except the last entry, which is
// the last layer's output after the final norm (the HIDDEN transport's
// hidden state). Note [HF tolerance] of llama_hf_test: 1e-5 in norm.
TEST(TeacherTest, CapturedFeaturesAreTransformersHiddenStates) {
  for (const std::string name : {"llama_plain", "qwen3"}) {
    SCOPED_TRACE(name);
    const std::string dir = ReferenceDir() + "/hf_models/" + name;
    auto golden = SafetensorsFile::Open(dir + "/golden.safetensors");
    ASSERT_TRUE(golden.ok()) << golden.status();
    auto config = LoadModelConfig(dir + "/config.json");
    ASSERT_TRUE(config.ok()) << config.status();
    const int64_t layers = config->num_hidden_layers;
    ASSERT_GE(layers, 2);
    auto teacher = ColocatedTeacher::Load(dir, *config, "", torch::kCPU);
    ASSERT_TRUE(teacher.ok()) << teacher.status();
    const torch::Tensor ids = Golden(**golden, "input_ids");
    const int64_t n = ids.numel();
    auto want = [&](int64_t i) { return Golden(**golden, "hidden_states." + std::to_string(i)).reshape({n, -1}); };

    TeacherRunConfig run;
    run.transport = distill::v1::HIDDEN;
    for (int64_t l = 0; l < layers; ++l) run.capture_layers.push_back(l);
    auto batch = (*teacher)->Run(ids, run);
    ASSERT_TRUE(batch.ok()) << batch.status();
    ASSERT_EQ(batch->features.size(), static_cast<size_t>(layers));
    for (int64_t l = 0; l + 1 < layers; ++l) {
      EXPECT_LE(RelativeError(batch->features.at(l), want(l + 1)), 1e-5) << "layer " << l;
    }
    torch::Tensor last;
    {
      torch::NoGradGuard no_grad;
      last = (*teacher)->model()->FinalNorm(batch->features.at(layers - 1));
    }
    EXPECT_LE(RelativeError(last, want(layers)), 1e-5) << "last layer, final norm applied";
    EXPECT_LE(RelativeError(batch->output.hidden, want(layers)), 1e-5) << "the HIDDEN transport's state";
  }
}

}  // namespace
}  // namespace distill::worker
