#include "coordinator/attempt_failure.h"

#include <fstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/exit_codes.h"

namespace distill::coordinator {
namespace {

constexpr std::streamoff kTailBytes = 64 << 10;
constexpr size_t kMaxLine = 500;

bool SaysError(absl::string_view line) {
  return absl::StrContains(absl::AsciiStrToLower(line), "error");
}

std::string ReadTail(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "";
  const std::streamoff size = in.tellg();
  const std::streamoff from = size > kTailBytes ? size - kTailBytes : 0;
  in.seekg(from);
  std::string text(static_cast<size_t>(size - from), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return text;
}

}  // namespace

std::string LastErrorLine(const std::string& log_path) {
  const std::string text = ReadTail(log_path);
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n', absl::SkipWhitespace());
  absl::string_view found;
  for (auto it = lines.rbegin(); it != lines.rend() && found.empty(); ++it) {
    if (SaysError(*it)) found = *it;
  }
  if (found.empty() && !lines.empty()) found = lines.back();
  std::string line(absl::StripAsciiWhitespace(found));
  if (line.size() > kMaxLine) line = absl::StrCat(line.substr(0, kMaxLine), "...");
  return line;
}

std::string AttemptErrorLine(const LaunchStatus& status, int ranks,
                             const std::function<std::string(int)>& log_of, int* rank) {
  *rank = -1;
  if (!status.failed_ranks.empty() && !status.host_lost) {
    const int r = status.failed_ranks.front();
    std::string line = LastErrorLine(log_of(r));
    if (!line.empty()) *rank = r;
    return line;
  }
  if (status.host_lost) return "";
  // Note [Unnamed rank failure]: the first rank whose log says "error".
  for (int r = 0; r < ranks; ++r) {
    std::string line = LastErrorLine(log_of(r));
    if (SaysError(line)) {
      *rank = r;
      return line;
    }
  }
  return "";
}

std::string DeterministicCause(const LaunchStatus& status, absl::string_view error_line,
                               const FailureMark& mark,
                               const std::optional<FailureMark>& previous) {
  const int code = status.failed_exit_code >= 0  ? status.failed_exit_code
                   : status.failed_ranks.empty() ? status.exit_code
                                                 : -1;
  if (code == common::kExitDeterministic) {
    return absl::StrCat("the worker's exit code ", code, " says a retry would fail the same way");
  }
  if (common::NamesDiskRefusal(error_line)) {
    return "the rank's error says a write was refused (disk full, read-only or not permitted)";
  }
  if (previous && mark.step >= 0 && !mark.how.empty() && previous->step == mark.step &&
      previous->how == mark.how) {
    return absl::StrCat("it failed the same way (", mark.how, ") at step ", mark.step,
                        " in the attempt before");
  }
  return "";
}

}  // namespace distill::coordinator
