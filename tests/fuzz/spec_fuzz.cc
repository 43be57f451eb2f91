// Fuzzes job-spec text (YAML, and JSON as YAML) through what the coordinator
// and distillctl do with a submitted spec: parse (with the sweep block),
// fill defaults, validate, expand a sweep. Every outcome must be a Status:
// no crash, no uncaught exception, no sanitizer report.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "common/spec.h"
#include "common/sweep.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<distill::v1::JobSpec> spec = distill::common::ParseJobSpec(text, "fuzz.yaml");
  if (!spec.ok()) return 0;
  const distill::v1::JobSpec filled = distill::common::WithDefaults(*spec);
  (void)distill::common::ValidateJobSpec(filled);
  if (spec->sweep_size() > 0) (void)distill::common::ExpandSweep(*spec);
  return 0;
}
