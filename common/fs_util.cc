#include "common/fs_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/confine.h"

namespace distill::common {
namespace fs = std::filesystem;

namespace {

// All of `data` to `fd` (`path` for errors).
absl::Status WriteAll(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::InternalError(absl::StrCat(path, ": write failed: ", std::strerror(errno)));
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// The parent and the name of `path` (a trailing slash ignored).
struct PathParts {
  std::string parent;
  std::string name;
};
PathParts SplitPath(const std::string& path) {
  fs::path p = fs::path(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return {p.has_parent_path() ? p.parent_path().string() : ".", p.filename().string()};
}

// The parent's descriptor, opened confined for writing (Note [Writes beneath
// a held directory]), and "/proc/self/fd/N/" to reach its entries through it
// for what has no *at form (a recursive remove; the path itself without /proc).
struct HeldDir {
  int fd = -1;
  std::string path;
  std::string Entry(const std::string& name) const {
    static const bool proc = fs::exists("/proc/self/fd");
    return proc ? absl::StrCat("/proc/self/fd/", fd, "/", name) : (fs::path(path) / name).string();
  }
  ~HeldDir() {
    if (fd >= 0) ::close(fd);
  }
};
absl::Status Hold(const std::string& dir, HeldDir* held) {
  absl::StatusOr<int> fd = OpenConfined(dir, O_PATH | O_DIRECTORY, Access::kWrite);
  if (!fd.ok()) return fd.status();
  held->fd = *fd;
  held->path = dir;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> MakeStagingDir(const std::string& final_dir) {
  const PathParts f = SplitPath(final_dir);
  const std::string name = f.name + ".tmp." + std::to_string(::getpid());
  const std::string staging = (fs::path(f.parent) / name).string();
  if (absl::Status st = CheckConfined(staging, Access::kWrite); !st.ok()) return st;
  std::error_code ec;
  fs::create_directories(f.parent, ec);
  HeldDir held;
  if (absl::Status st = Hold(f.parent, &held); !st.ok()) {
    return absl::PermissionDeniedError(absl::StrCat(staging, ": cannot create: ", st.message()));
  }
  fs::remove_all(held.Entry(name), ec);
  if (::mkdirat(held.fd, name.c_str(), 0755) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat(staging, ": cannot create: ", std::strerror(errno)));
  }
  return staging;
}

absl::Status CommitStagingDir(const std::string& staging_dir, const std::string& final_dir) {
  const PathParts f = SplitPath(final_dir);
  const PathParts s = SplitPath(staging_dir);
  const std::string old = f.name + ".old." + std::to_string(::getpid());
  if (fs::path(s.parent).lexically_normal() != fs::path(f.parent).lexically_normal()) {
    return absl::InternalError(absl::StrCat(staging_dir, ": not beside ", final_dir));
  }
  HeldDir held;
  if (absl::Status st = Hold(f.parent, &held); !st.ok()) return st;
  std::error_code ec;
  fs::remove_all(held.Entry(old), ec);
  if (::renameat(held.fd, f.name.c_str(), held.fd, old.c_str()) != 0 && errno != ENOENT) {
    return absl::InternalError(
        absl::StrCat(final_dir, ": cannot move aside: ", std::strerror(errno)));
  }
  if (::renameat(held.fd, s.name.c_str(), held.fd, f.name.c_str()) != 0) {
    return absl::InternalError(
        absl::StrCat(final_dir, ": cannot rename into place: ", std::strerror(errno)));
  }
  fs::remove_all(held.Entry(old), ec);
  return absl::OkStatus();
}

// Note [Writes beneath a held directory]: the temp file is created and renamed
// into place relative to a descriptor of the destination's directory, opened
// confined once (Note [Confinement at use]); a directory swapped for a symlink
// after that open cannot redirect the create or the rename.
absl::Status WriteFileAtomically(const std::string& path, const std::string& contents) {
  const PathParts f = SplitPath(path);
  const std::string tmp_name = f.name + ".tmp." + std::to_string(::getpid());
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  HeldDir held;
  if (absl::Status st = Hold(f.parent, &held); !st.ok()) {
    return absl::Status(
        st.code() == absl::StatusCode::kInternal ? absl::StatusCode::kPermissionDenied : st.code(),
        st.message());
  }
  const int fd = ::openat(held.fd, tmp_name.c_str(),
                          O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    const std::string msg = absl::StrCat(tmp, ": cannot open: ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(msg) : absl::PermissionDeniedError(msg);
  }
  absl::Status st = WriteAll(fd, contents, tmp);
  ::close(fd);
  if (st.ok() && ::renameat(held.fd, tmp_name.c_str(), held.fd, f.name.c_str()) != 0) {
    st = absl::InternalError(
        absl::StrCat(path, ": cannot rename into place: ", std::strerror(errno)));
  }
  if (!st.ok()) ::unlinkat(held.fd, tmp_name.c_str(), 0);  // a failed write leaves no temp file
  return st;
}

absl::Status CheckInputFile(const std::string& path) {
  if (absl::Status st = CheckConfined(path, Access::kRead); !st.ok()) return st;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || S_ISREG(st.st_mode)) return absl::OkStatus();
  const char* what = S_ISFIFO(st.st_mode)   ? "a FIFO"
                     : S_ISDIR(st.st_mode)  ? "a directory"
                     : S_ISSOCK(st.st_mode) ? "a socket"
                                            : "a device";
  return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file (", what, ")"));
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  if (absl::Status st = CheckInputFile(path); !st.ok()) return st;
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace distill::common
