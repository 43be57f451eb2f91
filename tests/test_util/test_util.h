// Helpers shared by the tests (library distill_test_util): temp dirs, files,
// and where the reference fixture wrote its goldens. No LibTorch here; the
// tensor helpers are reference_util.h. Not thread-safe unless stated.
#ifndef DISTILL_TESTS_TEST_UTIL_TEST_UTIL_H_
#define DISTILL_TESTS_TEST_UTIL_TEST_UTIL_H_

#include <nlohmann/json.hpp>
#include <string>

namespace distill::testing {

// A fresh empty directory under the system temp dir, unique per call
// (thread-safe).
std::string MakeTempDir(const std::string& prefix = "distill_test");

// $DISTILL_REFERENCE_DIR: where tests/reference/*.py wrote the golden models
// and numbers (ctest runs them first, as the `reference` fixture).
std::string ReferenceDir();
// ReferenceDir() + "/" + rel.
std::string ReferencePath(const std::string& rel);

// Whole file contents; empty if unreadable.
std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& contents);

// The JSON document in `path`; fails the test (and returns a discarded
// value, not an object) when the file is missing or not JSON.
nlohmann::json ReadJson(const std::string& path);

}  // namespace distill::testing

#endif  // DISTILL_TESTS_TEST_UTIL_TEST_UTIL_H_
