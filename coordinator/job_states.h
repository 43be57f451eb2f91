// The job lifecycle as a table: which state changes are legal. Transition()
// (coordinator.cc), the one door for state changes, refuses any other, so a
// new path through the lifecycle is a change to this table first.
//
//   QUEUED   -> STARTING | CANCELLED
//   STARTING -> RUNNING | QUEUED (retry) | SUCCEEDED | FAILED | CANCELLED
//   RUNNING  -> QUEUED (retry) | SUCCEEDED | FAILED | CANCELLED
//   SUCCEEDED, FAILED, CANCELLED: terminal, no way out.
//
// A STARTING attempt may end before any rank reports (SUCCEEDED or FAILED
// straight from STARTING). Pure functions, thread-safe.
#ifndef DISTILL_COORDINATOR_JOB_STATES_H_
#define DISTILL_COORDINATOR_JOB_STATES_H_

#include "absl/status/status.h"
#include "distill/v1/coordinator.pb.h"

namespace distill::coordinator {

// Whether the table above allows `from` -> `to`.
bool IsLegalTransition(distill::v1::JobState from, distill::v1::JobState to);

// OK for a legal transition; otherwise FailedPrecondition
// "illegal job state transition FROM -> TO" naming both states.
absl::Status CheckTransition(distill::v1::JobState from, distill::v1::JobState to);

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_JOB_STATES_H_
