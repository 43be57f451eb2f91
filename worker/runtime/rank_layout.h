// Who does what in a multi-rank job. World ranks 0 .. S-1 are the student
// ranks (data-parallel replicas; student 0 writes checkpoints, metrics and
// the output), ranks S .. S+T-1 the teacher pipeline stages 0 .. T-1. S and
// T come from the spec: finetune `ranks: S`, distill `student.ranks: S` and
// `teacher.ranks: T` (0 = the teacher colocated in each student).
#ifndef DISTILL_WORKER_RUNTIME_RANK_LAYOUT_H_
#define DISTILL_WORKER_RUNTIME_RANK_LAYOUT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "distill/v1/job.pb.h"

namespace distill::worker {

struct RankLayout {
  int students = 1;
  int teachers = 0;
  int rank = 0;  // this process's world rank

  int world() const { return students + teachers; }
  bool is_student() const { return rank < students; }
  int student_index() const { return rank; }           // students only
  int stage() const { return rank - students; }        // teachers only
  int StudentRank(int s) const { return s; }
  int StageRank(int j) const { return students + j; }
  // "student 1", "teacher stage 0".
  std::string Role(int world_rank) const;
  // "rank 3 (teacher stage 1)" for every world rank, in order.
  std::vector<std::string> RankNames() const;

  // From a validated, defaults-filled spec and the launched world. A world
  // size other than S + T is FailedPrecondition saying how to launch, e.g.
  // "the spec needs 4 ranks (student.ranks 2 + teacher.ranks 2) but 1 was
  // launched: run mpirun -np 4 distill-worker train --spec SPEC".
  static absl::StatusOr<RankLayout> FromSpec(const distill::v1::JobSpec& spec, int world_size, int rank);
  // S + T of the spec.
  static int RanksOf(const distill::v1::JobSpec& spec);
};

}  // namespace distill::worker

#endif  // DISTILL_WORKER_RUNTIME_RANK_LAYOUT_H_
