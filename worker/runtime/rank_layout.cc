#include "worker/runtime/rank_layout.h"

#include "absl/strings/str_cat.h"

namespace distill::worker {

std::string RankLayout::Role(int world_rank) const {
  if (world_rank < students) return absl::StrCat("student ", world_rank);
  return absl::StrCat("teacher stage ", world_rank - students);
}

std::vector<std::string> RankLayout::RankNames() const {
  std::vector<std::string> out;
  for (int r = 0; r < world(); ++r) out.push_back(absl::StrCat("rank ", r, " (", Role(r), ")"));
  return out;
}

int RankLayout::RanksOf(const distill::v1::JobSpec& spec) {
  if (spec.type() == distill::v1::DISTILL) return spec.student().ranks() + spec.teacher().ranks();
  return spec.ranks();
}

absl::StatusOr<RankLayout> RankLayout::FromSpec(const distill::v1::JobSpec& spec, int world_size, int rank) {
  RankLayout l;
  l.rank = rank;
  std::string how;
  if (spec.type() == distill::v1::DISTILL) {
    l.students = spec.student().ranks();
    l.teachers = spec.teacher().ranks();
    how = absl::StrCat("student.ranks ", l.students, " + teacher.ranks ", l.teachers);
  } else {
    l.students = spec.ranks();
    how = absl::StrCat("ranks ", l.students);
  }
  if (world_size != l.world()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the spec needs ", l.world(), l.world() == 1 ? " rank" : " ranks", " (", how, ") but ", world_size,
        world_size == 1 ? " was" : " were", " launched: run mpirun -np ", l.world(),
        " distill-worker train --spec SPEC"));
  }
  return l;
}

}  // namespace distill::worker
