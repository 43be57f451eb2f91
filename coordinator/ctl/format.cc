#include "coordinator/ctl/format.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace distill::coordinator::ctl {
namespace {
using distill::v1::Job;
using distill::v1::JobEvent;
using distill::v1::JobState;

absl::Time ToTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}
bool HasTime(const google::protobuf::Timestamp& t) { return t.seconds() != 0 || t.nanos() != 0; }

std::string FormatTime(const google::protobuf::Timestamp& t, absl::Time now) {
  if (!HasTime(t)) return "-";
  const absl::Time at = ToTime(t);
  return absl::StrCat(absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", at, absl::UTCTimeZone()), " (",
                      FormatDuration(absl::ToDoubleSeconds(now - at)), " ago)");
}

bool IsDistill(const Job& job) { return job.spec().type() == distill::v1::DISTILL; }

std::string StepText(const Job& job) {
  const auto& p = job.progress();
  return p.total_steps() > 0 ? absl::StrCat(p.step(), "/", p.total_steps())
                             : absl::StrCat(p.step());
}

// The part of the progress line after the step: loss, rate, ETA.
std::string ProgressTail(const Job& job) {
  const auto& p = job.progress();
  std::string s = absl::StrCat("loss ", FormatLoss(job));
  if (p.eval_loss() > 0) absl::StrAppendFormat(&s, " | eval %.4f", p.eval_loss());
  absl::StrAppend(&s, " | ", FormatRate(p.tokens_per_second()), " tok/s");
  if (job.state() == distill::v1::RUNNING)
    absl::StrAppend(&s, " | eta ", FormatDuration(p.eta_seconds()));
  return s;
}

std::string Clip(const std::string& s, size_t width) {
  return s.size() <= width ? s
                           : s.substr(0, width > 3 ? width - 3 : width) + (width > 3 ? "..." : "");
}

}  // namespace

std::string JobStateName(JobState state) { return distill::v1::JobState_Name(state); }

absl::StatusOr<JobState> ParseJobState(absl::string_view text) {
  JobState state;
  const std::string upper = absl::AsciiStrToUpper(text);
  if (upper != "JOB_STATE_UNSPECIFIED" && distill::v1::JobState_Parse(upper, &state)) return state;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown state '", text,
                   "'; known: queued, starting, running, succeeded, failed, cancelled"));
}

bool IsTerminal(JobState state) {
  return state == distill::v1::SUCCEEDED || state == distill::v1::FAILED ||
         state == distill::v1::CANCELLED;
}

std::string FormatDuration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(std::llround(s));
  if (t >= 3600) return absl::StrFormat("%dh%02dm", t / 3600, (t % 3600) / 60);
  if (t >= 60) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrFormat("%ds", t);
}

std::string FormatRate(double r) {
  if (!std::isfinite(r) || r < 0) return "?";
  if (r >= 1e6) return absl::StrFormat("%.2fM", r / 1e6);
  if (r >= 1e3) return absl::StrFormat("%.1fk", r / 1e3);
  return absl::StrFormat("%.0f", r);
}

std::string FormatLoss(const Job& job) {
  const auto& p = job.progress();
  std::string s = absl::StrFormat("%.4f", p.loss());
  if (IsDistill(job) || p.kd_loss() != 0) {
    absl::StrAppendFormat(&s, " (ce %.4f kd %.4f", p.ce_loss(), p.kd_loss());
    for (const auto& [name, value] : p.feature_losses())
      absl::StrAppendFormat(&s, " %s %.4f", name, value);
    s += ")";
  }
  return s;
}

std::string FormatProgressLine(const Job& job) {
  if (job.progress().step() == 0) return JobStateName(job.state());
  return absl::StrCat("step ", StepText(job), " | ", ProgressTail(job));
}

std::string FormatProgressBar(const Job& job, int width) {
  const auto& p = job.progress();
  if (p.step() == 0) return Clip(JobStateName(job.state()), std::max(width - 1, 1));
  const double frac = p.total_steps() > 0
                          ? std::clamp(static_cast<double>(p.step()) / p.total_steps(), 0.0, 1.0)
                          : 0.0;
  const std::string right = absl::StrFormat(" %s %3d%% | %s", StepText(job),
                                            static_cast<int>(frac * 100), ProgressTail(job));
  // Keep a column free: writing the last column makes some terminals wrap.
  const int room = width - 1 - static_cast<int>(right.size()) - 2;
  const int bar = std::min(30, room);
  if (bar < 5) return Clip(right.substr(1), std::max(width - 1, 1));
  const int filled = static_cast<int>(std::floor(frac * bar));
  return absl::StrCat("[", std::string(filled, '#'), std::string(bar - filled, '.'), "]", right);
}

std::string FormatFailure(const Job& job) {
  // A sweep that failed has no reason of its own, only its children's count.
  if (job.failure_reason() == distill::v1::FAILURE_REASON_UNSPECIFIED) {
    return job.state() == distill::v1::SUCCEEDED ? "" : job.failure_message();
  }
  const std::string name = distill::v1::FailureReason_Name(job.failure_reason());
  const std::string& message = job.failure_message();
  // An attempt's message names its reason already ("attempt 3 failed:
  // RANK_FAILED: ...") and its exit code where mpirun gave one.
  const bool named = absl::StrContains(message, absl::StrCat(" failed: ", name, ": "));
  std::string s = named ? message : message.empty() ? name : absl::StrCat(name, ": ", message);
  const std::string code = absl::StrCat("exit code ", job.exit_code());
  if (job.failure_reason() == distill::v1::RANK_FAILED && job.exit_code() != 0 &&
      !absl::StrContains(message, code)) {
    absl::StrAppend(&s, " (exit code ", job.exit_code(), ")");
  }
  return s;
}

namespace {

// "distill.temperature=2, train.seed=1" (the JSON values, sorted by field).
std::string SweptValues(const Job& job) {
  std::map<std::string, std::string> sorted(job.sweep_values().begin(), job.sweep_values().end());
  std::vector<std::string> parts;
  for (const auto& [field, value] : sorted) parts.push_back(absl::StrCat(field, "=", value));
  return absl::StrJoin(parts, ", ");
}

// The jobs in tree order: each top-level job, a listed sweep's children
// right after it (in the sweep's order); a child whose sweep is not listed
// stays where it is. depth[i] is 1 for a child under its sweep.
std::vector<const Job*> TreeOrder(const std::vector<Job>& jobs, std::vector<int>* depth) {
  std::map<std::string, const Job*> by_id;
  for (const Job& j : jobs) by_id[j.id()] = &j;
  std::vector<const Job*> out;
  for (const Job& j : jobs) {
    if (!j.parent_id().empty() && by_id.count(j.parent_id()) > 0) continue;  // under its sweep
    out.push_back(&j);
    depth->push_back(0);
    for (const std::string& id : j.child_ids()) {
      auto it = by_id.find(id);
      if (it == by_id.end()) continue;
      out.push_back(it->second);
      depth->push_back(1);
    }
  }
  return out;
}

}  // namespace

std::string FormatSweepChildren(const std::vector<Job>& children) {
  std::string out;
  for (const Job& c : children) {
    std::string values = c.kind() == distill::v1::CAPTURE ? std::string("capture") : SweptValues(c);
    std::string failure = FormatFailure(c);
    absl::StrAppend(&out, "  ", c.id(), "  ", absl::StrFormat("%-9s", JobStateName(c.state())),
                    "  ", values, failure.empty() ? "" : "  ", failure, "\n");
  }
  return out;
}

std::string FormatJobSummary(const Job& job, absl::Time now) {
  std::vector<std::pair<std::string, std::string>> rows;
  rows.push_back({"id", job.id()});
  if (!job.spec().name().empty()) rows.push_back({"name", job.spec().name()});
  std::string type = absl::AsciiStrToLower(distill::v1::JobType_Name(job.spec().type()));
  rows.push_back({"type", type});
  if (job.kind() == distill::v1::SWEEP) {
    rows.push_back({"kind", absl::StrCat("sweep of ", job.child_ids_size(), " jobs")});
  } else if (job.kind() == distill::v1::CAPTURE) {
    rows.push_back({"kind", "capture (fills teacher.cache)"});
  }
  if (!job.parent_id().empty()) rows.push_back({"sweep", job.parent_id()});
  if (!job.sweep_values().empty()) rows.push_back({"swept", SweptValues(job)});
  std::string state = JobStateName(job.state());
  if (job.state() == distill::v1::QUEUED && job.queue_position() > 0) {
    absl::StrAppend(&state, " (position ", job.queue_position(), ")");
  }
  rows.push_back({"state", state});
  if (!FormatFailure(job).empty()) rows.push_back({"failure", FormatFailure(job)});
  rows.push_back(
      {"attempt", absl::StrCat(job.attempt(), " (max retries ", job.max_retries(), ")")});
  rows.push_back({"priority", absl::StrCat(job.priority())});
  std::string ranks = absl::StrCat(job.ranks());
  if (!job.hosts().empty()) absl::StrAppend(&ranks, " on ", absl::StrJoin(job.hosts(), ", "));
  rows.push_back({"ranks", ranks});
  if (job.progress().step() > 0) rows.push_back({"progress", FormatProgressLine(job)});
  rows.push_back({"created", FormatTime(job.create_time(), now)});
  if (HasTime(job.start_time())) rows.push_back({"started", FormatTime(job.start_time(), now)});
  if (HasTime(job.end_time())) {
    std::string ended = FormatTime(job.end_time(), now);
    if (HasTime(job.start_time())) {
      absl::StrAppend(
          &ended, ", ran ",
          FormatDuration(absl::ToDoubleSeconds(ToTime(job.end_time()) - ToTime(job.start_time()))));
    }
    rows.push_back({"ended", ended});
  }
  if (!job.output_dir().empty()) rows.push_back({"output", job.output_dir()});
  if (!job.log_dir().empty()) rows.push_back({"logs", job.log_dir()});
  if (!job.request_id().empty()) rows.push_back({"request id", job.request_id()});
  std::string out;
  for (const auto& [k, v] : rows) absl::StrAppendFormat(&out, "%-11s %s\n", k + ":", v);
  return out;
}

std::string FormatJobTable(const std::vector<Job>& jobs, absl::Time now) {
  std::vector<std::vector<std::string>> rows = {
      {"ID", "STATE", "NAME", "TYPE", "PRI", "STEP", "LOSS", "AGE"}};
  std::vector<int> depth;
  const std::vector<const Job*> ordered = TreeOrder(jobs, &depth);
  for (size_t i = 0; i < ordered.size(); ++i) {
    const Job& job = *ordered[i];
    const auto& p = job.progress();
    std::string state = JobStateName(job.state());
    if (job.state() == distill::v1::QUEUED && job.queue_position() > 0) {
      absl::StrAppend(&state, " #", job.queue_position());
    }
    rows.push_back({std::string(2 * depth[i], ' ') + job.id(), state,
                    job.spec().name().empty() ? "-" : Clip(job.spec().name(), 24),
                    absl::AsciiStrToLower(distill::v1::JobType_Name(job.spec().type())),
                    absl::StrCat(job.priority()), p.step() > 0 ? StepText(job) : "-",
                    p.step() > 0 ? absl::StrFormat("%.4f", p.loss()) : "-",
                    HasTime(job.create_time())
                        ? FormatDuration(absl::ToDoubleSeconds(now - ToTime(job.create_time())))
                        : "-"});
  }
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      absl::StrAppend(&line, row[c],
                      c + 1 < row.size() ? std::string(widths[c] - row[c].size() + 2, ' ') : "");
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  std::string out;
  // Serialising a well-formed message cannot fail.
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

void WatchPrinter::ClearBar() {
  if (bar_shown_) out_ << "\r\033[K";
  bar_shown_ = false;
}

void WatchPrinter::OnEvent(const JobEvent& event) {
  const Job& job = event.job();
  if (event.kind() == JobEvent::STATE_CHANGED) {
    ClearBar();
    std::string line =
        absl::StrCat(absl::FormatTime("%H:%M:%S", ToTime(event.time()), absl::LocalTimeZone()), " ",
                     JobStateName(job.state()));
    if (!event.message().empty()) absl::StrAppend(&line, ": ", event.message());
    out_ << line << "\n";
  } else if (tty_) {
    ClearBar();
  }
  if (tty_) {
    if (!IsTerminal(job.state()) && job.progress().step() > 0) {
      out_ << FormatProgressBar(job, width_);
      bar_shown_ = true;
    }
  } else if (event.kind() == JobEvent::PROGRESS && job.progress().step() != last_step_printed_ &&
             job.progress().step() > 0) {
    last_step_printed_ = job.progress().step();
    out_ << FormatProgressLine(job) << "\n";
  }
  out_.flush();
}

void WatchPrinter::Finish(const Job& job) {
  ClearBar();
  std::string line = absl::StrCat("job ", job.id(), " ", JobStateName(job.state()));
  if (HasTime(job.start_time()) && HasTime(job.end_time())) {
    absl::StrAppend(
        &line, " in ",
        FormatDuration(absl::ToDoubleSeconds(ToTime(job.end_time()) - ToTime(job.start_time()))));
  }
  if (job.progress().step() > 0) {
    absl::StrAppend(&line, ": step ", StepText(job), ", loss ", FormatLoss(job));
    if (job.progress().eval_loss() > 0)
      absl::StrAppendFormat(&line, ", eval loss %.4f", job.progress().eval_loss());
  }
  const std::string failure = FormatFailure(job);
  if (!failure.empty() && job.state() != distill::v1::SUCCEEDED)
    absl::StrAppend(&line, " (", failure, ")");
  out_ << line << std::endl;
}

int ExitCodeForJob(const Job& job) { return job.state() == distill::v1::SUCCEEDED ? 0 : 1; }

}  // namespace distill::coordinator::ctl
