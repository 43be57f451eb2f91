// Note [Output ownership]: an output directory belongs to one run. The first
// run that writes it (student 0 of a train, before anything else is written)
// leaves OUTPUT/.distill-owner.json: its job id (empty for a run started
// without a coordinator) and its identity, what makes its checkpoints and
// model what they are: the job type, the method, the model (or init) it
// starts from, its teacher, its training data and its seed. A later run may
// write into it only if it is the same job (a retry) or has the same
// identity (the same spec submitted again, which resumes from its
// checkpoints or finds it done; changing steps, lr or the like is allowed);
// any other run is refused before it writes, naming the owner and the
// fields that differ. Checkpoints carry the identity too (state.json), so a
// resume from a checkpoint of another run is refused the same way even where
// the owner record is missing (directories written before it existed).
//
// Thread-compatible; the record is written atomically (temp file, rename).
#ifndef DISTILL_COMMON_OUTPUT_OWNER_H_
#define DISTILL_COMMON_OUTPUT_OWNER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "distill/v1/job.pb.h"

namespace distill::common {

inline constexpr char kOwnerFile[] = ".distill-owner.json";

struct RunIdentity {
  std::string type;     // "finetune" or "distill"
  std::string method;   // "full" or "lora"
  std::string model;    // "model DIR" or "init FILE"
  std::string teacher;  // distill: "model DIR" or "cache DIR"; else empty
  std::string data;     // the training files, comma-separated
  std::optional<uint64_t> seed;
};

RunIdentity IdentityOf(const distill::v1::JobSpec& spec);

// Each field in which `recorded` and `mine` differ, as "seed (1, now 2)".
// A field a record does not have (written by an older version) is skipped.
std::vector<std::string> IdentityDifferences(const RunIdentity& recorded, const RunIdentity& mine);

// As JSON (an object with the fields above) and back; a missing field reads
// as absent; a field of the wrong type is InvalidArgument.
std::string IdentityToJson(const RunIdentity& identity);
absl::StatusOr<RunIdentity> IdentityFromJson(absl::string_view json);

// Claims `output_dir` (which exists) for the run `job_id` ("" without a
// coordinator) with `identity` (Note [Output ownership]): OK and the record
// written (naming this job) when it has no owner, is this job's or has the
// same identity; FailedPrecondition naming the owner and the differences
// otherwise, with nothing written.
absl::Status ClaimOutput(const std::string& output_dir, const std::string& job_id,
                         const RunIdentity& identity);

// Removes what an interrupted atomic write left under `dir` (not
// recursively): entries named NAME.tmp.PID or NAME.old.PID (fs_util.h's
// staging directories and temp files) and .pending_* directories (a
// checkpoint's optimizer shards, Note [Checkpoint atomicity]). Only while no
// other process writes `dir`. Returns how many it removed.
int RemoveStaleStaging(const std::string& dir);

}  // namespace distill::common

#endif  // DISTILL_COMMON_OUTPUT_OWNER_H_
