#include "coordinator/mpirun_failure.h"

#include <regex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace distill::coordinator {
namespace {

// The first match of `re` in `text` (empty when none).
std::smatch Find(const std::string& text, const std::regex& re) {
  std::smatch m;
  std::regex_search(text, m, re);
  return m;
}

int ToInt(const std::string& s) {
  int v = -1;
  return absl::SimpleAtoi(s, &v) ? v : -1;
}

// "ORTE has lost communication with a remote daemon. ... Remote daemon:
// [[5913,0],2] on node 10.77.8.3", or a daemon that ssh could not start.
bool FindLostHost(const std::string& text, MpirunFailure* out) {
  static const std::regex lost(
      R"(lost communication with a remote daemon[\s\S]*?Remote daemon: *\S+ on node (\S+))");
  static const std::regex ssh(
      R"(ssh: (connect to host (\S+) port \d+: [^\n]*|Could not resolve hostname ([^\s:]+): [^\n]*))");
  std::smatch m = Find(text, lost);
  if (!m.empty()) {
    out->host = m[1];
    out->what = "lost contact with its daemon";
  } else if (m = Find(text, ssh); !m.empty()) {
    out->host = m[2].matched ? m[2] : m[3];
    out->what = absl::StrCat("could not start its daemon: ssh: ", m[1].str());
  } else {
    return false;
  }
  out->kind = MpirunFailure::kHostLost;
  return true;
}

bool FindRankFailure(const std::string& text, MpirunFailure* out) {
  static const std::regex signal(
      R"(process rank (\d+) with PID \d+ on node (\S+) exited on signal (\d+)( \([^)\n]*\))?)");
  static const std::regex exit_code(R"(Process name: *\[\[\d+,\d+\],(\d+)\]\s*Exit code: *(\d+))");
  static const std::regex abort(
      R"(MPI_ABORT was invoked on rank (\d+) in communicator \S+\s+with errorcode (-?\d+))");
  std::smatch m;
  if (m = Find(text, signal); !m.empty()) {
    out->rank = ToInt(m[1]);
    out->host = m[2];
    out->what = absl::StrCat("exited on signal ", m[3].str(), m[4].str());
  } else if (m = Find(text, exit_code); !m.empty()) {
    out->rank = ToInt(m[1]);
    out->exit_code = ToInt(m[2]);
    out->what = absl::StrCat("exit code ", m[2].str());
  } else if (m = Find(text, abort); !m.empty()) {
    out->rank = ToInt(m[1]);
    out->exit_code = ToInt(m[2]);
    out->what = absl::StrCat("called MPI_Abort (error code ", m[2].str(), ")");
  } else {
    return false;
  }
  out->kind = MpirunFailure::kRankFailed;
  return true;
}

}  // namespace

MpirunFailure ParseMpirunLog(absl::string_view log) {
  const std::string text(log);
  MpirunFailure f;
  if (!FindLostHost(text, &f)) FindRankFailure(text, &f);
  return f;
}

void ExplainMpirunFailure(absl::string_view log, const Allocation& allocation,
                          LaunchStatus* status) {
  const MpirunFailure f = ParseMpirunLog(log);
  if (f.kind == MpirunFailure::kUnknown) return;
  status->host_lost = f.kind == MpirunFailure::kHostLost;
  if (status->host_lost) {
    status->failed_host = f.host;
    status->failed_ranks = RanksOnHost(allocation, f.host);
  } else {
    status->failed_host = f.host.empty() ? HostOfRank(allocation, f.rank) : f.host;
    status->failed_ranks = {f.rank};
    status->failed_exit_code = f.exit_code;
  }
  status->failed_how = f.what;
}

std::vector<int> RanksOnHost(const Allocation& allocation, absl::string_view host) {
  std::vector<int> ranks;
  int first = 0;
  for (const HostSlots& hs : allocation) {
    if (hs.host == host) {
      for (int r = first; r < first + hs.slots; ++r) ranks.push_back(r);
    }
    first += hs.slots;
  }
  return ranks;
}

std::string HostOfRank(const Allocation& allocation, int rank) {
  int first = 0;
  for (const HostSlots& hs : allocation) {
    if (rank >= first && rank < first + hs.slots) return hs.host;
    first += hs.slots;
  }
  return "";
}

}  // namespace distill::coordinator
