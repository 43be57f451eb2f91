#include "coordinator/job_states.h"

#include "absl/strings/str_cat.h"

namespace distill::coordinator {
namespace {

using distill::v1::JobState;

struct LegalTransition {
  JobState from;
  JobState to;
};

// The lifecycle (job_states.h); every pair not listed is refused.
constexpr LegalTransition kLegalTransitions[] = {
    {distill::v1::QUEUED, distill::v1::STARTING},
    {distill::v1::QUEUED, distill::v1::CANCELLED},
    {distill::v1::STARTING, distill::v1::RUNNING},
    {distill::v1::STARTING, distill::v1::QUEUED},
    {distill::v1::STARTING, distill::v1::SUCCEEDED},
    {distill::v1::STARTING, distill::v1::FAILED},
    {distill::v1::STARTING, distill::v1::CANCELLED},
    {distill::v1::RUNNING, distill::v1::QUEUED},
    {distill::v1::RUNNING, distill::v1::SUCCEEDED},
    {distill::v1::RUNNING, distill::v1::FAILED},
    {distill::v1::RUNNING, distill::v1::CANCELLED},
};

}  // namespace

bool IsLegalTransition(JobState from, JobState to) {
  for (const LegalTransition& t : kLegalTransitions) {
    if (t.from == from && t.to == to) return true;
  }
  return false;
}

absl::Status CheckTransition(JobState from, JobState to) {
  if (IsLegalTransition(from, to)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("illegal job state transition ",
                                                    distill::v1::JobState_Name(from), " -> ",
                                                    distill::v1::JobState_Name(to)));
}

}  // namespace distill::coordinator
