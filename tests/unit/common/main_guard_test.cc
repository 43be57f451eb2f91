#include "common/main_guard.h"

#include <gtest/gtest.h>

#include <new>

namespace distill::common {
namespace {

TEST(MainGuardTest, AnExceptionIsOneLineAndExitStatusOne) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(RunCatchingExceptions("prog", []() -> int { throw std::bad_alloc(); }), 1);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "prog: internal error: std::bad_alloc\n");
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(RunCatchingExceptions("prog", []() -> int { throw 42; }), 1);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(),
            "prog: internal error: an unknown exception\n");
}

TEST(MainGuardTest, TheExitStatusOfAMainThatReturnsIsKept) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(RunCatchingExceptions("prog", [] { return 0; }), 0);
  EXPECT_EQ(RunCatchingExceptions("prog", [] { return 65; }), 65);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

}  // namespace
}  // namespace distill::common
