// The job lifecycle table: walks every (from, to) pair of JobState values,
// the proto's own list, so a state added later is covered too.
#include "coordinator/job_states.h"

#include <gtest/gtest.h>

#include <set>
#include <utility>

namespace distill::coordinator {
namespace {

using distill::v1::JobState;

// The lifecycle written out independently of job_states.cc: a launched job
// (TRAIN, CAPTURE) and a sweep's parent.
std::set<std::pair<JobState, JobState>> Expected(distill::v1::JobKind kind) {
  if (kind == distill::v1::SWEEP) {
    return {
        {distill::v1::QUEUED, distill::v1::RUNNING},    {distill::v1::QUEUED, distill::v1::FAILED},
        {distill::v1::QUEUED, distill::v1::CANCELLED},  {distill::v1::RUNNING, distill::v1::SUCCEEDED},
        {distill::v1::RUNNING, distill::v1::FAILED},    {distill::v1::RUNNING, distill::v1::CANCELLED},
    };
  }
  return {
      {distill::v1::QUEUED, distill::v1::STARTING},    {distill::v1::QUEUED, distill::v1::CANCELLED},
      {distill::v1::QUEUED, distill::v1::FAILED},      {distill::v1::STARTING, distill::v1::RUNNING},
      {distill::v1::STARTING, distill::v1::QUEUED},    {distill::v1::STARTING, distill::v1::SUCCEEDED},
      {distill::v1::STARTING, distill::v1::FAILED},    {distill::v1::STARTING, distill::v1::CANCELLED},
      {distill::v1::RUNNING, distill::v1::QUEUED},     {distill::v1::RUNNING, distill::v1::SUCCEEDED},
      {distill::v1::RUNNING, distill::v1::FAILED},     {distill::v1::RUNNING, distill::v1::CANCELLED},
  };
}

TEST(JobStatesTest, EveryPairIsAcceptedExactlyWhenTheTableSaysSo) {
  const google::protobuf::EnumDescriptor* states = distill::v1::JobState_descriptor();
  ASSERT_GE(states->value_count(), 7);
  for (auto kind : {distill::v1::JOB_KIND_UNSPECIFIED, distill::v1::TRAIN, distill::v1::CAPTURE,
                    distill::v1::SWEEP}) {
    const auto expected = Expected(kind);
    const std::string suffix = kind == distill::v1::SWEEP ? " (sweep)" : "";
    int accepted = 0;
    for (int i = 0; i < states->value_count(); ++i) {
      for (int j = 0; j < states->value_count(); ++j) {
        const auto from = static_cast<JobState>(states->value(i)->number());
        const auto to = static_cast<JobState>(states->value(j)->number());
        const std::string pair = states->value(i)->name() + " -> " + states->value(j)->name();
        const bool legal = expected.count({from, to}) > 0;
        EXPECT_EQ(IsLegalTransition(from, to, kind), legal) << pair << suffix;
        absl::Status st = CheckTransition(from, to, kind);
        if (legal) {
          EXPECT_TRUE(st.ok()) << pair << ": " << st;
          ++accepted;
        } else {
          EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << pair;
          EXPECT_EQ(st.message(), "illegal job state transition " + pair + suffix);
        }
      }
    }
    EXPECT_EQ(accepted, static_cast<int>(expected.size()));
  }
}

TEST(JobStatesTest, TerminalStatesHaveNoWayOut) {
  for (JobState from : {distill::v1::SUCCEEDED, distill::v1::FAILED, distill::v1::CANCELLED}) {
    for (int to = distill::v1::JobState_MIN; to <= distill::v1::JobState_MAX; ++to) {
      for (auto kind : {distill::v1::TRAIN, distill::v1::SWEEP}) {
        EXPECT_FALSE(IsLegalTransition(from, static_cast<JobState>(to), kind))
            << distill::v1::JobState_Name(from) << " -> " << to;
      }
    }
  }
}

}  // namespace
}  // namespace distill::coordinator
