#include "common/plan.h"

#include <gtest/gtest.h>

namespace distill::common {
namespace {

using distill::v1::JobSpec;

// A validated, defaults-filled spec from YAML text.
JobSpec Load(const std::string& text) {
  auto spec = ParseJobSpec(text, "test.yaml");
  EXPECT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(ValidateJobSpec(*spec).ok()) << ValidateJobSpec(*spec);
  return WithDefaults(*spec);
}

constexpr char kDistill[] = R"(
type: distill
teacher: {model: /m/teacher, ranks: 2}
student: {init: /m/student/config.json, ranks: 3}
distill: {temperature: 4, alpha: 0.25, loss: jsd, beta: 0.3, t2_scale: false, logits: topk, top_k: 8,
          chunk_tokens: 16}
data: {train: [/d/a.bin, /d/b.bin], eval: /d/v.bin, tokenizer: /m/teacher/tokenizer.json}
output: /out
)";

TEST(PlanTest, DistillRanksAndRoles) {
  const JobPlan plan = MakePlan(Load(kDistill));
  EXPECT_EQ(plan.ranks.students, 3);
  EXPECT_EQ(plan.ranks.teachers, 2);
  EXPECT_EQ(plan.ranks.world(), 5);
  EXPECT_EQ(plan.ranks.StudentRank(2), 2);
  EXPECT_EQ(plan.ranks.StageRank(1), 4);
  EXPECT_EQ(plan.ranks.Role(2), "student 2");
  EXPECT_EQ(plan.ranks.Role(3), "teacher stage 0");
  EXPECT_EQ(
      plan.ranks.RankNames(),
      (std::vector<std::string>{"rank 0 (student 0)", "rank 1 (student 1)", "rank 2 (student 2)",
                                "rank 3 (teacher stage 0)", "rank 4 (teacher stage 1)"}));
}

TEST(PlanTest, RanksFollowTheSpecDefaults) {
  JobSpec distill = Load(R"(
type: distill
teacher: {model: /t}
student: {model: /s}
data: {train: /d.bin}
output: /o
)");
  EXPECT_EQ(PlanRanks(distill).students, 1);
  EXPECT_EQ(PlanRanks(distill).teachers, 0);
  JobSpec finetune =
      Load("type: finetune\nmodel: /s\ndata: {train: /d.bin}\noutput: /o\nranks: 4\n");
  EXPECT_EQ(PlanRanks(finetune).world(), 4);
  EXPECT_EQ(PlanRanks(finetune).teachers, 0);
}

TEST(PlanTest, LayoutNamesTheLaunchItNeeds) {
  const JobSpec spec = Load(kDistill);
  auto ok = RankLayout::FromSpec(spec, 5, 3);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_FALSE(ok->is_student());
  EXPECT_EQ(ok->stage(), 0);
  auto student = RankLayout::FromSpec(spec, 5, 1);
  ASSERT_TRUE(student.ok());
  EXPECT_TRUE(student->is_student());
  EXPECT_EQ(student->student_index(), 1);
  auto bad = RankLayout::FromSpec(spec, 1, 0);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(bad.status().message(),
            "the spec needs 5 ranks (student.ranks 3 + teacher.ranks 2) but 1 was launched: run "
            "mpirun -np 5 distill-worker train --spec SPEC");
}

TEST(PlanTest, PathFieldsListEveryNonEmptyPath) {
  const JobPlan plan = MakePlan(Load(kDistill));
  std::vector<std::string> got;
  for (const PathField& f : plan.paths)
    got.push_back(f.field + "=" + f.path + (f.output ? " (out)" : ""));
  EXPECT_EQ(got, (std::vector<std::string>{
                     "teacher.model=/m/teacher", "student.init=/m/student/config.json",
                     "data.train[0]=/d/a.bin", "data.train[1]=/d/b.bin", "data.eval[0]=/d/v.bin",
                     "data.tokenizer=/m/teacher/tokenizer.json", "output=/out (out)"}));
}

TEST(PlanTest, ResolveSpecPathsResolvesThePathFields) {
  JobSpec spec = Load(R"(
type: distill
teacher: {model: t}
student: {model: s}
data: {train: d.bin, tokenizer: tok.json}
output: o
)");
  ResolveSpecPaths("/base", &spec);
  for (const PathField& f : MakePlan(spec).paths) {
    EXPECT_EQ(f.path.rfind("/base/", 0), 0u) << f.field << " " << f.path;
  }
  EXPECT_EQ(MakePlan(spec).paths.size(), 5u);
}

TEST(PlanTest, StudentSource) {
  const JobPlan init = MakePlan(Load(kDistill));
  EXPECT_EQ(init.student.field, "student.init");
  EXPECT_EQ(init.student.config_path, "/m/student/config.json");
  EXPECT_EQ(init.student.dir, "/m/student");
  EXPECT_TRUE(init.student.model_dir.empty());
  const JobPlan model =
      MakePlan(Load("type: finetune\nmodel: /s\ndata: {train: /d.bin}\noutput: /o\n"));
  EXPECT_EQ(model.student.field, "model");
  EXPECT_EQ(model.student.config_path, "/s/config.json");
  EXPECT_EQ(model.student.dir, "/s");
  EXPECT_FALSE(model.student.lora);
}

TEST(PlanTest, StudentMethodIsTheJobTypes) {
  const JobPlan finetune = MakePlan(
      Load("type: finetune\nmodel: /s\nmethod: lora\nlora: {rank: 4}\ndata: {train: /d.bin}\n"
           "output: /o\n"));
  EXPECT_TRUE(finetune.student.lora);
  EXPECT_EQ(finetune.student.lora_spec.rank(), 4);
  const JobPlan distill = MakePlan(Load(
      "type: distill\nteacher: {model: /t}\nstudent: {model: /s, method: lora, lora: {rank: 2}}\n"
      "data: {train: /d.bin}\noutput: /o\n"));
  EXPECT_TRUE(distill.student.lora);
  EXPECT_EQ(distill.student.lora_spec.rank(), 2);
  EXPECT_FALSE(MakePlan(Load(kDistill)).student.lora);  // student.method defaults to full
}

TEST(PlanTest, TeacherAndLossConfigurationFromTheSpec) {
  const JobPlan plan = MakePlan(Load(kDistill));
  EXPECT_EQ(plan.teacher_dir, "/m/teacher");
  EXPECT_EQ(plan.teacher_run.transport, distill::v1::TOPK);
  EXPECT_EQ(plan.teacher_run.top_k, 8);
  EXPECT_EQ(plan.teacher_run.temperature, 4.0);
  EXPECT_EQ(plan.teacher_run.chunk_tokens, 16);
  EXPECT_TRUE(plan.teacher_run.capture_layers.empty());
  EXPECT_EQ(plan.loss.loss, distill::v1::JSD);
  EXPECT_EQ(plan.loss.temperature, 4.0);
  EXPECT_EQ(plan.loss.alpha, 0.25);
  EXPECT_EQ(plan.loss.beta, 0.3);
  EXPECT_FALSE(plan.loss.t2_scale);
  EXPECT_EQ(plan.loss.chunk_tokens, 16);
}

// The default configurations are the spec's defaults (spec.cc writes them once).
TEST(PlanTest, DefaultConfigurationsAreTheSpecDefaults) {
  JobSpec spec;
  spec.set_type(distill::v1::DISTILL);
  const distill::v1::DistillSpec d = WithDefaults(spec).distill();
  const TeacherRunConfig run;
  EXPECT_EQ(run.transport, d.logits());
  EXPECT_EQ(run.top_k, d.top_k());
  EXPECT_EQ(run.temperature, d.temperature());
  EXPECT_EQ(run.chunk_tokens, d.chunk_tokens());
  const LossConfig loss;
  EXPECT_EQ(loss.loss, d.loss());
  EXPECT_EQ(loss.temperature, d.temperature());
  EXPECT_EQ(loss.alpha, d.alpha());
  EXPECT_EQ(loss.t2_scale, d.t2_scale());
  EXPECT_EQ(loss.beta, d.beta());
  EXPECT_EQ(loss.chunk_tokens, d.chunk_tokens());
  // And they are the documented values (job.proto).
  EXPECT_EQ(loss.temperature, 2.0);
  EXPECT_EQ(loss.loss, distill::v1::FORWARD_KL);
  EXPECT_EQ(run.transport, distill::v1::DENSE);
}

}  // namespace
}  // namespace distill::common
