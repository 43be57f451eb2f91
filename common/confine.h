// Note [Confinement at use]: the coordinator checks a job's paths against
// its --data-root and --output-root when the job is submitted, but a path is
// a name, resolved again at every open: a symlink placed under a root after
// the job was accepted (by anyone who can write there) would lead the job
// outside. So a worker launched with roots (DISTILL_DATA_ROOT and
// DISTILL_OUTPUT_ROOT) resolves every file it opens beneath them, at the
// open: with openat2(2) from a descriptor of the root, RESOLVE_BENEATH (no
// "..", absolute or escaping symlink may leave it) and RESOLVE_NO_MAGICLINKS.
// Reads may lie beneath either root (a job reads its own checkpoints),
// writes only beneath the output root. Without openat2 (Linux before 5.6)
// the walk is one O_NOFOLLOW openat per component, which refuses every
// symlink. The opens of the data path (model and data files, token shards,
// the teacher cache) and of the written files (safetensors, token shards,
// state and JSON files through WriteFileAtomically) go through
// OpenConfined. The renames that publish a file or a model directory
// (WriteFileAtomically, CommitStagingDir) and the staging directory's create
// and remove work through a descriptor of their directory opened this way
// (Note [Writes beneath a held directory] in fs_util.cc). The other directory
// operations (creating the output and cache directories, removing stale
// files) check with CheckConfined first, leaving a window between check and
// use that only a writer of the job's own output directory could use.
//
// Set once at start (ConfineTo, before any other thread); thread-safe after.
#ifndef DISTILL_COMMON_CONFINE_H_
#define DISTILL_COMMON_CONFINE_H_

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace distill::common {

struct Roots {
  std::string data;
  std::string output;
};

// From now on every OpenConfined / CheckConfined of this process resolves
// beneath `roots` (both absolute directories that exist: InvalidArgument
// otherwise, naming the root). Once per process.
absl::Status ConfineTo(const Roots& roots);
// ConfineTo from DISTILL_DATA_ROOT and DISTILL_OUTPUT_ROOT when both are set
// (the coordinator sets them); OK and nothing done when neither is.
absl::Status ConfineFromEnv();
bool Confined();

enum class Access { kRead, kWrite };

// open(2) of `path` with `flags` (and `mode` for O_CREAT), or, confined,
// beneath the root it lies under (kRead: the data or output root; kWrite:
// the output root). PermissionDenied naming the path and the roots when it
// lies or resolves outside them; else the open's own error (NotFound for
// ENOENT), naming the path. The caller closes the descriptor.
absl::StatusOr<int> OpenConfined(const std::string& path, int flags, Access access,
                                 mode_t mode = 0644);

// Confined: `path`, or for a path that does not exist yet its nearest
// existing ancestor, resolves beneath the roots for `access`
// (PermissionDenied otherwise). OK when not confined.
absl::Status CheckConfined(const std::string& path, Access access);

}  // namespace distill::common

#endif  // DISTILL_COMMON_CONFINE_H_
