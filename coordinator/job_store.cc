#include "coordinator/job_store.h"

#include <utility>

namespace distill::coordinator {

using distill::v1::Job;
using distill::v1::JobEvent;

namespace {

// PROGRESS's fields of `job` (Note [Small events]).
Job ProgressFields(const Job& job) {
  Job out;
  out.set_id(job.id());
  out.set_state(job.state());
  out.set_attempt(job.attempt());
  *out.mutable_progress() = job.progress();
  *out.mutable_update_time() = job.update_time();
  out.mutable_spec()->set_type(job.spec().type());
  return out;
}

}  // namespace

void ReduceEventJob(JobEvent::Kind kind, Job* job) {
  if (kind == JobEvent::PROGRESS) {
    *job = ProgressFields(*job);
    return;
  }
  const distill::v1::JobType type = job->spec().type();
  std::string name = std::move(*job->mutable_spec()->mutable_name());
  job->clear_spec();
  job->mutable_spec()->set_name(std::move(name));
  job->mutable_spec()->set_type(type);
}

Job EventJob(const Job& job, JobEvent::Kind kind) {
  if (kind == JobEvent::PROGRESS) return ProgressFields(job);
  Job out = job;  // a state change is rare: the spec's copy costs little
  ReduceEventJob(kind, &out);
  return out;
}

}  // namespace distill::coordinator
