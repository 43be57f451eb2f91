#include "common/confine.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace distill::common {
namespace {

namespace fs = std::filesystem;

struct Root {
  std::string path;  // absolute, lexically normal, no trailing slash
  int fd = -1;       // O_PATH | O_DIRECTORY
};

// Written once by ConfineTo before other threads exist; read-only after.
struct State {
  bool on = false;
  Root data;
  Root output;
};
State& S() {
  static State* s = new State();
  return *s;
}

absl::StatusOr<Root> OpenRoot(const std::string& path, const char* name) {
  const fs::path p = fs::path(path).lexically_normal();
  if (!p.is_absolute()) {
    return absl::InvalidArgumentError(absl::StrCat(name, " ", path, ": not an absolute path"));
  }
  Root r;
  r.path = p.string();
  while (r.path.size() > 1 && r.path.back() == '/') r.path.pop_back();
  r.fd = ::open(r.path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (r.fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " ", path, ": not a directory: ", std::strerror(errno)));
  }
  return r;
}

// `path` relative to `root` when it lies under it lexically ("." for the
// root itself); false otherwise.
bool Relative(const Root& root, const std::string& path, std::string* rel) {
  const std::string p = fs::path(path).lexically_normal().string();
  if (p == root.path) {
    *rel = ".";
    return true;
  }
  const std::string prefix = root.path == "/" ? "/" : root.path + "/";
  if (p.compare(0, prefix.size(), prefix) != 0) return false;
  *rel = p.substr(prefix.size());
  while (!rel->empty() && rel->back() == '/') rel->pop_back();
  if (rel->empty()) *rel = ".";
  return true;
}

// One O_NOFOLLOW openat per component (no openat2): every symlink refused.
int WalkNoFollow(int dirfd, const std::string& rel, int flags, mode_t mode) {
  std::vector<std::string> parts = absl::StrSplit(rel, '/', absl::SkipEmpty());
  int cur = ::dup(dirfd);
  for (size_t i = 0; cur >= 0 && i < parts.size(); ++i) {
    if (parts[i] == "..") {
      ::close(cur);
      errno = EXDEV;
      return -1;
    }
    const bool last = i + 1 == parts.size();
    const int next = last ? ::openat(cur, parts[i].c_str(), flags | O_NOFOLLOW, mode)
                          : ::openat(cur, parts[i].c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
    ::close(cur);
    cur = next;
  }
  return cur;
}

int OpenBeneath(const Root& root, const std::string& rel, int flags, mode_t mode) {
  struct open_how how;
  std::memset(&how, 0, sizeof(how));
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  // O_TMPFILE includes O_DIRECTORY's bit: a mode with O_DIRECTORY alone is EINVAL.
  const bool creates = (flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE;
  how.mode = creates ? mode : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  const long fd = ::syscall(SYS_openat2, root.fd, rel.c_str(), &how, sizeof(how));
  if (fd >= 0 || errno != ENOSYS) return static_cast<int>(fd);
  return WalkNoFollow(root.fd, rel, flags | O_CLOEXEC, mode);
}

std::string RootsText(Access access) {
  return access == Access::kWrite
             ? absl::StrCat("the output root ", S().output.path)
             : absl::StrCat("the data root ", S().data.path, " or the output root ", S().output.path);
}

// The root `path` lies under for `access`, and the path relative to it.
const Root* RootOf(const std::string& path, Access access, std::string* rel) {
  const std::string abs = fs::absolute(path).string();
  if (Relative(S().output, abs, rel)) return &S().output;
  if (access == Access::kRead && Relative(S().data, abs, rel)) return &S().data;
  return nullptr;
}

absl::Status Outside(const std::string& path, Access access, const std::string& how) {
  return absl::PermissionDeniedError(
      absl::StrCat(path, ": ", how, " ", RootsText(access), " (Note [Confinement at use])"));
}

}  // namespace

absl::Status ConfineTo(const Roots& roots) {
  if (S().on) return absl::FailedPreconditionError("ConfineTo: already confined");
  absl::StatusOr<Root> data = OpenRoot(roots.data, "data root");
  if (!data.ok()) return data.status();
  absl::StatusOr<Root> output = OpenRoot(roots.output, "output root");
  if (!output.ok()) return output.status();
  S().data = *data;
  S().output = *output;
  S().on = true;
  return absl::OkStatus();
}

absl::Status ConfineFromEnv() {
  const char* data = std::getenv("DISTILL_DATA_ROOT");
  const char* output = std::getenv("DISTILL_OUTPUT_ROOT");
  if ((data == nullptr || *data == '\0') && (output == nullptr || *output == '\0')) {
    return absl::OkStatus();
  }
  if (data == nullptr || output == nullptr) {
    return absl::InvalidArgumentError(
        "DISTILL_DATA_ROOT and DISTILL_OUTPUT_ROOT: set both or neither");
  }
  return ConfineTo(Roots{data, output});
}

bool Confined() { return S().on; }

absl::StatusOr<int> OpenConfined(const std::string& path, int flags, Access access, mode_t mode) {
  int fd = -1;
  if (!S().on) {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } else {
    std::string rel;
    const Root* root = RootOf(path, access, &rel);
    if (root == nullptr) return Outside(path, access, "lies outside");
    fd = OpenBeneath(*root, rel, flags, mode);
    if (fd < 0 && (errno == EXDEV || errno == ELOOP)) {
      return Outside(path, access, "resolves (through a symlink or '..') outside");
    }
  }
  if (fd >= 0) return fd;
  const int err = errno;
  const std::string msg = absl::StrCat(path, ": cannot open: ", std::strerror(err));
  if (err == ENOENT || err == ENOTDIR) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM || err == EROFS) return absl::PermissionDeniedError(msg);
  return absl::InternalError(msg);
}

absl::Status CheckConfined(const std::string& path, Access access) {
  if (!S().on) return absl::OkStatus();
  fs::path p = fs::absolute(path).lexically_normal();
  std::error_code ec;
  while (!fs::exists(fs::symlink_status(p, ec)) && p.has_parent_path() && p != p.parent_path()) {
    p = p.parent_path();
  }
  absl::StatusOr<int> fd = OpenConfined(p.string(), O_PATH, access);
  if (!fd.ok()) {
    if (fd.status().code() == absl::StatusCode::kPermissionDenied) return fd.status();
    return absl::OkStatus();  // vanished meanwhile: the operation itself will say
  }
  ::close(*fd);
  return absl::OkStatus();
}

}  // namespace distill::common
