#include "common/host_memory.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"

namespace distill::common {
namespace {

int64_t ReadLimit(const std::string& path) {
  std::ifstream in(path);
  if (!in) return 0;
  std::stringstream text;
  text << in.rdbuf();
  return ParseCgroupLimit(text.str());
}

// The process's cgroup v2 path ("0::/PATH" in /proc/self/cgroup), or "/".
std::string CgroupV2Path() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  }
  return "/";
}

}  // namespace

int64_t ParseCgroupLimit(const std::string& text) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &v) || v <= 0) return 0;
  return v > (int64_t{1} << 62) ? 0 : v;  // v1 writes ~2^63 for "no limit"
}

int64_t HostMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  int64_t best = pages > 0 && page > 0 ? int64_t{pages} * page : 0;
  const std::string own = CgroupV2Path();
  const std::string v2 = "/sys/fs/cgroup" + (own == "/" ? "" : own);
  // This process's cgroup (v2), the root one (a container's namespace), v1.
  for (const std::string& path : {v2 + "/memory.max", std::string("/sys/fs/cgroup/memory.max"),
                                  std::string("/sys/fs/cgroup/memory/memory.limit_in_bytes")}) {
    const int64_t limit = ReadLimit(path);
    if (limit > 0 && (best == 0 || limit < best)) best = limit;
  }
  return best;
}

std::string HumanBytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (bytes >= 1024 && u < 6) {
    bytes /= 1024;
    ++u;
  }
  return u == 0 ? absl::StrFormat("%.0f B", bytes) : absl::StrFormat("%.1f %s", bytes, units[u]);
}

}  // namespace distill::common
