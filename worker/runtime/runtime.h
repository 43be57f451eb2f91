// One rank's part of a `distill-worker train` job: a single process, or one
// of the N = S + T ranks of `mpirun -np N distill-worker train --spec SPEC`
// (common/plan.h RankLayout). The CLI is a thin wrapper around RunJobRank.
//
// Multi-rank jobs: the world communicator is MPI. Student ranks form a
// sub-communicator (MPI) for control values, and reduce gradients over
// `comm`: mpi, nccl, or auto = NCCL when every student rank has a GPU of its
// own (CUDA devices on the host >= ranks on the host) and the build has NCCL,
// else MPI; the students agree on it by an all-reduce. Teacher ranks run
// their pipeline stage (worker/distill/teacher_pipeline.h); students reach
// them through the RemoteTeacher built here (remote_teacher.h). Threads:
// With teacher.model and teacher.cache, every rank first captures what the
// cache lacks (capture.h, Note [Capture first] in runtime.cc), then the
// students read the cache. train.threads 0 means the host's cores divided by
// the ranks on the host;
// CUDA ranks take device (local rank mod device count).
#ifndef DISTILL_WORKER_RUNTIME_RUNTIME_H_
#define DISTILL_WORKER_RUNTIME_RUNTIME_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "distill/v1/job.pb.h"
#include "common/plan.h"
#include "worker/comm/communicator.h"
#include "worker/distill/teacher_pipeline.h"
#include "worker/train/trainer.h"

namespace distill::worker {

// The world of this process: MPI (initialised here) when launched by mpirun,
// else null (one process, no MPI; a spec needing more ranks is
// FailedPrecondition saying how to launch it).
absl::StatusOr<std::unique_ptr<Communicator>> MaybeMpiWorld(const distill::v1::JobSpec& spec);

struct JobRankResult {
  common::RankLayout layout;
  bool is_student = true;
  TrainResult train;            // students
  TeacherStageStats teacher;    // teacher ranks
  std::string comm_backend;     // students' gradient all-reduce ("mpi", "nccl"; "" for one student)
};

// This process's place among the job's ranks on its host (Open MPI's or
// Slurm's local rank; 0 when neither is set).
int LocalRank();

// Runs this rank's part of a validated, defaults-filled spec. `world` null
// means one process (the spec must need one rank). `options.sinks` get every
// student rank's reports (the values of a step are the students' means but
// for StepRecord::totals, mfu and memory, which are the rank's own); teacher
// ranks report nothing.
absl::StatusOr<JobRankResult> RunJobRank(const distill::v1::JobSpec& spec, const TrainOptions& options,
                                         Communicator* world);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_RUNTIME_RUNTIME_H_
