#include "coordinator/job_states.h"

#include "absl/strings/str_cat.h"

namespace distill::coordinator {
namespace {

using distill::v1::JobKind;
using distill::v1::JobState;

// Which kinds a row applies to.
enum Kinds : unsigned { kLaunched = 1, kSweep = 2, kAll = kLaunched | kSweep };

struct LegalTransition {
  JobState from;
  JobState to;
  unsigned kinds;
};

// The lifecycle (job_states.h); every pair not listed is refused.
constexpr LegalTransition kLegalTransitions[] = {
    {distill::v1::QUEUED, distill::v1::STARTING, kLaunched},
    {distill::v1::QUEUED, distill::v1::CANCELLED, kAll},
    {distill::v1::QUEUED, distill::v1::FAILED, kAll},
    {distill::v1::QUEUED, distill::v1::RUNNING, kSweep},
    {distill::v1::STARTING, distill::v1::RUNNING, kLaunched},
    {distill::v1::STARTING, distill::v1::QUEUED, kLaunched},
    {distill::v1::STARTING, distill::v1::SUCCEEDED, kLaunched},
    {distill::v1::STARTING, distill::v1::FAILED, kLaunched},
    {distill::v1::STARTING, distill::v1::CANCELLED, kLaunched},
    {distill::v1::RUNNING, distill::v1::QUEUED, kLaunched},
    {distill::v1::RUNNING, distill::v1::SUCCEEDED, kAll},
    {distill::v1::RUNNING, distill::v1::FAILED, kAll},
    {distill::v1::RUNNING, distill::v1::CANCELLED, kAll},
};

unsigned KindBit(JobKind kind) { return kind == distill::v1::SWEEP ? kSweep : kLaunched; }

}  // namespace

bool IsLegalTransition(JobState from, JobState to, JobKind kind) {
  for (const LegalTransition& t : kLegalTransitions) {
    if (t.from == from && t.to == to && (t.kinds & KindBit(kind)) != 0) return true;
  }
  return false;
}

absl::Status CheckTransition(JobState from, JobState to, JobKind kind) {
  if (IsLegalTransition(from, to, kind)) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("illegal job state transition ", distill::v1::JobState_Name(from), " -> ",
                   distill::v1::JobState_Name(to), kind == distill::v1::SWEEP ? " (sweep)" : ""));
}

}  // namespace distill::coordinator
