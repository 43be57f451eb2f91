// The teacher on dedicated ranks. Run under mpirun (tests/mpi_test_main.cc):
// TeacherSplitTest / TeacherStageModelTest need one rank; the pipeline tests
// skip unless launched with the rank count they are written for (3: one
// student and two stages; 4: two students and two stages).
#include "worker/distill/teacher_pipeline.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <limits>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/plan.h"
#include "tests/test_util/mpi_fixture.h"
#include "tests/test_util/test_util.h"
#include "worker/comm/mpi_communicator.h"
#include "worker/distill/colocated_teacher.h"
#include "worker/distill/feature_loss.h"
#include "worker/distill/kd_loss.h"
#include "worker/distill/remote_teacher.h"
#include "worker/distill/teacher_stream.h"
#include "worker/model/hf_io.h"

namespace distill::worker {
namespace {
namespace fs = std::filesystem;
using common::RankLayout;
using distill::testing::MakeTempDir;

// ---------------------------------------------------------------------------
// SplitTeacherLayers

std::vector<std::pair<int64_t, int64_t>> Ranges(const std::vector<StageRange>& r) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const StageRange& s : r) out.emplace_back(s.begin, s.end);
  return out;
}

using Split = std::vector<std::pair<int64_t, int64_t>>;

Split MustSplit(const std::vector<int64_t>& layers, int64_t embed, int64_t head, int stages) {
  auto r = SplitTeacherLayers(layers, embed, head, stages);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? Ranges(*r) : Split{};
}

TEST(TeacherSplitTest, EqualLayersSplitEvenly) {
  EXPECT_EQ(MustSplit({10, 10, 10, 10}, 0, 0, 2), (Split{{0, 2}, {2, 4}}));
  EXPECT_EQ(MustSplit({10, 10, 10, 10}, 0, 0, 4), (Split{{0, 1}, {1, 2}, {2, 3}, {3, 4}}));
  EXPECT_EQ(MustSplit({10, 10, 10, 10}, 7, 9, 1), (Split{{0, 4}}));
}

TEST(TeacherSplitTest, EmbeddingsAndHeadWeighOnTheEndStages) {
  // Stage 0 carries 25 of embeddings: [0,1) + 25 = 35 | 30 + 5 = 35.
  EXPECT_EQ(MustSplit({10, 10, 10, 10}, 25, 5, 2), (Split{{0, 1}, {1, 4}}));
  // A heavy head: 10 | 10 + 10 + 10 + 100 is worse than 30 | 10 + 100.
  EXPECT_EQ(MustSplit({10, 10, 10, 10}, 0, 100, 2), (Split{{0, 3}, {3, 4}}));
}

TEST(TeacherSplitTest, MinimisesTheLargestStage) {
  EXPECT_EQ(MustSplit({5, 30, 5, 5, 5}, 0, 0, 2), (Split{{0, 2}, {2, 5}}));
  EXPECT_EQ(MustSplit({5, 30, 5, 5, 5}, 0, 0, 3), (Split{{0, 1}, {1, 2}, {2, 5}}));
}

// Against every contiguous split, for random counts.
TEST(TeacherSplitTest, MatchesBruteForceOptimum) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 7);
    const int k = 1 + static_cast<int>(rng() % n);
    std::vector<int64_t> layers(n);
    for (auto& p : layers) p = rng() % 50;
    const int64_t embed = rng() % 80, head = rng() % 80;
    auto cost = [&](const Split& s) {
      int64_t worst = 0;
      for (size_t j = 0; j < s.size(); ++j) {
        int64_t sum = (j == 0 ? embed : 0) + (j + 1 == s.size() ? head : 0);
        for (int64_t i = s[j].first; i < s[j].second; ++i) sum += layers[i];
        worst = std::max(worst, sum);
      }
      return worst;
    };
    int64_t best = std::numeric_limits<int64_t>::max();
    for (uint32_t mask = 0; mask < (1u << (n - 1)); ++mask) {  // bit i: a cut after layer i
      if (__builtin_popcount(mask) != k - 1) continue;
      Split s;
      int64_t begin = 0;
      for (int i = 0; i < n - 1; ++i) {
        if (mask & (1u << i)) {
          s.emplace_back(begin, i + 1);
          begin = i + 1;
        }
      }
      s.emplace_back(begin, n);
      best = std::min(best, cost(s));
    }
    const Split got = MustSplit(layers, embed, head, k);
    ASSERT_EQ(got.size(), static_cast<size_t>(k));
    EXPECT_EQ(got.front().first, 0);
    EXPECT_EQ(got.back().second, n);
    for (size_t j = 0; j < got.size(); ++j) {
      EXPECT_LT(got[j].first, got[j].second);
      if (j > 0) {
        EXPECT_EQ(got[j].first, got[j - 1].second);
      }
    }
    EXPECT_EQ(cost(got), best) << "trial " << trial;
  }
}

TEST(TeacherSplitTest, MoreStagesThanLayersIsInvalidArgumentNamingTeacherRanks) {
  auto r = SplitTeacherLayers({1, 2, 3, 4}, 0, 0, 5);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "teacher.ranks: 5 pipeline stages, but the teacher has 4 layers");
  EXPECT_EQ(SplitTeacherLayers({1}, 0, 0, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------
// Models

ModelConfig TeacherConfig(bool tied) {
  ModelConfig c;
  c.vocab_size = 40;  // 4 padding rows over the student's 36
  c.hidden_size = 24;
  c.intermediate_size = 40;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 6;
  c.tie_word_embeddings = tied;
  return c;
}

ModelConfig StudentModelConfig() {
  ModelConfig c;
  c.vocab_size = 36;
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 8;
  return c;
}

// DIR/teacher and DIR/student as Hugging Face directories.
void WriteModels(const std::string& dir, bool tied_teacher) {
  LlamaForCausalLM teacher = InitModel(TeacherConfig(tied_teacher), 11);
  {
    // Non-trivial norms, so a wrong norm in a stage shows.
    torch::NoGradGuard no_grad;
    torch::manual_seed(3);
    for (auto& p : teacher->named_parameters()) {
      if (p.key().find("norm") != std::string::npos) p.value().uniform_(0.5, 1.5);
    }
  }
  ASSERT_TRUE(SaveHfModel(teacher, dir + "/teacher").ok());
  LlamaForCausalLM student = InitModel(StudentModelConfig(), 12);
  ASSERT_TRUE(SaveHfModel(student, dir + "/student").ok());
}

TEST(TeacherStageModelTest, PartsComposeToTheFullForward) {
  for (bool tied : {false, true}) {
    const std::string dir = MakeTempDir("teacher_parts");
    WriteModels(dir, tied);
    auto full = LoadHfModel(dir + "/teacher");
    ASSERT_TRUE(full.ok()) << full.status();
    ModelPart first{0, 2, /*embed=*/true, /*head=*/false};
    ModelPart last{2, 4, /*embed=*/false, /*head=*/true};
    auto a = LoadHfModelPart(dir + "/teacher", first);
    auto b = LoadHfModelPart(dir + "/teacher", last);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    for (const auto& p : (*a)->named_parameters()) {
      EXPECT_TRUE(p.key().rfind("model.layers.0.", 0) == 0 ||
                  p.key().rfind("model.layers.1.", 0) == 0 ||
                  p.key() == "model.embed_tokens.weight")
          << p.key();
    }
    for (const auto& p : (*b)->named_parameters()) {
      EXPECT_TRUE(p.key().rfind("model.layers.2.", 0) == 0 ||
                  p.key().rfind("model.layers.3.", 0) == 0 || p.key() == "model.norm.weight" ||
                  p.key() == (tied ? "model.embed_tokens.weight" : "lm_head.weight"))
          << p.key();
    }
    torch::NoGradGuard no_grad;
    const torch::Tensor ids = torch::randint(0, 40, {2, 7}, torch::kLong);
    std::map<int64_t, torch::Tensor> want_capture, got_capture;
    const torch::Tensor want = (*full)->Hidden(ids, {1, 3}, &want_capture);
    torch::Tensor x = (*a)->RunLayers((*a)->Embed(ids), 0, 2, {1, 3}, &got_capture);
    x = (*b)->FinalNorm((*b)->RunLayers(x, 2, 4, {1, 3}, &got_capture));
    EXPECT_TRUE(torch::equal(x, want));
    ASSERT_EQ(got_capture.size(), 2u);
    for (int64_t l : {1, 3}) EXPECT_TRUE(torch::equal(got_capture.at(l), want_capture.at(l)));
    EXPECT_TRUE(torch::equal((*b)->Logits(x), (*full)->Logits(want)));
    // A layer the part does not hold is an error, not a crash.
    EXPECT_THROW((*a)->RunLayers(x, 2, 3), c10::Error);

    auto head = LoadHfLmHead(dir + "/teacher", 36);
    ASSERT_TRUE(head.ok()) << head.status();
    EXPECT_TRUE(torch::equal(*head, (*full)->LmHeadWeight().narrow(0, 0, 36)));
    EXPECT_EQ(LoadHfLmHead(dir + "/teacher", 41).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(TeacherStageModelTest, SplitCountsAreTheModelsParameters) {
  const ModelConfig c = TeacherConfig(false);
  LlamaForCausalLM model = InitModel(c, 1);
  std::vector<int64_t> layers(c.num_hidden_layers, 0);
  for (const auto& p : model->named_parameters()) {
    const std::string& name = p.key();
    if (name.rfind("model.layers.", 0) == 0)
      layers[std::stoi(name.substr(13))] += p.value().numel();
  }
  EXPECT_EQ(teacher_stream::LayerParams(c), layers);
  EXPECT_EQ(teacher_stream::EmbedParams(c) + teacher_stream::HeadParams(c),
            model->named_parameters()["model.embed_tokens.weight"].numel() +
                model->named_parameters()["model.norm.weight"].numel() +
                model->named_parameters()["lm_head.weight"].numel());
  // The pipeline tests' layout: stage 0 holds layers 0-1, the last 2-3.
  auto split = teacher_stream::SplitTeacher(c, 2);
  ASSERT_TRUE(split.ok()) << split.status();
  EXPECT_EQ(Ranges(*split), (Split{{0, 2}, {2, 4}}));
}

// ---------------------------------------------------------------------------
// The pipeline on real ranks

std::unique_ptr<Communicator> World() { return distill::testing::MpiWorldOrFail(); }
std::string SharedTempDir(Communicator& world) { return distill::testing::SharedTempDir(world, "teacher_pipeline"); }

distill::v1::JobSpec Spec(const std::string& dir, distill::v1::LogitTransport transport,
                          int students, int teachers) {
  distill::v1::JobSpec s;
  s.set_type(distill::v1::DISTILL);
  s.mutable_teacher()->set_model(dir + "/teacher");
  s.mutable_teacher()->set_ranks(teachers);
  s.mutable_student()->set_model(dir + "/student");
  s.mutable_student()->set_ranks(students);
  auto* d = s.mutable_distill();
  d->set_logits(transport);
  d->set_top_k(5);
  d->set_temperature(2.0);
  d->set_alpha(0.5);
  d->set_t2_scale(true);
  d->set_beta(0.5);
  d->set_chunk_tokens(4);
  d->set_feature_weight(1.0);
  // Teacher layer 1 lives on stage 0, layer 3 on the last stage.
  auto* f = d->add_features();
  f->set_student_layer(0);
  f->set_teacher_layer(1);
  f = d->add_features();
  f->set_student_layer(1);
  f->set_teacher_layer(3);
  f->set_loss(distill::v1::COSINE);
  s.mutable_runtime()->set_prefetch(2);
  s.mutable_runtime()->set_timeout_s(60);
  // The stages refuse requests past 3 x (6 + 1) tokens (Note [Stream header
  // bounds]); RunStudent's largest batch is 3 x 5.
  s.mutable_train()->set_micro_batch(3);
  s.mutable_data()->set_seq_len(6);
  return s;
}

TeacherRunConfig RunConfig(const distill::v1::JobSpec& spec) {
  TeacherRunConfig run;
  run.transport = spec.distill().logits();
  run.top_k = spec.distill().top_k();
  run.temperature = spec.distill().temperature();
  run.chunk_tokens = spec.distill().chunk_tokens();
  run.capture_layers = {3, 1};  // any order
  return run;
}

// Stops the stream however the student's test body ends, so the stages
// never wait for a student that failed.
struct StopAtExit {
  RemoteTeacher* remote = nullptr;
  ~StopAtExit() {
    if (remote != nullptr) (void)remote->Stop();
  }
};

void ExpectClose(const torch::Tensor& got, const torch::Tensor& want, const std::string& what) {
  ASSERT_TRUE(got.defined()) << what;
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  EXPECT_TRUE(torch::allclose(got, want.to(got.scalar_type()), 1e-5, 1e-5)) << what;
}

// The KD and feature losses of a student micro-batch from either teacher batch.
struct Losses {
  double kd_total = 0, kd = 0, ce = 0;
  std::vector<double> features;
};

Losses LossesOf(LlamaForCausalLM& student, const torch::Tensor& ids, const TeacherBatch& tb,
                const std::vector<std::shared_ptr<FeatureProjection>>& proj) {
  torch::NoGradGuard no_grad;
  std::map<int64_t, torch::Tensor> cap;
  const torch::Tensor h = student->Hidden(ids, {0, 1}, &cap);
  const int64_t n = ids.numel();
  const torch::Tensor targets = torch::roll(ids, -1, 1).reshape({n});
  KdLossConfig kd;
  kd.temperature = 2.0;
  kd.chunk_tokens = 4;
  Losses out;
  auto r = KdLoss(h.reshape({n, h.size(-1)}), student->LmHeadWeight().narrow(0, 0, 36), targets,
                  tb.output, kd);
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return out;
  out.kd_total = r->total.item<double>();
  out.kd = r->kd;
  out.ce = r->ce;
  const std::vector<std::pair<int64_t, int64_t>> pairs = {{0, 1}, {1, 3}};
  for (size_t i = 0; i < pairs.size(); ++i) {
    auto f = FeatureLoss(cap.at(pairs[i].first).reshape({n, 16}), tb.features.at(pairs[i].second),
                         proj[i].get(), i == 0 ? distill::v1::MSE : distill::v1::COSINE);
    EXPECT_TRUE(f.ok()) << f.status();
    out.features.push_back(f.ok() ? f->item<double>() : 0.0);
  }
  return out;
}

// The remote batch equals the colocated teacher's on the same ids, and so do
// the losses computed from them.
void ExpectSameBatch(const TeacherBatch& remote, const TeacherBatch& local,
                     LlamaForCausalLM& student, const torch::Tensor& ids, const std::string& what) {
  const TeacherOutput &r = remote.output, &l = local.output;
  EXPECT_EQ(r.transport, l.transport) << what;
  switch (l.transport) {
    case distill::v1::TOPK:
      ExpectClose(r.topk_logits, l.topk_logits, what + " top-k logits");
      EXPECT_TRUE(torch::equal(r.topk_ids, l.topk_ids)) << what;
      ExpectClose(r.topk_lse, l.topk_lse, what + " top-k lse");
      break;
    case distill::v1::HIDDEN:
      ExpectClose(r.hidden, l.hidden, what + " hidden");
      ExpectClose(r.lm_head, l.lm_head, what + " lm_head");
      break;
    default:
      ExpectClose(r.logits, l.logits, what + " logits");
      break;
  }
  ASSERT_EQ(remote.features.size(), local.features.size()) << what;
  for (const auto& [layer, t] : local.features) {
    ASSERT_EQ(remote.features.count(layer), 1u) << what << " layer " << layer;
    ExpectClose(remote.features.at(layer), t, what + " feature " + std::to_string(layer));
  }
  EXPECT_EQ(remote.bytes, local.bytes) << what;
  std::vector<std::shared_ptr<FeatureProjection>> proj = {
      std::make_shared<FeatureProjection>(16, 24, 5),
      std::make_shared<FeatureProjection>(16, 24, 6)};
  const Losses a = LossesOf(student, ids, remote, proj), b = LossesOf(student, ids, local, proj);
  EXPECT_NEAR(a.kd_total, b.kd_total, 1e-6) << what;
  EXPECT_NEAR(a.kd, b.kd, 1e-6) << what;
  EXPECT_NEAR(a.ce, b.ce, 1e-6) << what;
  ASSERT_EQ(a.features.size(), b.features.size());
  for (size_t i = 0; i < a.features.size(); ++i)
    EXPECT_NEAR(a.features[i], b.features[i], 1e-6) << what;
}

// One student's session: `train` micro-batches (through Enqueue ahead and
// Next), and an EvalLogits after the first Next when `eval`.
void RunStudent(const distill::v1::JobSpec& spec, Communicator& world, const RankLayout& layout,
                const std::string& dir, int train, bool eval, uint64_t seed) {
  auto sc = LoadModelConfig(dir + "/student/config.json");
  ASSERT_TRUE(sc.ok()) << sc.status();
  const TeacherRunConfig run = RunConfig(spec);
  auto remote = RemoteTeacher::Create(spec, world, layout, *sc, dir + "/student", run, torch::kCPU);
  ASSERT_TRUE(remote.ok()) << remote.status();
  StopAtExit stop{remote->get()};
  EXPECT_EQ((*remote)->vocab(), 36);
  EXPECT_EQ((*remote)->config().num_hidden_layers, 4);
  auto colocated = ColocatedTeacher::Load(dir + "/teacher", *sc, dir + "/student", torch::kCPU);
  ASSERT_TRUE(colocated.ok()) << colocated.status();
  auto student = LoadHfModel(dir + "/student");
  ASSERT_TRUE(student.ok()) << student.status();

  torch::manual_seed(seed);
  // Every third batch is packed: two examples per row (Note [Packed rows]),
  // whose positions travel with the ids through every stage.
  std::vector<TokenBatch> batches;
  for (int i = 0; i < train; ++i) {
    const int64_t b = i % 2 == 0 ? 2 : 3, l = i % 2 == 0 ? 6 : 5;
    TokenBatch batch{torch::randint(0, 36, {b, l}, torch::kLong), {}, {}, {}, {}};
    if (i % 3 == 2) {
      batch.positions =
          torch::cat({torch::arange(2, torch::kLong), torch::arange(l - 2, torch::kLong)}).repeat({b, 1});
    }
    batches.push_back(batch);
  }
  const std::string name =
      absl::StrCat(layout.Role(layout.rank), " ", distill::v1::LogitTransport_Name(run.transport));
  // Queue all but the last ahead (prefetch 2: the rest wait for credits).
  for (int i = 0; i + 1 < train; ++i) ASSERT_TRUE((*remote)->Enqueue(batches[i]).ok());
  EXPECT_EQ((*remote)->Next(batches[1]).status().code(),
            absl::StatusCode::kInternal);  // out of step
  for (int i = 0; i < train; ++i) {
    auto got = (*remote)->Next(batches[i]);  // the last one: nothing queued, sent by Next
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_GE(got->seconds, 0.0);
    auto want = (*colocated)->Run(batches[i].inputs, run, batches[i].positions);
    ASSERT_TRUE(want.ok()) << want.status();
    ExpectSameBatch(*got, *want, *student, batches[i].inputs, absl::StrCat(name, " batch ", i));
    if (i == 0 && eval) {
      const torch::Tensor ids = torch::randint(0, 36, {2, 4}, torch::kLong);
      const torch::Tensor positions = torch::tensor({0, 1, 0, 1}, torch::kLong).repeat({2, 1});
      auto logits = (*remote)->EvalLogits({ids, torch::Tensor(), positions, {}, {}});
      ASSERT_TRUE(logits.ok()) << logits.status();
      auto dense = (*colocated)->Run(ids, TeacherRunConfig(), positions);
      ASSERT_TRUE(dense.ok()) << dense.status();
      ExpectClose(*logits, dense->output.logits, name + " eval logits");
    }
  }
  stop.remote = nullptr;
  EXPECT_TRUE((*remote)->Stop().ok());
  EXPECT_TRUE((*remote)->Stop().ok());  // idempotent
  EXPECT_EQ((*remote)->Enqueue(batches[0]).code(), absl::StatusCode::kFailedPrecondition);
}

// A teacher rank: serves until the students stop. A failure ends every rank
// (a stuck stream would otherwise hang the test).
TeacherStageStats RunStage(const distill::v1::JobSpec& spec, Communicator& world,
                           const RankLayout& layout) {
  auto stats = RunTeacherStage(spec, world, layout, torch::kCPU);
  if (!stats.ok()) {
    ADD_FAILURE() << stats.status();
    world.Abort(absl::StrCat("teacher stage failed: ", stats.status().ToString()), 1);
  }
  EXPECT_GE(stats->total_s, stats->busy_s);
  EXPECT_GT(stats->bytes_sent, 0);
  return *stats;
}

TEST(TeacherPipelineTest, TwoStagesEqualTheColocatedTeacherInEveryTransport) {
  auto world = World();
  ASSERT_NE(world, nullptr);
  if (world->size() != 3) GTEST_SKIP() << "needs mpirun -np 3 (1 student + 2 teacher stages)";
  const std::string dir = SharedTempDir(*world);
  if (world->rank() == 0) WriteModels(dir, /*tied_teacher=*/true);
  ASSERT_TRUE(world->Barrier("models written").ok());
  for (auto transport : {distill::v1::DENSE, distill::v1::TOPK, distill::v1::HIDDEN}) {
    const distill::v1::JobSpec spec = Spec(dir, transport, 1, 2);
    auto layout = RankLayout::FromSpec(spec, world->size(), world->rank());
    ASSERT_TRUE(layout.ok()) << layout.status();
    if (layout->is_student()) {
      RunStudent(spec, *world, *layout, dir, /*train=*/4, /*eval=*/true, /*seed=*/21);
    } else {
      EXPECT_EQ(RunStage(spec, *world, *layout).requests, 5) << layout->Role(world->rank());
    }
    ASSERT_TRUE(world->Barrier("transport done").ok());
  }
}

TEST(TeacherPipelineTest, TwoStudentsEachGetTheirOwnReplies) {
  auto world = World();
  ASSERT_NE(world, nullptr);
  if (world->size() != 4) GTEST_SKIP() << "needs mpirun -np 4 (2 students + 2 teacher stages)";
  const std::string dir = SharedTempDir(*world);
  if (world->rank() == 0) WriteModels(dir, /*tied_teacher=*/false);
  ASSERT_TRUE(world->Barrier("models written").ok());
  const distill::v1::JobSpec spec = Spec(dir, distill::v1::TOPK, 2, 2);
  auto layout = RankLayout::FromSpec(spec, world->size(), world->rank());
  ASSERT_TRUE(layout.ok()) << layout.status();
  std::vector<int64_t> requests = {0, 0};
  if (layout->is_student()) {
    // Different ids per student, and different request counts (student 0
    // also evaluates): neither may hold up the other.
    RunStudent(spec, *world, *layout, dir, /*train=*/3, /*eval=*/layout->rank == 0,
               /*seed=*/30 + layout->rank);
  } else {
    requests[layout->stage()] = RunStage(spec, *world, *layout).requests;
    EXPECT_EQ(requests[layout->stage()], 3 + 1 + 3);
  }
  // Every stage served every request of both students.
  torch::Tensor all = torch::tensor(requests, torch::kLong);
  ASSERT_TRUE(world->AllReduce(all, ReduceOp::kSum, "stage request counts").ok());
  EXPECT_EQ(all[0].item<int64_t>(), all[1].item<int64_t>());
}

TEST(TeacherPipelineTest, CreateChecksRanksAndVocabulary) {
  auto world = World();
  ASSERT_NE(world, nullptr);
  const std::string dir = SharedTempDir(*world);
  if (world->rank() == 0) WriteModels(dir, false);
  ASSERT_TRUE(world->Barrier("models written").ok());
  if (world->rank() != 0) return;
  auto sc = LoadModelConfig(dir + "/student/config.json");
  ASSERT_TRUE(sc.ok());
  const distill::v1::JobSpec spec = Spec(dir, distill::v1::HIDDEN, 1, 5);
  RankLayout layout{1, 5, 0};
  auto too_many =
      RemoteTeacher::Create(spec, *world, layout, *sc, "", RunConfig(spec), torch::kCPU);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(too_many.status().message(),
            "teacher.ranks: 5 pipeline stages, but the teacher has 4 layers");
  // A teacher rank finds the same before loading anything or talking to anyone.
  auto stage = RunTeacherStage(spec, *world, RankLayout{1, 5, 1}, torch::kCPU);
  EXPECT_EQ(stage.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(stage.status().message(),
            "teacher.ranks: 5 pipeline stages, but the teacher has 4 layers");
  ModelConfig big = *sc;
  big.vocab_size = 41;
  auto vocab = RemoteTeacher::Create(spec, *world, RankLayout{1, 2, 0}, big, "", RunConfig(spec),
                                     torch::kCPU);
  EXPECT_EQ(vocab.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(vocab.status().message()).rfind("teacher.model: ", 0), 0u)
      << vocab.status();
  TeacherRunConfig bad_layer = RunConfig(spec);
  bad_layer.capture_layers = {4};
  auto layer =
      RemoteTeacher::Create(spec, *world, RankLayout{1, 2, 0}, *sc, "", bad_layer, torch::kCPU);
  EXPECT_EQ(layer.status().code(), absl::StatusCode::kInvalidArgument);
  auto ok = RemoteTeacher::Create(spec, *world, RankLayout{1, 2, 0}, *sc, "", RunConfig(spec),
                                  torch::kCPU);
  ASSERT_TRUE(ok.ok()) << ok.status();
}

}  // namespace
}  // namespace distill::worker
