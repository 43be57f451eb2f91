#include "tests/test_util/reference_util.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace distill::testing {

torch::Tensor Golden(const distill::worker::SafetensorsFile& file, const std::string& name) {
  auto t = file.Get(name);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? t->clone() : torch::Tensor();
}

void ExpectAllClose(const torch::Tensor& actual, const torch::Tensor& expected, double rel_tol,
                    double abs_floor, const std::string& what) {
  ASSERT_TRUE(actual.defined()) << what << ": no value";
  ASSERT_TRUE(expected.defined()) << what << ": no reference";
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  torch::Tensor a = actual.detach().to(torch::kCPU, torch::kDouble);
  torch::Tensor b = expected.to(torch::kDouble);
  const double err = (a - b).abs().max().item<double>();
  const double scale = b.abs().max().item<double>();
  EXPECT_LE(err, std::max(rel_tol * scale, abs_floor))
      << what << ": max |diff| " << err << ", max |reference| " << scale;
}

double RelativeError(const torch::Tensor& actual, const torch::Tensor& expected) {
  torch::Tensor a = actual.detach().to(torch::kCPU, torch::kDouble);
  torch::Tensor b = expected.detach().to(torch::kCPU, torch::kDouble);
  return (a - b).norm().item<double>() / b.norm().item<double>();
}

}  // namespace distill::testing
