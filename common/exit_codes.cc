#include "common/exit_codes.h"

#include "absl/strings/match.h"

namespace distill::common {

bool NamesDiskRefusal(absl::string_view text) {
  for (absl::string_view words : {"No space left on device", "Read-only file system",
                                  "Disk quota exceeded", "Permission denied"}) {
    if (absl::StrContains(text, words)) return true;
  }
  return false;
}

int ExitCodeFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 0;
    case absl::StatusCode::kCancelled:
      return kExitStopped;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kPermissionDenied:
      return kExitDeterministic;
    default:
      return NamesDiskRefusal(status.message()) ? kExitDeterministic : kExitFailed;
  }
}

}  // namespace distill::common
