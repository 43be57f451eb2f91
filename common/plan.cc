#include "common/plan.h"

#include <filesystem>

#include "absl/strings/str_cat.h"

namespace distill::common {
namespace {

namespace fs = std::filesystem;
using distill::v1::DistillSpec;
using distill::v1::JobSpec;

// The distill block of an empty distill spec with its defaults filled: the
// defaults of TeacherRunConfig and LossConfig, written only in spec.cc.
const DistillSpec& DefaultDistill() {
  static const DistillSpec* d = [] {
    JobSpec spec;
    spec.set_type(distill::v1::DISTILL);
    return new DistillSpec(WithDefaults(spec).distill());
  }();
  return *d;
}

void FillRun(const DistillSpec& d, TeacherRunConfig* run) {
  run->transport = d.logits();
  run->top_k = d.top_k();
  run->temperature = d.temperature();
  run->chunk_tokens = d.chunk_tokens();
}

void FillLoss(const DistillSpec& d, LossConfig* loss) {
  loss->loss = d.loss();
  loss->temperature = d.temperature();
  loss->alpha = d.alpha();
  loss->t2_scale = d.t2_scale();
  loss->beta = d.beta();
  loss->chunk_tokens = d.chunk_tokens();
}

StudentSource SourceOf(const std::string& prefix, const std::string& model,
                       const std::string& init, distill::v1::TrainMethod method,
                       const distill::v1::LoraSpec& lora) {
  StudentSource s;
  s.lora = method == distill::v1::LORA;
  s.lora_spec = lora;
  s.model_dir = model;
  s.init_config = init;
  if (!model.empty()) {
    s.field = prefix + "model";
    s.config_path = (fs::path(model) / "config.json").string();
    s.dir = model;
  } else {
    s.field = prefix + "init";
    s.config_path = init;
    s.dir = fs::path(init).parent_path().string();
  }
  return s;
}

}  // namespace

std::string RankPlan::Role(int world_rank) const {
  if (world_rank < students) return absl::StrCat("student ", world_rank);
  return absl::StrCat("teacher stage ", world_rank - students);
}

std::vector<std::string> RankPlan::RankNames() const {
  std::vector<std::string> out;
  for (int r = 0; r < world(); ++r) out.push_back(absl::StrCat("rank ", r, " (", Role(r), ")"));
  return out;
}

absl::StatusOr<RankLayout> RankLayout::FromSpec(const JobSpec& spec, int world_size, int rank) {
  RankLayout l;
  static_cast<RankPlan&>(l) = PlanRanks(spec);
  l.rank = rank;
  const std::string how =
      spec.type() == distill::v1::DISTILL
          ? absl::StrCat("student.ranks ", l.students, " + teacher.ranks ", l.teachers)
          : absl::StrCat("ranks ", l.students);
  if (world_size != l.world()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the spec needs ", l.world(), l.world() == 1 ? " rank" : " ranks", " (", how,
                     ") but ", world_size, world_size == 1 ? " was" : " were",
                     " launched: run mpirun -np ", l.world(), " distill-worker train --spec SPEC"));
  }
  return l;
}

TeacherRunConfig::TeacherRunConfig() { FillRun(DefaultDistill(), this); }
TeacherRunConfig::TeacherRunConfig(const DistillSpec& distill) { FillRun(distill, this); }

LossConfig::LossConfig() { FillLoss(DefaultDistill(), this); }
LossConfig::LossConfig(const DistillSpec& distill) { FillLoss(distill, this); }

RankPlan PlanRanks(const JobSpec& spec) {
  RankPlan r;
  if (spec.type() == distill::v1::DISTILL) {
    r.students = spec.student().ranks();
    r.teachers = spec.teacher().ranks();
  } else {
    r.students = spec.ranks();
  }
  return r;
}

JobPlan MakePlan(const JobSpec& spec) {
  JobPlan p;
  p.type = spec.type();
  p.ranks = PlanRanks(spec);
  p.paths = SpecPathFields(spec);
  if (spec.type() == distill::v1::DISTILL) {
    const distill::v1::StudentSpec& st = spec.student();
    p.student = SourceOf("student.", st.model(), st.init(), st.method(), st.lora());
    p.teacher_dir = spec.teacher().model();
    p.teacher_cache = spec.teacher().cache();
    p.teacher_run = TeacherRunConfig(spec.distill());
    p.loss = LossConfig(spec.distill());
  } else {
    p.student = SourceOf("", spec.model(), spec.init(), spec.method(), spec.lora());
  }
  return p;
}

}  // namespace distill::common
