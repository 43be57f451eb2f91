// Loading and validation of job specs (distill.v1.JobSpec) from YAML or JSON.
//
// Parsing maps YAML keys onto proto fields by name through reflection, so the
// proto stays the one definition. Every error is InvalidArgument and starts
// with the dotted field path ("train.lr: must be > 0, got -1"). Stateless;
// all functions are thread-safe.
#ifndef DISTILL_COMMON_SPEC_H_
#define DISTILL_COMMON_SPEC_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "distill/v1/job.pb.h"

namespace distill::common {

// Parses spec text (YAML; JSON is accepted as YAML). `source` names the text
// in errors (usually the file path). Does not validate values.
absl::StatusOr<distill::v1::JobSpec> ParseJobSpec(absl::string_view text, absl::string_view source);

// Reads, parses, fills defaults and validates the spec at `path`. Relative
// paths inside the spec are resolved against the spec file's directory.
absl::StatusOr<distill::v1::JobSpec> LoadJobSpec(const std::string& path);

// Returns `spec` with every absent optional field set to its default (the
// defaults are documented in job.proto). Distill defaults (student, teacher,
// distill blocks) are filled for type distill only, finetune's top-level
// method/lora/ranks for the other types.
distill::v1::JobSpec WithDefaults(const distill::v1::JobSpec& spec);

// Note [Input bounds]: what one submission may store. A spec's name is at
// most kMaxSpecNameBytes and the whole spec, serialized, at most
// kMaxSpecBytes (a few KB is usual; a long list of data shards is the large
// case), so one job record, one ListJobs entry and one GetJob answer stay
// far below gRPC's 4 MiB message limit (ListJobs pages by bytes too:
// coordinator/service.cc). A sweep's expansion is bounded by
// kMaxSweepChildren and kMaxSweepBytes (common/sweep.h). The coordinator
// checks them before anything is stored; distillctl before sending.
inline constexpr size_t kMaxSpecNameBytes = 256;
inline constexpr size_t kMaxSpecBytes = size_t{1} << 20;  // 1 MiB

// The size bounds of Note [Input bounds] alone: InvalidArgument "name: at
// most 256 bytes, got N" or "spec: at most 1048576 bytes serialized, got N".
absl::Status CheckSpecSize(const distill::v1::JobSpec& spec);

// Checks every field of a spec (defaults need not be filled in). Returns the
// first problem as InvalidArgument "field.path: what is wrong", the size
// bounds (CheckSpecSize) first. Checks that need the models (distill layer
// indices, top_k against the vocabulary, teacher/student vocabularies, teacher.ranks
// against the teacher's layers, the launched world size) are the
// worker's, before training starts; they name the field too.
absl::Status ValidateJobSpec(const distill::v1::JobSpec& spec);

// A field of the spec that holds a path (a model directory, a config.json,
// a data file, the tokenizer.json, the output directory).
struct PathField {
  std::string field;    // "data.train[1]"
  std::string path;
  bool output = false;  // written (output), not read
};

// The non-empty path fields of `spec`, in the order model, init,
// teacher.model, teacher.cache, student.model, student.init, data.train[i], data.eval[i],
// data.tokenizer (unless "bytes"), output. The one list of which fields are
// paths (ResolveSpecPaths resolves the same fields).
std::vector<PathField> SpecPathFields(const distill::v1::JobSpec& spec);

// Makes every relative path field of `spec` absolute against `base_dir`.
void ResolveSpecPaths(const std::string& base_dir, distill::v1::JobSpec* spec);

// The LoRA target modules the model supports, in canonical order.
const std::vector<std::string>& LoraTargetModuleNames();

}  // namespace distill::common

#endif  // DISTILL_COMMON_SPEC_H_
