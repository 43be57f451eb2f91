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

}  // namespace

absl::StatusOr<std::string> MakeStagingDir(const std::string& final_dir) {
  fs::path final_path = fs::path(final_dir).lexically_normal();
  if (final_path.filename().empty()) final_path = final_path.parent_path();
  const fs::path staging = final_path.string() + ".tmp." + std::to_string(::getpid());
  if (absl::Status st = CheckConfined(staging.string(), Access::kWrite); !st.ok()) return st;
  std::error_code ec;
  fs::remove_all(staging, ec);
  fs::create_directories(staging, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(staging.string(), ": cannot create: ", ec.message()));
  return staging.string();
}

absl::Status CommitStagingDir(const std::string& staging_dir, const std::string& final_dir) {
  fs::path final_path = fs::path(final_dir).lexically_normal();
  if (final_path.filename().empty()) final_path = final_path.parent_path();
  const fs::path old = final_path.string() + ".old." + std::to_string(::getpid());
  if (absl::Status st = CheckConfined(final_path.string(), Access::kWrite); !st.ok()) return st;
  std::error_code ec;
  fs::remove_all(old, ec);
  if (fs::exists(final_path)) {
    fs::rename(final_path, old, ec);
    if (ec) return absl::InternalError(absl::StrCat(final_dir, ": cannot move aside: ", ec.message()));
  }
  fs::rename(staging_dir, final_path, ec);
  if (ec) return absl::InternalError(absl::StrCat(final_dir, ": cannot rename into place: ", ec.message()));
  fs::remove_all(old, ec);
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& contents) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  absl::StatusOr<int> fd = OpenConfined(tmp, O_WRONLY | O_CREAT | O_TRUNC, Access::kWrite);
  if (!fd.ok()) {
    return absl::Status(fd.status().code() == absl::StatusCode::kInternal
                            ? absl::StatusCode::kPermissionDenied
                            : fd.status().code(),
                        fd.status().message());
  }
  const absl::Status written = WriteAll(*fd, contents, tmp);
  ::close(*fd);
  if (!written.ok()) {
    std::error_code ec;
    fs::remove(tmp, ec);  // a failed write leaves no temp file
    return written;
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    return absl::InternalError(absl::StrCat(path, ": cannot rename into place: ", ec.message()));
  }
  return absl::OkStatus();
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
