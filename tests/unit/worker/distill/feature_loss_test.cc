// FeatureLoss and FeatureProjection against golden numbers from an
// independent reference (tests/reference/make_kd_reference.py: float64,
// autograd), plus the projection's deterministic init and the error cases.
#include "worker/distill/feature_loss.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/test_util/reference_util.h"
#include "tests/test_util/test_util.h"
#include "worker/model/safetensors.h"

namespace distill::worker {
namespace {

namespace v1 = distill::v1;
using distill::testing::Golden;

// Float32 against the float64 reference on the same float32 inputs:
// max|a - b| <= 1e-5 * max|b| (Note [KD tolerance] in kd_loss_test.cc),
// absolute floors 1e-7 (loss) and 1e-8 (gradients, which are divided by
// N * d or N).
constexpr double kRelTol = 1e-5;

std::shared_ptr<SafetensorsFile> OpenReference(nlohmann::json* cases) {
  const std::string dir = distill::testing::ReferenceDir() + "/kd";
  *cases = nlohmann::json::parse(distill::testing::ReadFile(dir + "/cases.json"), nullptr, false);
  EXPECT_TRUE(cases->is_object()) << dir << "/cases.json";
  auto file = SafetensorsFile::Open(dir + "/kd.safetensors");
  EXPECT_TRUE(file.ok()) << file.status();
  return file.ok() ? *std::move(file) : nullptr;
}

TEST(FeatureLossTest, MatchesReference) {
  nlohmann::json cases;
  auto ref = OpenReference(&cases);
  ASSERT_NE(ref, nullptr);
  int n = 0;
  for (const auto& c : cases.at("feature")) {
    const std::string name = c.at("name").get<std::string>();
    SCOPED_TRACE(name);
    torch::Tensor s = Golden(*ref, "input.feat.s").requires_grad_(true);
    const torch::Tensor t = Golden(*ref, "input." + c.at("teacher").get<std::string>());
    std::shared_ptr<FeatureProjection> proj;
    if (c.at("proj").get<bool>()) {
      proj = std::make_shared<FeatureProjection>(s.size(1), t.size(1), /*seed=*/1);
      torch::NoGradGuard no_grad;
      proj->weight().copy_(Golden(*ref, "input.feat.proj"));
    }
    const auto kind = c.at("kind").get<std::string>() == "cosine" ? v1::COSINE : v1::MSE;
    auto loss = FeatureLoss(s, t, proj.get(), kind);
    ASSERT_TRUE(loss.ok()) << loss.status();
    EXPECT_EQ(loss->dim(), 0);
    loss->backward();
    using distill::testing::ExpectAllClose;
    ExpectAllClose(*loss, Golden(*ref, "golden." + name + ".loss"), kRelTol, 1e-7, name + " loss");
    ExpectAllClose(s.grad(), Golden(*ref, "golden." + name + ".grad_s"), kRelTol, 1e-8,
                   name + " grad_s");
    if (proj != nullptr) {
      ExpectAllClose(proj->weight().grad(), Golden(*ref, "golden." + name + ".grad_proj"), kRelTol,
                     1e-8, name + " grad_proj");
    }
    ++n;
  }
  EXPECT_EQ(n, 4);  // MSE and cosine, each with and without a projection
}

TEST(FeatureLossTest, UnspecifiedKindIsMseAndTeacherGetsNoGradient) {
  torch::manual_seed(3);
  const torch::Tensor s = torch::randn({6, 4});
  torch::Tensor t = torch::randn({6, 4}).requires_grad_(true);
  auto mse = FeatureLoss(s, t, nullptr, v1::MSE);
  auto unspecified = FeatureLoss(s, t, nullptr, v1::FEATURE_LOSS_UNSPECIFIED);
  ASSERT_TRUE(mse.ok() && unspecified.ok());
  EXPECT_EQ(mse->item<float>(), unspecified->item<float>());
  EXPECT_FALSE(mse->requires_grad());  // the teacher's state is detached
}

TEST(FeatureLossTest, ProjectionIsDeterministicPerSeed) {
  torch::manual_seed(0);
  const torch::Tensor before = torch::rand({1});
  FeatureProjection a(8, 12, 17), b(8, 12, 17), c(8, 12, 18);
  torch::manual_seed(0);
  EXPECT_TRUE(torch::equal(torch::rand({1}), before)) << "the global RNG must be untouched";
  EXPECT_TRUE(torch::equal(a.weight(), b.weight()));
  EXPECT_FALSE(torch::equal(a.weight(), c.weight()));
  EXPECT_EQ(a.weight().sizes(), (std::vector<int64_t>{12, 8}));
  EXPECT_LE(a.weight().abs().max().item<double>(), 1.0 / std::sqrt(8.0));
  EXPECT_EQ(a.in_features(), 8);
  EXPECT_EQ(a.out_features(), 12);
  const auto params = a.named_parameters();
  ASSERT_EQ(params.size(), 1u);
  EXPECT_EQ(params.begin()->key(), "proj.weight");
  EXPECT_TRUE(params.begin()->value().requires_grad());
}

TEST(FeatureLossTest, BadInputsAreInvalidArgument) {
  const torch::Tensor s = torch::randn({5, 8}), t_same = torch::randn({5, 8}),
                      t_wide = torch::randn({5, 12});
  FeatureProjection proj(8, 12, 1), wrong(8, 10, 1);
  auto expect_invalid = [](const absl::StatusOr<torch::Tensor>& r, const std::string& needle) {
    ASSERT_FALSE(r.ok()) << needle;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_NE(std::string(r.status().message()).find(needle), std::string::npos) << r.status();
  };
  expect_invalid(FeatureLoss(s, t_wide, nullptr, v1::MSE), "no projection");
  expect_invalid(FeatureLoss(s, t_wide, &wrong, v1::COSINE), "projection maps 8 -> 10");
  expect_invalid(FeatureLoss(s, t_same.narrow(0, 0, 4), nullptr, v1::MSE), "teacher hidden");
  expect_invalid(FeatureLoss(s.unsqueeze(0), t_same, nullptr, v1::MSE), "student hidden");
  expect_invalid(FeatureLoss(s.narrow(0, 0, 0), t_same.narrow(0, 0, 0), nullptr, v1::MSE),
                 "no tokens");
  EXPECT_TRUE(FeatureLoss(s, t_wide, &proj, v1::MSE).ok());
}

}  // namespace
}  // namespace distill::worker
