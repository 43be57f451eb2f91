// Note [Exit codes]: which errors a retry would repeat.
#include "common/exit_codes.h"

#include <gtest/gtest.h>

namespace distill::common {
namespace {

TEST(ExitCodesTest, InputErrorsAreDeterministicTransientOnesAreNot) {
  EXPECT_EQ(ExitCodeFor(absl::OkStatus()), 0);
  EXPECT_EQ(ExitCodeFor(absl::CancelledError("stopped by signal")), kExitStopped);
  for (const absl::Status& s : {absl::InvalidArgumentError("spec.yaml: train.lr: must be > 0"),
                                absl::NotFoundError("data.bin: cannot open"),
                                absl::FailedPreconditionError("out: belongs to job j1"),
                                absl::PermissionDeniedError("out: cannot create"),
                                absl::OutOfRangeError("token id"), absl::AlreadyExistsError("x")}) {
    EXPECT_EQ(ExitCodeFor(s), kExitDeterministic) << s;
  }
  for (const absl::Status& s :
       {absl::InternalError("LibTorch: CUDA error: an illegal memory access"),
        absl::UnavailableError("peer rank 1 lost"), absl::DeadlineExceededError("barrier")}) {
    EXPECT_EQ(ExitCodeFor(s), kExitFailed) << s;
  }
}

TEST(ExitCodesTest, ADiskRefusalInAnyErrorIsDeterministic) {
  EXPECT_EQ(
      ExitCodeFor(absl::InternalError("out/model.tmp.7: write failed: No space left on device")),
      kExitDeterministic);
  EXPECT_EQ(ExitCodeFor(absl::InternalError("rename: Read-only file system")), kExitDeterministic);
  EXPECT_TRUE(NamesDiskRefusal("x: Disk quota exceeded"));
  EXPECT_TRUE(NamesDiskRefusal("open: Permission denied"));
  EXPECT_FALSE(NamesDiskRefusal("connection reset by peer"));
}

}  // namespace
}  // namespace distill::common
