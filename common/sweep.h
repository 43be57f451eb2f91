// Sweeps: a job spec's `sweep` block (dotted field -> list of values) and its
// expansion into one child spec per point of the grid.
//
// In YAML a sweep is a map, `sweep: {distill.temperature: [1, 2], train.seed:
// [1, 2]}` (a structured field takes a list of whole values); the proto's own
// list form (SweepAxis {field, values as JSON text}) is accepted too. Only the
// coordinator expands a sweep; ValidateJobSpec refuses a spec that still has
// one. Errors are InvalidArgument starting with "sweep". Stateless and
// thread-safe.
#ifndef DISTILL_COMMON_SWEEP_H_
#define DISTILL_COMMON_SWEEP_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "distill/v1/job.pb.h"

namespace distill::common {

// More children than this is an error (a typo, not a plan).
inline constexpr int kMaxSweepChildren = 1000;
// Note [Input bounds] (common/spec.h): the children's specs together, as
// estimated before expanding (children x the parent without its sweep
// block), may not exceed this: they are stored in one transaction.
inline constexpr size_t kMaxSweepBytes = size_t{32} << 20;  // 32 MiB

// When spec text (YAML or JSON) has a top-level `sweep` mapping, returns the
// text with it rewritten into the proto's list form (each value as JSON
// text); otherwise the text unchanged (syntax errors are left to the parser).
absl::StatusOr<std::string> NormalizeSweepYaml(absl::string_view text);

// Makes every relative path among the sweep's values absolute against
// `base_dir`, as ResolveSpecPaths does for the spec's own fields (a value of
// a path field, e.g. student.init, or a list of them for data.train).
void ResolveSweepPaths(const std::string& base_dir, distill::v1::JobSpec* spec);

// One job of an expanded sweep.
struct SweepChild {
  distill::v1::JobSpec spec;                  // defaults filled, validated
  std::map<std::string, std::string> values;  // swept field -> its value (JSON)
  std::string label;                          // "temperature=2,seed=1"; "capture"
  bool capture = false;                       // the shared teacher capture
};

// Expands `parent` (a spec with a non-empty sweep): the grid product, first
// axis slowest, each child the parent without `sweep` with its values set,
// defaults filled and validated, output PARENT_OUTPUT/NNN-LABEL and name
// PARENT_NAME[LABEL]. With teacher.model and teacher.cache both given, the
// first element is a capture child (cache_temperatures and cache_layers the
// union of what the children need) and the training children read the
// cache (teacher.model cleared, teacher.ranks 0); a swept field the cache's
// content depends on is then an error. Errors name the axis, value or child:
// "sweep: distill.temperature[2] = -1: distill.temperature: must be > 0, got -1";
// the parent's size bounds (CheckSpecSize) come first and name their field.
// A child's name is clipped to kMaxSpecNameBytes (its sweep values are whole).
absl::StatusOr<std::vector<SweepChild>> ExpandSweep(const distill::v1::JobSpec& parent);

}  // namespace distill::common

#endif  // DISTILL_COMMON_SWEEP_H_
