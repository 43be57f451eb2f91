#include "coordinator/ctl/commands.h"

#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/fs_util.h"
#include "common/spec.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "common/sweep.h"
#include "coordinator/ctl/format.h"
#include "coordinator/ctl/report.h"

namespace distill::coordinator::ctl {
namespace v1 = distill::v1;
namespace fs = std::filesystem;

namespace {

std::string RandomRequestId() {
  std::random_device rd;
  std::uniform_int_distribution<uint64_t> dist;
  return absl::StrFormat("ctl-%016x%016x", dist(rd), dist(rd));
}

int Fail(const Terminal& term, const absl::Status& status) {
  *term.err << ErrorLine(status) << std::endl;
  return kExitError;
}

// Watches `id` to its end; the exit code says whether it succeeded.
int WatchToEnd(const std::string& id, CoordinatorClient& client, const Terminal& term) {
  WatchPrinter printer(*term.out, term.tty, term.width);
  absl::StatusOr<v1::Job> job =
      client.Watch(id, [&printer](const v1::JobEvent& event) { printer.OnEvent(event); });
  if (!job.ok()) return Fail(term, job.status());
  printer.Finish(*job);
  if (job->state() != v1::SUCCEEDED) {
    std::string why = FormatFailure(*job);
    *term.err << "distillctl: job " << id << " " << JobStateName(job->state())
              << (why.empty() ? "" : ": ") << why << std::endl;
  }
  return ExitCodeForJob(*job);
}

// A sweep's children, in its order.
absl::StatusOr<std::vector<v1::Job>> GetChildren(const v1::Job& sweep, CoordinatorClient& client) {
  std::vector<v1::Job> children;
  for (const std::string& id : sweep.child_ids()) {
    ASSIGN_OR_RETURN(v1::Job child, client.Get(id));
    children.push_back(std::move(child));
  }
  return children;
}

int Submit(const CtlArgs& args, CoordinatorClient& client, const Terminal& term) {
  absl::StatusOr<v1::SubmitJobRequest> request = BuildSubmitRequest(args);
  if (!request.ok()) return Fail(term, request.status());
  absl::StatusOr<v1::Job> job = client.Submit(*request);
  if (!job.ok()) return Fail(term, job.status());
  *term.out << job->id() << std::endl;
  if (job->kind() == v1::SWEEP) {
    absl::StatusOr<std::vector<v1::Job>> children = GetChildren(*job, client);
    if (!children.ok()) return Fail(term, children.status());
    *term.out << FormatSweepChildren(*children);
  }
  if (!args.Has("watch")) return kExitOk;
  return WatchToEnd(job->id(), client, term);
}

int Get(const CtlArgs& args, CoordinatorClient& client, const Terminal& term) {
  absl::StatusOr<v1::Job> job = client.Get(args.positional[0]);
  if (!job.ok()) return Fail(term, job.status());
  *term.out << (args.Has("json") ? ToJson(*job) : FormatJobSummary(*job, absl::Now()));
  if (args.Has("json")) *term.out << "\n";
  if (job->kind() == v1::SWEEP && !args.Has("json")) {
    absl::StatusOr<std::vector<v1::Job>> children = GetChildren(*job, client);
    if (!children.ok()) return Fail(term, children.status());
    *term.out << "children:\n" << FormatSweepChildren(*children);
  }
  return kExitOk;
}

int List(const CtlArgs& args, CoordinatorClient& client, const Terminal& term) {
  v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
  if (args.Has("state")) {
    absl::StatusOr<v1::JobState> parsed = ParseJobState(args.Get("state"));
    if (!parsed.ok()) {
      *term.err << "distillctl: --state: " << parsed.status().message() << std::endl;
      return kExitUsage;
    }
    state = *parsed;
  }
  absl::StatusOr<int> page_size = args.Int("page-size", 0);  // 0: the server's default
  if (!page_size.ok() || *page_size < 0) {
    *term.err << "distillctl: --page-size: must be a non-negative integer" << std::endl;
    return kExitUsage;
  }
  absl::StatusOr<std::vector<v1::Job>> jobs = client.ListAll(state, *page_size);
  if (!jobs.ok()) return Fail(term, jobs.status());
  if (args.Has("json")) {
    v1::ListJobsResponse all;
    for (const v1::Job& job : *jobs) *all.add_jobs() = job;
    *term.out << ToJson(all) << "\n";
  } else {
    *term.out << FormatJobTable(*jobs, absl::Now());
  }
  return kExitOk;
}

int Cancel(const CtlArgs& args, CoordinatorClient& client, const Terminal& term) {
  absl::StatusOr<v1::Job> job = client.Cancel(args.positional[0], args.Has("force"));
  if (!job.ok()) return Fail(term, job.status());
  *term.out << job->id() << " " << JobStateName(job->state()) << std::endl;
  return kExitOk;
}

int Delete(const CtlArgs& args, CoordinatorClient& client, const Terminal& term) {
  absl::StatusOr<v1::Job> job = client.Delete(args.positional[0]);
  if (!job.ok()) return Fail(term, job.status());
  *term.out << job->id() << " deleted";
  if (job->child_ids_size() > 0) *term.out << " with its " << job->child_ids_size() << " jobs";
  *term.out << std::endl;
  return kExitOk;
}

int Logs(const CtlArgs& args, CoordinatorClient& client, const Terminal& term) {
  v1::StreamLogsRequest request;
  request.set_id(args.positional[0]);
  request.set_follow(args.Has("follow"));
  absl::StatusOr<int> rank = args.Int("rank", -1);
  absl::StatusOr<int> attempt = args.Int("attempt", 0);
  if (!rank.ok() || !attempt.ok()) {
    *term.err << "distillctl: " << (rank.ok() ? attempt.status() : rank.status()).message()
              << std::endl;
    return kExitUsage;
  }
  if (args.Has("rank")) request.set_rank(*rank);
  request.set_attempt(*attempt);
  // Prefix lines with their rank only when several ranks can interleave.
  bool prefix = false;
  if (!args.Has("rank")) {
    absl::StatusOr<v1::Job> job = client.Get(request.id());
    if (!job.ok()) return Fail(term, job.status());
    prefix = job->ranks() > 1;
  }
  LogWriter writer(*term.out, prefix);
  absl::Status status =
      client.StreamLogs(request, [&writer](const v1::LogChunk& c) { writer.Write(c); });
  writer.Flush();
  if (!status.ok()) return Fail(term, status);
  return kExitOk;
}

int Report(const CtlArgs& args, CoordinatorClient& client, const Terminal& term) {
  if (args.Get("out").empty()) {
    *term.err << "distillctl: report: --out DIR is required" << std::endl;
    return kExitUsage;
  }
  ReportOptions options;
  options.out_dir = args.Get("out");
  absl::Status status = WriteReport(args.positional, options, client, *term.out);
  if (!status.ok()) return Fail(term, status);
  return kExitOk;
}

}  // namespace

std::string ErrorLine(const absl::Status& status) {
  return absl::StrCat("distillctl: ", absl::StatusCodeToString(status.code()), ": ",
                      status.message());
}

absl::StatusOr<v1::SubmitJobRequest> BuildSubmitRequest(const CtlArgs& args) {
  const std::string& path = args.positional.at(0);
  ASSIGN_OR_RETURN(std::string text, common::ReadFileToString(path));
  ASSIGN_OR_RETURN(v1::JobSpec spec, common::ParseJobSpec(text, path));
  // The coordinator may run elsewhere with another working directory: send
  // absolute paths, relative ones meaning "beside the spec file".
  std::error_code ec;
  fs::path dir = fs::absolute(fs::path(path), ec).parent_path();
  if (ec) return absl::InvalidArgumentError(absl::StrCat(path, ": ", ec.message()));
  common::ResolveSpecPaths(dir.lexically_normal().string(), &spec);
  common::ResolveSweepPaths(dir.lexically_normal().string(), &spec);
  // A sweep is checked child by child (the coordinator expands it again).
  absl::Status valid =
      spec.sweep_size() > 0 ? common::ExpandSweep(spec).status() : common::ValidateJobSpec(spec);
  RETURN_IF_ERROR(common::WithPrefix(valid, path));

  v1::SubmitJobRequest request;
  *request.mutable_spec() = spec;
  if (args.Has("capture")) request.set_kind(v1::CAPTURE);
  request.set_request_id(args.Has("request-id") ? args.Get("request-id") : RandomRequestId());
  ASSIGN_OR_RETURN(int priority, args.Int("priority", 0));
  request.set_priority(priority);
  if (args.Has("max-retries")) {
    ASSIGN_OR_RETURN(int max_retries, args.Int("max-retries", 0));
    if (max_retries < 0) return absl::InvalidArgumentError("--max-retries: must be >= 0");
    request.set_max_retries(max_retries);
  }
  return request;
}

int RunCommand(const CtlArgs& args, CoordinatorClient& client, const Terminal& term) {
  if (args.command == "submit") {
    // Flag values are usage errors; a bad spec is an error in the input (1).
    for (const char* flag : {"priority", "max-retries"}) {
      if (!args.Int(flag, 0).ok()) {
        *term.err << "distillctl: " << args.Int(flag, 0).status().message() << std::endl;
        return kExitUsage;
      }
    }
    return Submit(args, client, term);
  }
  if (args.command == "get") return Get(args, client, term);
  if (args.command == "list") return List(args, client, term);
  if (args.command == "watch") return WatchToEnd(args.positional[0], client, term);
  if (args.command == "cancel") return Cancel(args, client, term);
  if (args.command == "delete") return Delete(args, client, term);
  if (args.command == "logs") return Logs(args, client, term);
  if (args.command == "report") return Report(args, client, term);
  *term.err << "distillctl: unknown command '" << args.command << "'" << std::endl;
  return kExitUsage;
}

void LogWriter::Write(const v1::LogChunk& chunk) {
  if (!prefix_) {
    out_ << chunk.data();
    out_.flush();
    return;
  }
  std::string& buf = partial_[chunk.rank()];
  buf += chunk.data();
  size_t start = 0;
  for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1) {
    out_ << "[rank " << chunk.rank() << "] "
         << absl::string_view(buf).substr(start, nl + 1 - start);
  }
  buf.erase(0, start);
  out_.flush();
}

void LogWriter::Flush() {
  for (auto& [rank, buf] : partial_) {
    if (!buf.empty()) out_ << "[rank " << rank << "] " << buf << "\n";
    buf.clear();
  }
  out_.flush();
}

}  // namespace distill::coordinator::ctl
