// The job lifecycle as a table: which state changes are legal, per kind of
// job. Transition() (coordinator.cc), the one door for state changes,
// refuses any other, so a new path through the lifecycle is a change to this
// table first.
//
// A launched job (TRAIN, CAPTURE):
//   QUEUED   -> STARTING | CANCELLED | FAILED (a sweep child whose teacher
//               capture failed: DEPENDENCY_FAILED)
//   STARTING -> RUNNING | QUEUED (retry) | SUCCEEDED | FAILED | CANCELLED
//   RUNNING  -> QUEUED (retry) | SUCCEEDED | FAILED | CANCELLED
// A sweep's parent (SWEEP), never launched; its state follows its children:
//   QUEUED   -> RUNNING (a child started) | FAILED | CANCELLED
//   RUNNING  -> SUCCEEDED | FAILED | CANCELLED
// SUCCEEDED, FAILED, CANCELLED: terminal, no way out.
//
// A STARTING attempt may end before any rank reports (SUCCEEDED or FAILED
// straight from STARTING). Pure functions, thread-safe.
#ifndef DISTILL_COORDINATOR_JOB_STATES_H_
#define DISTILL_COORDINATOR_JOB_STATES_H_

#include "absl/status/status.h"
#include "distill/v1/coordinator.pb.h"

namespace distill::coordinator {

// Whether the table above allows `from` -> `to` for a job of `kind`
// (JOB_KIND_UNSPECIFIED means TRAIN).
bool IsLegalTransition(distill::v1::JobState from, distill::v1::JobState to,
                       distill::v1::JobKind kind = distill::v1::TRAIN);

// OK for a legal transition; otherwise FailedPrecondition
// "illegal job state transition FROM -> TO" naming both states (and the
// kind, for a sweep).
absl::Status CheckTransition(distill::v1::JobState from, distill::v1::JobState to,
                             distill::v1::JobKind kind = distill::v1::TRAIN);

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_JOB_STATES_H_
