#include "worker/runtime/runtime.h"

#include <cstdlib>
#include <iostream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/comm/mpi_communicator.h"
#include "worker/comm/nccl_communicator.h"
#include "worker/distill/distill_trainer.h"
#include "worker/distill/remote_teacher.h"
#include "worker/runtime/capture.h"

namespace distill::worker {
using distill::v1::JobSpec;

namespace {

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  int out = 0;
  if (v == nullptr || !absl::SimpleAtoi(v, &out)) return fallback;
  return out;
}

// Ranks of this job on this host.
int LocalSize() { return std::max(1, EnvInt("OMPI_COMM_WORLD_LOCAL_SIZE", EnvInt("SLURM_NTASKS_PER_NODE", 1))); }

bool WantsCuda(const JobSpec& spec) {
  return spec.train().device() != "cpu" && torch::cuda::is_available();
}

// The students' end of the dedicated teacher ranks; null (the colocated
// teacher) with teacher.ranks 0.
TeacherFactory RemoteTeacherFactory(const JobSpec& spec, Communicator& world,
                                    const common::RankLayout& layout) {
  if (layout.teachers == 0) return nullptr;
  return [&spec, &world, &layout](const TeacherSetup& s) -> absl::StatusOr<std::unique_ptr<Teacher>> {
    ASSIGN_OR_RETURN(std::unique_ptr<RemoteTeacher> remote,
                     RemoteTeacher::Create(spec, world, layout, s.student, s.student_dir, s.run, s.device));
    return std::unique_ptr<Teacher>(std::move(remote));
  };
}

}  // namespace

int LocalRank() { return EnvInt("OMPI_COMM_WORLD_LOCAL_RANK", EnvInt("SLURM_LOCALID", 0)); }

absl::StatusOr<std::unique_ptr<Communicator>> MaybeMpiWorld(const JobSpec& spec) {
  if (!LaunchedByMpirun()) {
    // Not under mpirun: one process, so the spec must need one rank (the
    // same message as a wrong -np).
    RETURN_IF_ERROR(common::RankLayout::FromSpec(spec, 1, 0).status());
    return std::unique_ptr<Communicator>();
  }
  RETURN_IF_ERROR(InitMpi(nullptr, nullptr));
  return MpiWorld(spec.runtime().timeout_s());
}

absl::StatusOr<JobRankResult> RunJobRank(const JobSpec& spec_in, const TrainOptions& options_in,
                                         Communicator* world) {
  JobRankResult out;
  ASSIGN_OR_RETURN(out.layout, common::RankLayout::FromSpec(spec_in, world ? world->size() : 1,
                                                            world ? world->rank() : 0));
  const common::RankLayout& layout = out.layout;
  // Note [Capture first]: a distill job with both teacher.model and
  // teacher.cache (teacher.ranks 0: every rank a student) captures what the
  // cache lacks on all its ranks, then trains from the cache.
  const bool capture_first = spec_in.type() == distill::v1::DISTILL &&
                             !spec_in.teacher().model().empty() && !spec_in.teacher().cache().empty();
  if (layout.world() == 1) {
    if (capture_first) RETURN_IF_ERROR(RunCapture(spec_in, nullptr, std::cout).status());
    if (spec_in.type() == distill::v1::DISTILL) {
      ASSIGN_OR_RETURN(out.train, RunDistill(spec_in, options_in));
    } else {
      ASSIGN_OR_RETURN(out.train, RunFinetune(spec_in, options_in));
    }
    return out;
  }

  SetMpiRankNames(layout.RankNames());
  JobSpec spec = spec_in;
  // Ranks on one host share its cores.
  if (spec.train().threads() == 0) {
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    spec.mutable_train()->set_threads(std::max(1, cores / LocalSize()));
  }
  if (capture_first) RETURN_IF_ERROR(RunCapture(spec, world, std::cout).status());  // Note [Capture first]
  const bool cuda = WantsCuda(spec);
  const int devices = cuda ? static_cast<int>(torch::cuda::device_count()) : 0;
  const int device_index = cuda ? LocalRank() % devices : 0;

  // Collective over the world: students get their communicator, teachers null.
  ASSIGN_OR_RETURN(std::unique_ptr<Communicator> students,
                   world->Split(layout.is_student() ? 0 : -1, layout.rank));

  if (!layout.is_student()) {
    out.is_student = false;
    at::set_num_threads(spec.train().threads());
    const torch::Device device = cuda ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(device_index))
                                      : torch::Device(torch::kCPU);
    ASSIGN_OR_RETURN(out.teacher, RunTeacherStage(spec, *world, layout, device));
    return out;
  }

  TrainOptions options = options_in;
  options.cuda_device = device_index;
  options.bucket_bytes = static_cast<int64_t>(spec.runtime().bucket_mb() * (1 << 20));
  options.sync_check_every = spec.runtime().sync_check_every();
  std::unique_ptr<Communicator> nccl;
  if (layout.students > 1) {
    options.students = students.get();
    // Every student rank must agree on the backend.
    const bool own_gpu = cuda && NcclAvailable() && LocalSize() <= devices;
    bool use_nccl = spec.comm() == distill::v1::COMM_NCCL;
    if (spec.comm() == distill::v1::COMM_AUTO) {
      torch::Tensor ok = torch::tensor(std::vector<double>{own_gpu ? 1.0 : 0.0}, torch::kDouble);
      RETURN_IF_ERROR(students->AllReduce(ok, ReduceOp::kSum, "comm backend choice"));
      use_nccl = ok.item<double>() > layout.students - 0.5;
    }
    if (use_nccl) {
      if (!cuda) return absl::FailedPreconditionError("comm: nccl needs a CUDA device on every student rank");
      ASSIGN_OR_RETURN(nccl, MakeNcclCommunicator(*students, device_index, spec.runtime().timeout_s()));
      options.grads = nccl.get();
    } else {
      options.grads = students.get();
    }
    out.comm_backend = options.grads->backend();
  }
  if (spec.type() == distill::v1::DISTILL) {
    ASSIGN_OR_RETURN(out.train, RunDistill(spec, options, RemoteTeacherFactory(spec, *world, layout)));
  } else {
    ASSIGN_OR_RETURN(out.train, RunFinetune(spec, options));
  }
  return out;
}

}  // namespace distill::worker
