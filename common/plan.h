// The plan of a job: the facts derived from a validated, defaults-filled spec
// (LoadJobSpec, or ValidateJobSpec then WithDefaults), computed once and read
// by the coordinator (ranks, path fields), the student ranks (student source,
// teacher run and loss configuration) and the teacher stages. The spec
// (spec.cc) owns every default and every value check; the plan only derives,
// so no default is written here. No LibTorch. Plain values; thread-compatible.
#ifndef DISTILL_COMMON_PLAN_H_
#define DISTILL_COMMON_PLAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/spec.h"
#include "distill/v1/job.pb.h"

namespace distill::common {

// Who does what in a multi-rank job. World ranks 0 .. S-1 are the student
// ranks (data-parallel replicas; student 0 writes checkpoints, metrics and
// the output), ranks S .. S+T-1 the teacher pipeline stages 0 .. T-1. S and
// T come from the spec: finetune `ranks: S`, distill `student.ranks: S` and
// `teacher.ranks: T` (0 = the teacher colocated in each student).
struct RankPlan {
  int students = 0;
  int teachers = 0;

  int world() const { return students + teachers; }
  int StudentRank(int s) const { return s; }
  int StageRank(int j) const { return students + j; }
  // "student 1", "teacher stage 0".
  std::string Role(int world_rank) const;
  // "rank 3 (teacher stage 1)" for every world rank, in order.
  std::vector<std::string> RankNames() const;
};

// This process's place among the plan's ranks.
struct RankLayout : RankPlan {
  int rank = 0;  // this process's world rank

  bool is_student() const { return rank < students; }
  int student_index() const { return rank; }     // students only
  int stage() const { return rank - students; }  // teachers only

  // From a validated, defaults-filled spec and the launched world. A world
  // size other than S + T is FailedPrecondition saying how to launch, e.g.
  // "the spec needs 4 ranks (student.ranks 2 + teacher.ranks 2) but 1 was
  // launched: run mpirun -np 4 distill-worker train --spec SPEC".
  static absl::StatusOr<RankLayout> FromSpec(const distill::v1::JobSpec& spec, int world_size,
                                             int rank);
};

// Where the trained model (the student of a distill job) comes from: a
// Hugging Face directory (`model`) or a config.json to initialise from
// (`init`); the spec gives exactly one.
struct StudentSource {
  std::string field;        // "student.model" / "student.init"; finetune "model" / "init"
  std::string model_dir;    // the Hugging Face directory, or empty
  std::string init_config;  // the config.json, or empty
  std::string config_path;  // the config.json to read: model_dir's, or init_config
  std::string dir;          // model_dir, or init_config's directory (its tokenizer.json)
  bool lora = false;        // method lora: only the adapters train
  distill::v1::LoraSpec lora_spec;
};

// What the teacher computes for a training micro-batch (distill.logits,
// top_k, temperature, chunk_tokens) and which of its layers it captures.
struct TeacherRunConfig {
  TeacherRunConfig();  // the spec's defaults (WithDefaults), no capture layers
  // From a defaults-filled `distill` block; no capture layers.
  explicit TeacherRunConfig(const distill::v1::DistillSpec& distill);

  distill::v1::LogitTransport transport;
  int64_t top_k;                        // TOPK: k
  double temperature;                   // TOPK: the log-sum-exp is of z / T
  int64_t chunk_tokens;                 // TOPK: logit rows built at a time (bounds memory)
  std::vector<int64_t> capture_layers;  // decoder layers (0-based) whose outputs features need
};

// The knowledge-distillation loss (worker/distill/kd_loss.h: KdLossConfig).
struct LossConfig {
  LossConfig();  // the spec's defaults (WithDefaults)
  // From a defaults-filled `distill` block.
  explicit LossConfig(const distill::v1::DistillSpec& distill);

  distill::v1::DistillLoss loss;
  double temperature;
  double alpha;  // weight of kd; 1 - alpha on ce
  bool t2_scale;
  double beta;  // JSD only
  // Tokens per chunk: peak memory ~ chunk_tokens * V * 4 bytes * ~6; a good
  // size keeps chunk_tokens * V near N * d_s (Liger's rule).
  int64_t chunk_tokens;
};

struct JobPlan {
  distill::v1::JobType type = distill::v1::JOB_TYPE_UNSPECIFIED;
  RankPlan ranks;
  std::vector<PathField> paths;  // SpecPathFields: every non-empty path field
  StudentSource student;
  // type distill only (the spec's defaults otherwise):
  std::string teacher_dir;       // teacher.model ("" when a teacher.cache is read instead)
  std::string teacher_cache;     // teacher.cache, or "": the cache students read
  TeacherRunConfig teacher_run;  // capture_layers empty: the worker adds the feature
                                 // pairs' teacher layers once it knows the models' depths
  LossConfig loss;
};

// The plan of a validated, defaults-filled spec.
JobPlan MakePlan(const distill::v1::JobSpec& spec);

// The ranks of a defaults-filled spec (MakePlan(spec).ranks).
RankPlan PlanRanks(const distill::v1::JobSpec& spec);

}  // namespace distill::common

#endif  // DISTILL_COMMON_PLAN_H_
