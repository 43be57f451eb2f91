#include "common/fs_util.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace distill::common {
namespace fs = std::filesystem;

absl::StatusOr<std::string> MakeStagingDir(const std::string& final_dir) {
  fs::path final_path = fs::path(final_dir).lexically_normal();
  if (final_path.filename().empty()) final_path = final_path.parent_path();
  const fs::path staging = final_path.string() + ".tmp." + std::to_string(::getpid());
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
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::PermissionDeniedError(absl::StrCat(tmp, ": cannot create: ", std::strerror(errno)));
    out << contents;
    out.flush();
    if (!out) return absl::InternalError(absl::StrCat(tmp, ": write failed"));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return absl::InternalError(absl::StrCat(path, ": cannot rename into place: ", ec.message()));
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace distill::common
