// KdLoss and MakeTopK against TRL's GKD loss and torch.nn.functional
// (tests/reference/hf_trl.py) and against golden numbers of our own
// definitions (tests/reference/make_kd_reference.py: float64, whole [N, V]
// tensors, autograd; covers top-k with a tail bucket, which no library has),
// plus the identities between transports and chunkings, the error cases, and
// the peak-memory bound of Note [Chunked loss].
#include "worker/distill/kd_loss.h"

#include <c10/core/CPUAllocator.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/test_util/counting_allocator.h"
#include "tests/test_util/reference_util.h"
#include "tests/test_util/test_util.h"
#include "worker/model/safetensors.h"

namespace distill::worker {
namespace {

namespace v1 = distill::v1;
using distill::testing::Golden;

// Note [KD tolerance]: our float32 loss and gradients against the float64
// reference on the same float32 inputs: max|a - b| <= 1e-5 * max|b| per
// tensor. Logits are O(1..10) and float32 log-softmax rows carry absolute
// errors ~1e-6, so a loss that is itself small (a close teacher at T = 4
// without T^2) gets an absolute floor of 1e-6, gradients (O(0.01..1), divided
// by N = 13) one of 1e-7. A missing 1/T, T^2, tail bucket or mean is off by
// far more. Identities between two float32 computations of the same math
// (chunkings, transports) are held to kSameMathTol relative.
constexpr double kRelTol = 1e-5;
constexpr double kLossAbsFloor = 1e-6;
constexpr double kGradAbsFloor = 1e-7;
constexpr double kSameMathTol = 2e-6;

struct Reference {
  std::shared_ptr<SafetensorsFile> file;
  nlohmann::json cases;
  torch::Tensor Input(const std::string& name) const { return Golden(*file, "input." + name); }
  torch::Tensor Expected(const std::string& name) const { return Golden(*file, "golden." + name); }
};

// DIR/FILE and DIR/cases.json under the reference dir.
Reference* LoadReference(const std::string& subdir, const std::string& file_name) {
  auto* r = new Reference;
  const std::string dir = distill::testing::ReferenceDir() + "/" + subdir;
  auto file = SafetensorsFile::Open(dir + "/" + file_name);
  EXPECT_TRUE(file.ok()) << file.status();
  if (file.ok()) r->file = *std::move(file);
  r->cases = nlohmann::json::parse(distill::testing::ReadFile(dir + "/cases.json"), nullptr, false);
  EXPECT_TRUE(r->cases.is_object()) << dir << "/cases.json";
  return r;
}

// make_kd_reference.py: float64 plain-torch goldens of our own definitions.
const Reference& Ref() {
  static const Reference* ref = LoadReference("kd", "kd.safetensors");
  return *ref;
}

// hf_trl.py: TRL's GKDTrainer.generalized_jsd_loss and a torch.nn.functional
// formulation, evaluated in float64 on float32 inputs.
const Reference& TrlRef() {
  static const Reference* ref = LoadReference("hf_trl", "trl.safetensors");
  return *ref;
}

v1::DistillLoss LossOf(const std::string& name) {
  if (name == "reverse_kl") return v1::REVERSE_KL;
  if (name == "jsd") return v1::JSD;
  return v1::FORWARD_KL;
}

KdLossConfig ConfigOf(const nlohmann::json& c, int64_t chunk_tokens) {
  KdLossConfig config;
  config.loss = LossOf(c.at("loss").get<std::string>());
  config.temperature = c.at("temperature").get<double>();
  config.alpha = c.at("alpha").get<double>();
  config.t2_scale = c.at("t2_scale").get<bool>();
  config.beta = c.at("beta").get<double>();
  config.chunk_tokens = chunk_tokens;
  return config;
}

std::string Tag(double x) {
  std::ostringstream s;
  s << x;
  return s.str();
}

TeacherOutput TeacherOf(const Reference& ref, const nlohmann::json& c) {
  TeacherOutput t;
  const std::string transport = c.at("transport").get<std::string>();
  if (transport == "topk") {
    const std::string tag = "topk.k" + std::to_string(c.at("k").get<int64_t>()) + ".T" +
                            Tag(c.at("temperature").get<double>());
    t.transport = v1::TOPK;
    t.topk_logits = ref.Input(tag + ".values");
    t.topk_ids = ref.Input(tag + ".ids");
    t.topk_lse = ref.Input(tag + ".lse");
  } else if (transport == "hidden") {
    t.transport = v1::HIDDEN;
    t.hidden = ref.Input("t_hidden");
    t.lm_head = ref.Input("t_head");  // V' = V + 3 rows
  } else {
    t.transport = v1::DENSE;
    t.logits = ref.Input("t_logits");  // V' = V + 3 columns
  }
  return t;
}

// The loss and gradients of one call, student leaves fresh from the inputs.
struct LossRun {
  KdLossResult result;
  torch::Tensor grad_h, grad_w;
};

LossRun RunLoss(const torch::Tensor& h0, const torch::Tensor& w0, const torch::Tensor& targets,
                const TeacherOutput& teacher, const KdLossConfig& config) {
  LossRun run;
  torch::Tensor h = h0.clone().requires_grad_(true);
  torch::Tensor w = w0.clone().requires_grad_(true);
  auto r = KdLoss(h, w, targets, teacher, config);
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return run;
  run.result = *r;
  run.result.total.backward();
  run.grad_h = h.grad();
  run.grad_w = w.grad();
  return run;
}

LossRun RunCase(const Reference& ref, const nlohmann::json& c, int64_t chunk_tokens) {
  return RunLoss(ref.Input("h"), ref.Input("w"), ref.Input("targets"), TeacherOf(ref, c),
                 ConfigOf(c, chunk_tokens));
}

void ExpectMatchesReference(const Reference& ref, const nlohmann::json& c, const LossRun& run) {
  const std::string name = c.at("name").get<std::string>();
  using distill::testing::ExpectAllClose;
  ASSERT_TRUE(run.result.total.defined()) << name;
  EXPECT_EQ(run.result.total.dim(), 0) << name;
  ExpectAllClose(run.result.total, ref.Expected(name + ".loss"), kRelTol, kLossAbsFloor,
                 name + " loss");
  ExpectAllClose(torch::tensor(run.result.ce, torch::kDouble), ref.Expected(name + ".ce"), kRelTol,
                 kLossAbsFloor, name + " ce");
  ExpectAllClose(torch::tensor(run.result.kd, torch::kDouble), ref.Expected(name + ".kd"), kRelTol,
                 kLossAbsFloor, name + " kd");
  ExpectAllClose(run.grad_h, ref.Expected(name + ".grad_h"), kRelTol, kGradAbsFloor,
                 name + " grad_h");
  ExpectAllClose(run.grad_w, ref.Expected(name + ".grad_w"), kRelTol, kGradAbsFloor,
                 name + " grad_w");
}

void ExpectSame(const LossRun& a, const LossRun& b, const std::string& what) {
  using distill::testing::ExpectAllClose;
  ExpectAllClose(a.result.total, b.result.total, kSameMathTol, 1e-7, what + " loss");
  EXPECT_NEAR(a.result.ce, b.result.ce, kSameMathTol * std::max(1.0, std::abs(b.result.ce)))
      << what;
  EXPECT_NEAR(a.result.kd, b.result.kd, kSameMathTol * std::max(1.0, std::abs(b.result.kd)))
      << what;
  ExpectAllClose(a.grad_h, b.grad_h, kSameMathTol, 1e-8, what + " grad_h");
  ExpectAllClose(a.grad_w, b.grad_w, kSameMathTol, 1e-8, what + " grad_w");
}

// Runs every reference case of `transport` in the reference's chunking.
int CheckTransport(const std::string& transport) {
  const Reference& ref = Ref();
  const int64_t chunk = ref.cases.at("chunk_tokens").get<int64_t>();
  int n = 0;
  for (const auto& c : ref.cases.at("kd")) {
    if (c.at("transport").get<std::string>() != transport) continue;
    SCOPED_TRACE(c.at("name").get<std::string>());
    ExpectMatchesReference(ref, c, RunCase(ref, c, chunk));
    ++n;
  }
  return n;
}

TEST(KdLossTest, DenseMatchesReference) {
  // 5 losses (forward KL, reverse KL, JSD beta 0.1/0.5/0.9) x T in
  // {0.5, 1, 2, 4} x t2_scale on/off x alpha in {0, 0.5, 1}; padded logits.
  EXPECT_EQ(CheckTransport("dense"), 120);
}

TEST(KdLossTest, TopKMatchesReference) {
  // k = 5 (with the tail bucket) and k = V, T in {1, 2}, three losses.
  EXPECT_EQ(CheckTransport("topk"), 12);
}

TEST(KdLossTest, HiddenMatchesReference) {
  // Teacher logits formed from its hidden state and a padded lm_head.
  EXPECT_EQ(CheckTransport("hidden"), 5);
}

// Our loss against TRL and against torch.nn.functional (hf_trl.py maps our
// options onto TRL's beta / temperature; T^2 and the CE term are ours). Each
// case runs twice: on the student logits themselves (h = z, W = I, so grad_h
// is dL/dz: mm by the identity is exact) and on the hidden state and lm_head.
// DENSE cases also run through the top-k transport with k = V.
TEST(KdLossTest, MatchesTrlAndFunctional) {
  using distill::testing::ExpectAllClose;
  const Reference& ref = TrlRef();
  const int64_t v = ref.cases.at("vocab").get<int64_t>();
  const torch::Tensor z = ref.Input("z"), h = ref.Input("h"), w = ref.Input("w");
  const torch::Tensor y = ref.Input("targets");
  int n = 0;
  for (const auto& c : ref.cases.at("cases")) {
    const std::string name = c.at("name").get<std::string>();
    SCOPED_TRACE(name);
    const KdLossConfig config = ConfigOf(c, 4);
    std::vector<TeacherOutput> teachers = {TeacherOf(ref, c)};
    if (c.at("transport").get<std::string>() == "dense") {
      auto topk = MakeTopK(teachers[0].logits, v, v, config.temperature);
      ASSERT_TRUE(topk.ok()) << topk.status();
      teachers.push_back(*topk);
    }
    for (const TeacherOutput& teacher : teachers) {
      const std::string what = name + (teacher.transport == v1::TOPK ? " (top-k, k = V)" : "");
      const LossRun on_z = RunLoss(z, torch::eye(v), y, teacher, config);
      const LossRun on_h = RunLoss(h, w, y, teacher, config);
      for (const char* source : {"trl", "f"}) {
        const std::string key = std::string(source) + "." + name + ".";
        const std::string tag = what + " vs " + source;
        ExpectAllClose(on_z.result.total, ref.Expected(key + "loss"), kRelTol, kLossAbsFloor,
                       tag + " loss");
        ExpectAllClose(on_z.grad_h, ref.Expected(key + "grad_z"), kRelTol, kGradAbsFloor,
                       tag + " grad_z");
        ExpectAllClose(on_h.result.total, ref.Expected(key + "loss"), kRelTol, kLossAbsFloor,
                       tag + " loss (h, W)");
        ExpectAllClose(on_h.grad_h, ref.Expected(key + "grad_h"), kRelTol, kGradAbsFloor,
                       tag + " grad_h");
        ExpectAllClose(on_h.grad_w, ref.Expected(key + "grad_w"), kRelTol, kGradAbsFloor,
                       tag + " grad_w");
      }
    }
    ++n;
  }
  // 5 losses (TRL beta 0, 1, 0.1, 0.5, 0.9) x T in {0.5, 1, 2} x t2_scale x
  // alpha in {1, 0.5} on dense logits, plus the 5 losses on HIDDEN.
  EXPECT_EQ(n, 65);
}

TEST(KdLossTest, MakeTopKMatchesReference) {
  const Reference& ref = Ref();
  const int64_t v = ref.cases.at("vocab").get<int64_t>();
  for (int64_t k : {int64_t{5}, v}) {
    for (double t : {1.0, 2.0}) {
      const std::string tag = "topk.k" + std::to_string(k) + ".T" + Tag(t);
      auto topk = MakeTopK(ref.Input("t_logits"), v, k, t);
      ASSERT_TRUE(topk.ok()) << topk.status();
      EXPECT_EQ(topk->transport, v1::TOPK);
      EXPECT_TRUE(torch::equal(topk->topk_ids, ref.Input(tag + ".ids"))) << tag;
      EXPECT_TRUE(torch::equal(topk->topk_logits, ref.Input(tag + ".values"))) << tag;
      EXPECT_EQ(topk->topk_lse.scalar_type(), torch::kFloat);
      distill::testing::ExpectAllClose(topk->topk_lse, ref.Expected(tag + ".lse"), 1e-6, 1e-6,
                                       tag + " lse");
    }
  }
}

TEST(KdLossTest, TopKWithWholeVocabularyEqualsDense) {
  const Reference& ref = Ref();
  const int64_t v = ref.cases.at("vocab").get<int64_t>();
  for (const auto& c : ref.cases.at("kd")) {
    if (c.at("transport").get<std::string>() != "dense" || c.at("alpha").get<double>() != 0.5)
      continue;
    const std::string name = c.at("name").get<std::string>();
    const KdLossConfig config = ConfigOf(c, 5);
    auto topk = MakeTopK(ref.Input("t_logits"), v, v, config.temperature);
    ASSERT_TRUE(topk.ok()) << topk.status();
    ExpectSame(RunLoss(ref.Input("h"), ref.Input("w"), ref.Input("targets"), *topk, config),
               RunCase(ref, c, 5), name + " top-k (k = V) vs dense");
  }
}

TEST(KdLossTest, HiddenEqualsDenseOnTheSameLogits) {
  const Reference& ref = Ref();
  const int64_t v = ref.cases.at("vocab").get<int64_t>();
  TeacherOutput dense;
  dense.transport = v1::DENSE;
  dense.logits = torch::mm(ref.Input("t_hidden"), ref.Input("t_head").narrow(0, 0, v).t());
  for (const auto& c : ref.cases.at("kd")) {
    if (c.at("transport").get<std::string>() != "hidden") continue;
    const KdLossConfig config = ConfigOf(c, 3);
    ExpectSame(RunCase(ref, c, 3),
               RunLoss(ref.Input("h"), ref.Input("w"), ref.Input("targets"), dense, config),
               c.at("name").get<std::string>() + " hidden vs dense");
  }
}

TEST(KdLossTest, ChunkedEqualsUnchunked) {
  const Reference& ref = Ref();
  const int64_t n = ref.Input("h").size(0);  // 13
  for (const char* name :
       {"dense.jsd0.5.T2.t21.a0.5", "topk.k5.T2.reverse_kl", "hidden.forward_kl"}) {
    const nlohmann::json* c = nullptr;
    for (const auto& x : ref.cases.at("kd")) {
      if (x.at("name").get<std::string>() == name) c = &x;
    }
    ASSERT_NE(c, nullptr) << name;
    const LossRun whole = RunCase(ref, *c, n);
    for (int64_t chunk : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{5}, n - 1, n + 7}) {
      ExpectSame(RunCase(ref, *c, chunk), whole,
                 std::string(name) + " chunk " + std::to_string(chunk));
    }
  }
}

TEST(KdLossTest, EvalSkipsGradientsAndGivesTheSameLoss) {
  const Reference& ref = Ref();
  TeacherOutput teacher;
  teacher.logits = ref.Input("t_logits");
  KdLossConfig config;
  config.chunk_tokens = 4;
  const LossRun train =
      RunLoss(ref.Input("h"), ref.Input("w"), ref.Input("targets"), teacher, config);
  // Inputs that do not require grad, and inputs that do under NoGradGuard.
  auto plain = KdLoss(ref.Input("h"), ref.Input("w"), ref.Input("targets"), teacher, config);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->total.requires_grad());
  EXPECT_EQ(plain->total.item<float>(), train.result.total.item<float>());
  EXPECT_EQ(plain->ce, train.result.ce);
  EXPECT_EQ(plain->kd, train.result.kd);
  torch::Tensor h = ref.Input("h").requires_grad_(true);
  torch::NoGradGuard no_grad;
  auto guarded = KdLoss(h, ref.Input("w"), ref.Input("targets"), teacher, config);
  ASSERT_TRUE(guarded.ok()) << guarded.status();
  EXPECT_FALSE(guarded->total.requires_grad());
  EXPECT_EQ(guarded->total.item<float>(), train.result.total.item<float>());
}

TEST(KdLossTest, GradientsScaleWithTheOutputGradientAndFollowRequiresGrad) {
  const Reference& ref = Ref();
  TeacherOutput teacher;
  teacher.logits = ref.Input("t_logits");
  KdLossConfig config;
  config.loss = v1::REVERSE_KL;
  config.chunk_tokens = 5;
  const LossRun base =
      RunLoss(ref.Input("h"), ref.Input("w"), ref.Input("targets"), teacher, config);

  // 3 * loss: the node's backward scales its stored gradients.
  torch::Tensor h = ref.Input("h").requires_grad_(true);
  torch::Tensor w = ref.Input("w").requires_grad_(true);
  auto r = KdLoss(h, w, ref.Input("targets"), teacher, config);
  ASSERT_TRUE(r.ok()) << r.status();
  (3.0 * r->total).backward();
  distill::testing::ExpectAllClose(h.grad(), 3.0 * base.grad_h, 1e-6, 1e-9, "3x grad_h");
  distill::testing::ExpectAllClose(w.grad(), 3.0 * base.grad_w, 1e-6, 1e-9, "3x grad_w");

  // A frozen lm_head (LoRA): no grad_W is formed, grad_h is unchanged.
  torch::Tensor h2 = ref.Input("h").requires_grad_(true);
  torch::Tensor w2 = ref.Input("w");
  auto r2 = KdLoss(h2, w2, ref.Input("targets"), teacher, config);
  ASSERT_TRUE(r2.ok()) << r2.status();
  r2->total.backward();
  EXPECT_FALSE(w2.grad().defined());
  distill::testing::ExpectAllClose(h2.grad(), base.grad_h, 1e-6, 1e-9, "grad_h, frozen lm_head");

  // Gradients flow on into whatever produced the hidden state.
  torch::Tensor x = ref.Input("h").requires_grad_(true);
  auto r3 = KdLoss(x * 2.0, ref.Input("w"), ref.Input("targets"), teacher, config);
  ASSERT_TRUE(r3.ok()) << r3.status();
  r3->total.backward();
  ASSERT_TRUE(x.grad().defined());
}

TEST(KdLossTest, TopKTailStaysFiniteWhenTheTeacherMassRoundsAboveOne) {
  const Reference& ref = Ref();
  const int64_t v = ref.cases.at("vocab").get<int64_t>();
  auto topk = MakeTopK(ref.Input("t_logits"), v, 5, 1.0);
  ASSERT_TRUE(topk.ok()) << topk.status();
  // A log-sum-exp that is too small (as float32 rounding can make it) puts
  // the k probabilities' sum above 1; the tail is clamped, not negative.
  topk->topk_lse = torch::logsumexp(topk->topk_logits, 1) - 1e-3;
  for (auto loss : {v1::FORWARD_KL, v1::REVERSE_KL, v1::JSD}) {
    KdLossConfig config;
    config.loss = loss;
    config.temperature = 1.0;
    const LossRun run =
        RunLoss(ref.Input("h"), ref.Input("w"), ref.Input("targets"), *topk, config);
    ASSERT_TRUE(run.result.total.defined());
    EXPECT_TRUE(std::isfinite(run.result.total.item<double>())) << v1::DistillLoss_Name(loss);
    EXPECT_TRUE(torch::isfinite(run.grad_h).all().item<bool>()) << v1::DistillLoss_Name(loss);
    EXPECT_TRUE(torch::isfinite(run.grad_w).all().item<bool>()) << v1::DistillLoss_Name(loss);
  }
}

// Bad input: InvalidArgument naming the problem.
void ExpectInvalid(const absl::StatusOr<KdLossResult>& r, const std::string& needle) {
  ASSERT_FALSE(r.ok()) << "expected an error mentioning '" << needle << "'";
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(std::string(r.status().message()).find(needle), std::string::npos) << r.status();
}

TEST(KdLossTest, BadInputsAreInvalidArgument) {
  const Reference& ref = Ref();
  const torch::Tensor h = ref.Input("h"), w = ref.Input("w"), y = ref.Input("targets");
  const int64_t n = h.size(0), v = w.size(0);
  TeacherOutput dense;
  dense.logits = ref.Input("t_logits");
  const KdLossConfig ok;
  auto with = [&](auto edit) {
    KdLossConfig c = ok;
    edit(c);
    return KdLoss(h, w, y, dense, c);
  };
  ExpectInvalid(with([](KdLossConfig& c) { c.temperature = 0; }), "temperature");
  ExpectInvalid(with([](KdLossConfig& c) { c.temperature = -1; }), "temperature");
  ExpectInvalid(with([](KdLossConfig& c) { c.alpha = 1.5; }), "alpha");
  ExpectInvalid(with([](KdLossConfig& c) { c.alpha = -0.1; }), "alpha");
  ExpectInvalid(with([](KdLossConfig& c) {
                  c.loss = v1::JSD;
                  c.beta = 0;
                }),
                "beta");
  ExpectInvalid(with([](KdLossConfig& c) {
                  c.loss = v1::JSD;
                  c.beta = 1;
                }),
                "beta");
  ExpectInvalid(with([](KdLossConfig& c) { c.chunk_tokens = 0; }), "chunk_tokens");

  ExpectInvalid(KdLoss(h, w.narrow(1, 0, 5), y, dense, ok), "student_lm_head");
  ExpectInvalid(KdLoss(h.unsqueeze(0), w, y, dense, ok), "student_hidden");
  ExpectInvalid(KdLoss(h.narrow(0, 0, 0), w, y.narrow(0, 0, 0), dense, ok), "no tokens");
  ExpectInvalid(KdLoss(h, w, y.narrow(0, 0, n - 1), dense, ok), "targets");
  ExpectInvalid(KdLoss(h, w, y.to(torch::kInt), dense, ok), "targets");
  ExpectInvalid(KdLoss(h, w, y.clone().fill_(v), dense, ok), "targets out of range");
  ExpectInvalid(KdLoss(h, w, y.clone().fill_(-1), dense, ok), "targets out of range");

  TeacherOutput narrow = dense;
  narrow.logits = dense.logits.narrow(1, 0, v - 1);  // V' < V
  ExpectInvalid(KdLoss(h, w, y, narrow, ok), "fewer than the vocabulary");
  TeacherOutput rows = dense;
  rows.logits = dense.logits.narrow(0, 0, n - 1);
  ExpectInvalid(KdLoss(h, w, y, rows, ok), "DENSE teacher logits");

  auto topk = MakeTopK(dense.logits, v, 5, 2.0);
  ASSERT_TRUE(topk.ok());
  TeacherOutput t = *topk;
  t.topk_ids = topk->topk_ids.clone();
  t.topk_ids[0][0] = v;
  ExpectInvalid(KdLoss(h, w, y, t, ok), "topk_ids out of range");
  t.topk_ids = topk->topk_ids.clone();
  t.topk_ids[3][1] = t.topk_ids[3][0].item<int64_t>();
  ExpectInvalid(KdLoss(h, w, y, t, ok), "row 3 repeats an id");
  t.topk_ids = topk->topk_ids.narrow(1, 0, 4);
  ExpectInvalid(KdLoss(h, w, y, t, ok), "topk_ids");
  t = *topk;
  t.topk_lse = topk->topk_lse.narrow(0, 0, n - 1);
  ExpectInvalid(KdLoss(h, w, y, t, ok), "topk_lse");
  t = *topk;
  t.topk_logits = torch::zeros({n, v + 1});
  t.topk_ids = torch::zeros({n, v + 1}, torch::kLong);
  ExpectInvalid(KdLoss(h, w, y, t, ok), "k must be in [1, V");

  TeacherOutput hidden;
  hidden.transport = v1::HIDDEN;
  hidden.hidden = ref.Input("t_hidden");
  hidden.lm_head = ref.Input("t_head").narrow(0, 0, v - 1);
  ExpectInvalid(KdLoss(h, w, y, hidden, ok), "lm_head");
  hidden.lm_head = ref.Input("t_head").narrow(1, 0, 3);
  ExpectInvalid(KdLoss(h, w, y, hidden, ok), "lm_head");

  // MakeTopK's own checks.
  EXPECT_EQ(MakeTopK(dense.logits, v, 0, 1.0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeTopK(dense.logits, v, v + 1, 1.0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeTopK(dense.logits, v, 5, 0.0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeTopK(dense.logits, dense.logits.size(1) + 1, 5, 1.0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

using distill::testing::CountingCpuAllocator;

// Note [KD memory bound]: with a 32k vocabulary and 2048 tokens the [N, V]
// float32 logits alone are 262 MB. The chunked loss's forward + backward may
// allocate at most grad_W + grad_h (the node's stored gradients, float32)
// plus 12 float32 [chunk_tokens, V] buffers plus 1 MiB of small tensors,
// which with chunk_tokens = 32 is ~58 MB, and in any case under a quarter of
// N * V * 4 bytes. HIDDEN transport, so no input is [N, V] either.
TEST(KdLossTest, PeakMemoryIsBoundedByTheChunkNotByTokensTimesVocab) {
  constexpr int64_t kN = 2048, kV = 32000, kD = 64, kChunk = 32;
  torch::manual_seed(7);
  const torch::Tensor y = torch::randint(0, kV, {kN}, torch::kLong);
  TeacherOutput teacher;
  teacher.transport = v1::HIDDEN;
  teacher.hidden = torch::randn({kN, kD});
  teacher.lm_head = torch::randn({kV, kD}) * 0.2;
  static CountingCpuAllocator* counting = new CountingCpuAllocator(c10::GetCPUAllocator());
  c10::Allocator* const base = c10::GetCPUAllocator();
  const int64_t bound = (kV * kD + kN * kD + 12 * kChunk * kV) * 4 + (int64_t{1} << 20);
  ASSERT_LT(bound, kN * kV * 4 / 4);
  for (auto loss : {v1::FORWARD_KL, v1::JSD}) {
    KdLossConfig config;
    config.loss = loss;
    config.chunk_tokens = kChunk;
    torch::Tensor h = torch::randn({kN, kD}).requires_grad_(true);
    torch::Tensor w = (torch::randn({kV, kD}) * 0.2).requires_grad_(true);
    const auto start = std::chrono::steady_clock::now();
    // Priority 255: above the default CPU allocator's registration, and the
    // same to put it back.
    c10::SetCPUAllocator(counting, 255);
    counting->Reset();
    const int64_t live_before = counting->peak();
    {
      auto r = KdLoss(h, w, y, teacher, config);
      ASSERT_TRUE(r.ok()) << r.status();
      r->total.backward();
    }
    const int64_t peak = counting->peak() - live_before;
    c10::SetCPUAllocator(base, 255);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_TRUE(h.grad().defined() && w.grad().defined());
    EXPECT_LE(peak, bound) << v1::DistillLoss_Name(loss) << ": peak " << peak
                           << " bytes, N*V*4 = " << kN * kV * 4;
    RecordProperty(v1::DistillLoss_Name(loss) + "_peak_bytes", std::to_string(peak));
    std::printf("%s: peak %.1f MB (bound %.1f MB, N*V*4 %.1f MB), %.2f s\n",
                v1::DistillLoss_Name(loss).c_str(), peak / 1e6, bound / 1e6, kN * kV * 4 / 1e6,
                seconds);
  }
}

}  // namespace
}  // namespace distill::worker
