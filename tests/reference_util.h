// Comparing C++ tensors with golden values written by the independent
// reference (tests/reference/make_reference.py). Worker tests only.
#ifndef DISTILL_TESTS_REFERENCE_UTIL_H_
#define DISTILL_TESTS_REFERENCE_UTIL_H_

#include <torch/torch.h>

#include <string>

#include "worker/model/safetensors.h"

namespace distill::testing {

// A cloned golden tensor; fails the test (and returns undefined) if absent.
torch::Tensor Golden(const distill::worker::SafetensorsFile& file, const std::string& name);

// Fails unless max|actual - expected| <= max(rel_tol * max|expected|, abs_floor).
void ExpectAllClose(const torch::Tensor& actual, const torch::Tensor& expected, double rel_tol,
                    double abs_floor, const std::string& what);

}  // namespace distill::testing

#endif  // DISTILL_TESTS_REFERENCE_UTIL_H_
