// Helpers shared by the worker tests: temp dirs and the reference fixture.
#ifndef DISTILL_TESTS_TEST_UTIL_H_
#define DISTILL_TESTS_TEST_UTIL_H_

#include <string>

namespace distill::testing {

// A fresh empty directory under the system temp dir, unique per call.
std::string MakeTempDir(const std::string& prefix = "distill_test");

// $DISTILL_REFERENCE_DIR: where tests/reference/make_reference.py wrote the
// golden models and numbers (ctest runs it first, as a fixture).
std::string ReferenceDir();

// Whole file contents; empty if unreadable.
std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& contents);

}  // namespace distill::testing

#endif  // DISTILL_TESTS_TEST_UTIL_H_
