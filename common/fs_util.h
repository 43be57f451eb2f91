// Crash-safe directory writes: build a directory under a staging name beside
// its final place, then swap it in with renames, so that readers see either
// the old complete directory or the new one, never a half-written one.
// Thread-compatible (distinct directories may be written concurrently).
#ifndef DISTILL_COMMON_FS_UTIL_H_
#define DISTILL_COMMON_FS_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace distill::common {

// Creates an empty staging directory "<final_dir>.tmp.<pid>" (removing a stale
// one) and returns its path. Parent directories are created as needed.
absl::StatusOr<std::string> MakeStagingDir(const std::string& final_dir);

// Moves `staging_dir` (MakeStagingDir's, beside it) to `final_dir`, replacing
// an existing `final_dir`. Both, and WriteFileAtomically, work through a
// descriptor of the directory they write in, opened once and confined (Note
// [Writes beneath a held directory] in fs_util.cc).
absl::Status CommitStagingDir(const std::string& staging_dir, const std::string& final_dir);

// Writes `contents` to `path` through a temp file and a rename.
absl::Status WriteFileAtomically(const std::string& path, const std::string& contents);

// What every input file is checked for before it is opened: InvalidArgument
// naming `path` when it exists but is not a regular file (a FIFO, a device,
// a socket, a directory), checked without opening it (an open of a FIFO
// blocks until a writer comes); PermissionDenied when the process is
// confined and it resolves outside the roots (Note [Confinement at use],
// confine.h). OK when it does not exist (the open then says so).
absl::Status CheckInputFile(const std::string& path);

// Reads a whole file; NotFound naming the path when it cannot be opened.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace distill::common

#endif  // DISTILL_COMMON_FS_UTIL_H_
