// Comparing C++ tensors with golden values written by the independent
// references (tests/reference/*.py). Worker tests only (LibTorch).
#ifndef DISTILL_TESTS_TEST_UTIL_REFERENCE_UTIL_H_
#define DISTILL_TESTS_TEST_UTIL_REFERENCE_UTIL_H_

#include <torch/torch.h>

#include <string>

#include "worker/model/safetensors.h"

namespace distill::testing {

// A cloned golden tensor; fails the test (and returns undefined) if absent.
torch::Tensor Golden(const distill::worker::SafetensorsFile& file, const std::string& name);

// Fails unless max|actual - expected| <= max(rel_tol * max|expected|, abs_floor).
void ExpectAllClose(const torch::Tensor& actual, const torch::Tensor& expected, double rel_tol,
                    double abs_floor, const std::string& what);

// ||actual - expected|| / ||expected|| (Frobenius, whole tensors), in double.
double RelativeError(const torch::Tensor& actual, const torch::Tensor& expected);

}  // namespace distill::testing

#endif  // DISTILL_TESTS_TEST_UTIL_REFERENCE_UTIL_H_
