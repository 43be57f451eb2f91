// The job lifecycle table: walks every (from, to) pair of JobState values,
// the proto's own list, so a state added later is covered too.
#include "coordinator/job_states.h"

#include <gtest/gtest.h>

#include <set>
#include <utility>

namespace distill::coordinator {
namespace {

using distill::v1::JobState;

// The lifecycle written out independently of job_states.cc.
const std::set<std::pair<JobState, JobState>>& Expected() {
  static const auto* legal = new std::set<std::pair<JobState, JobState>>{
      {distill::v1::QUEUED, distill::v1::STARTING},    {distill::v1::QUEUED, distill::v1::CANCELLED},
      {distill::v1::STARTING, distill::v1::RUNNING},   {distill::v1::STARTING, distill::v1::QUEUED},
      {distill::v1::STARTING, distill::v1::SUCCEEDED}, {distill::v1::STARTING, distill::v1::FAILED},
      {distill::v1::STARTING, distill::v1::CANCELLED}, {distill::v1::RUNNING, distill::v1::QUEUED},
      {distill::v1::RUNNING, distill::v1::SUCCEEDED},  {distill::v1::RUNNING, distill::v1::FAILED},
      {distill::v1::RUNNING, distill::v1::CANCELLED},
  };
  return *legal;
}

TEST(JobStatesTest, EveryPairIsAcceptedExactlyWhenTheTableSaysSo) {
  const google::protobuf::EnumDescriptor* states = distill::v1::JobState_descriptor();
  ASSERT_GE(states->value_count(), 7);
  int accepted = 0;
  for (int i = 0; i < states->value_count(); ++i) {
    for (int j = 0; j < states->value_count(); ++j) {
      const auto from = static_cast<JobState>(states->value(i)->number());
      const auto to = static_cast<JobState>(states->value(j)->number());
      const std::string pair = states->value(i)->name() + " -> " + states->value(j)->name();
      const bool legal = Expected().count({from, to}) > 0;
      EXPECT_EQ(IsLegalTransition(from, to), legal) << pair;
      absl::Status st = CheckTransition(from, to);
      if (legal) {
        EXPECT_TRUE(st.ok()) << pair << ": " << st;
        ++accepted;
      } else {
        EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << pair;
        EXPECT_EQ(st.message(), "illegal job state transition " + pair);
      }
    }
  }
  EXPECT_EQ(accepted, static_cast<int>(Expected().size()));
}

TEST(JobStatesTest, TerminalStatesHaveNoWayOut) {
  for (JobState from : {distill::v1::SUCCEEDED, distill::v1::FAILED, distill::v1::CANCELLED}) {
    for (int to = distill::v1::JobState_MIN; to <= distill::v1::JobState_MAX; ++to) {
      EXPECT_FALSE(IsLegalTransition(from, static_cast<JobState>(to)))
          << distill::v1::JobState_Name(from) << " -> " << to;
    }
  }
}

}  // namespace
}  // namespace distill::coordinator
