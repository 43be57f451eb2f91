#include "coordinator/preflight.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "coordinator/run_command.h"

namespace distill::coordinator {
namespace {

namespace fs = std::filesystem;

// A binary that does not answer --version in this long is not runnable (a
// wrapper that ignores its arguments, a hung mount).
constexpr absl::Duration kVersionTimeout = absl::Seconds(30);

// Where `binary` is, as execvp would find it; "" with *why when nowhere.
std::string Resolve(const std::string& binary, std::string* why) {
  if (binary.empty()) {
    *why = "no binary given";
    return "";
  }
  if (binary.find('/') != std::string::npos) {
    std::error_code ec;
    if (!fs::exists(binary, ec)) {
      *why = "no such file";
      return "";
    }
    if (fs::is_directory(binary, ec) || access(binary.c_str(), X_OK) != 0) {
      *why = "not an executable file";
      return "";
    }
    return binary;
  }
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path ? path : "", ':', absl::SkipEmpty())) {
    const std::string candidate = absl::StrCat(dir, "/", binary);
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec) && access(candidate.c_str(), X_OK) == 0)
      return candidate;
  }
  *why = "not found on PATH";
  return "";
}

}  // namespace

absl::Status CheckRunnable(const std::string& what, const std::string& binary,
                           const std::string& hint) {
  std::string why;
  const std::string found = Resolve(binary, &why);
  if (!found.empty()) {
    absl::StatusOr<CommandResult> r = RunCommand({found, "--version"}, {}, kVersionTimeout);
    if (!r.ok()) {
      why = std::string(r.status().message());
    } else if (r->exit_code != 0) {
      std::string out(absl::StripAsciiWhitespace(r->output));
      if (out.size() > 300) out = absl::StrCat(out.substr(0, 300), "...");
      why = absl::StrCat("'", found, " --version' exited ", r->exit_code, out.empty() ? "" : ": ",
                         out);
    } else {
      return absl::OkStatus();
    }
  }
  return absl::FailedPreconditionError(
      absl::StrCat("cannot run ", what, " '", binary, "': ", why, " (", hint, ")"));
}

std::string DefaultWorkerBin() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const fs::path& candidate :
         {self.parent_path() / "distill-worker",
          self.parent_path().parent_path() / "worker" / "distill-worker"}) {
      if (fs::is_regular_file(candidate, ec)) return candidate.string();
    }
  }
  return "distill-worker";
}

}  // namespace distill::coordinator
