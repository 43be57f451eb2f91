#include "coordinator/scheduler.h"

#include <algorithm>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace distill::coordinator {

absl::StatusOr<std::vector<Host>> ParseHostsFile(absl::string_view text, absl::string_view source) {
  std::vector<Host> hosts;
  std::set<std::string> seen;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    auto bad = [&](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat(source, ":", line_no, ": ", what));
    };
    size_t hash = line.find('#');
    if (hash != absl::string_view::npos) line = line.substr(0, hash);
    std::vector<absl::string_view> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (words.empty()) continue;
    Host h;
    h.name = std::string(words[0]);
    if (h.name.find('=') != std::string::npos)
      return bad(absl::StrCat("expected a host name first, got '", h.name, "'"));
    bool has_slots = false;
    for (size_t i = 1; i < words.size(); ++i) {
      std::pair<absl::string_view, absl::string_view> kv =
          absl::StrSplit(words[i], absl::MaxSplits('=', 1));
      int v = 0;
      if (!absl::SimpleAtoi(kv.second, &v) || v < 0) {
        return bad(absl::StrCat("'", words[i], "': expected key=N with N >= 0"));
      }
      if (kv.first == "slots") {
        if (v < 1) return bad("slots must be >= 1");
        h.slots = v;
        has_slots = true;
      } else if (kv.first == "gpus") {
        h.gpus = v;
      } else {
        return bad(absl::StrCat("unknown key '", kv.first, "', expected slots or gpus"));
      }
    }
    if (!has_slots) return bad(absl::StrCat("host '", h.name, "' needs slots=N"));
    if (!seen.insert(h.name).second)
      return bad(absl::StrCat("host '", h.name, "' is listed twice"));
    hosts.push_back(std::move(h));
  }
  if (hosts.empty()) return absl::InvalidArgumentError(absl::StrCat(source, ": no hosts"));
  return hosts;
}

std::vector<Host> LocalInventory(int slots) { return {Host{"localhost", std::max(1, slots), 0}}; }

Scheduler::Scheduler(std::vector<Host> inventory) : inventory_(std::move(inventory)) {
  for (const Host& h : inventory_) total_slots_ += h.slots;
}

int Scheduler::free_slots() const {
  int used = 0;
  for (const auto& [host, n] : used_) used += n;
  return total_slots_ - used;
}

absl::Status Scheduler::Reserve(const std::string& job_id, const Allocation& allocation) {
  Release(job_id);
  absl::Status st;
  for (const HostSlots& hs : allocation) {
    int cap = 0;
    for (const Host& h : inventory_) {
      if (h.name == hs.host) cap = h.slots;
    }
    used_[hs.host] += hs.slots;
    if (used_[hs.host] > cap && st.ok()) {
      st = absl::FailedPreconditionError(absl::StrCat("job ", job_id, ": host ", hs.host, " has ",
                                                      cap, " slots, ", used_[hs.host], " in use"));
    }
  }
  jobs_[job_id] = allocation;
  return st;
}

void Scheduler::Release(const std::string& job_id) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  for (const HostSlots& hs : it->second) used_[hs.host] -= hs.slots;
  jobs_.erase(it);
}

void Scheduler::SetHostDown(const std::string& host, bool down) {
  bool known = false;
  for (const Host& h : inventory_) known = known || h.name == host;
  if (!known) return;
  if (down) {
    down_.insert(host);
  } else {
    down_.erase(host);
  }
}

std::vector<QueuedJob> Scheduler::Order(std::vector<QueuedJob> queue) {
  std::stable_sort(queue.begin(), queue.end(), [](const QueuedJob& a, const QueuedJob& b) {
    if (a.priority != b.priority) return a.priority > b.priority;
    return a.seq < b.seq;
  });
  return queue;
}

bool Scheduler::Place(int ranks, Allocation* out) const {
  std::vector<std::pair<std::string, int>> free;
  for (const Host& h : inventory_) {
    if (down_.count(h.name)) continue;
    auto it = used_.find(h.name);
    int f = h.slots - (it == used_.end() ? 0 : it->second);
    if (f > 0) free.emplace_back(h.name, f);
  }
  // One host that holds the whole job, the fullest-fitting first.
  const std::pair<std::string, int>* best = nullptr;
  for (const auto& f : free) {
    if (f.second >= ranks && (!best || f.second < best->second)) best = &f;
  }
  out->clear();
  if (best) {
    out->push_back({best->first, ranks});
    return true;
  }
  // Otherwise spread over hosts, largest free first (fewest hosts).
  std::stable_sort(free.begin(), free.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  int left = ranks;
  for (const auto& f : free) {
    if (left == 0) break;
    int take = std::min(left, f.second);
    out->push_back({f.first, take});
    left -= take;
  }
  if (left > 0) out->clear();
  return left == 0;
}

std::vector<std::pair<std::string, Allocation>> Scheduler::Schedule(
    const std::vector<QueuedJob>& queue) {
  std::vector<std::pair<std::string, Allocation>> starts;
  for (const QueuedJob& job : Order(queue)) {
    if (!job.eligible) continue;
    Allocation a;
    if (!Place(job.ranks, &a)) break;  // Note [No starvation]: the head reserves.
    Reserve(job.id, a).IgnoreError();
    starts.emplace_back(job.id, std::move(a));
  }
  return starts;
}

}  // namespace distill::coordinator
