#include "coordinator/service.h"

#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/plan.h"
#include "common/spec.h"
#include "common/status_macros.h"
#include "common/sweep.h"
#include "coordinator/page_token.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace distill::coordinator {
namespace {

namespace fs = std::filesystem;
using distill::v1::JobSpec;

constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 1000;
constexpr size_t kLogChunkBytes = 64 << 10;
constexpr absl::Duration kStreamPoll = absl::Milliseconds(250);

// Whether `path` lies under `root` (after resolving symlinks and "..").
bool Under(const std::string& path, const std::string& root) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::path(path), ec);
  if (ec) p = fs::path(path).lexically_normal();
  fs::path r = fs::weakly_canonical(fs::path(root), ec);
  if (ec) r = fs::path(root).lexically_normal();
  auto pi = p.begin();
  for (auto ri = r.begin(); ri != r.end(); ++ri) {
    if (ri->empty()) continue;  // trailing slash
    if (pi == p.end() || *pi != *ri) return false;
    ++pi;
  }
  return true;
}

struct PathField {
  std::string field;
  std::string path;
  bool output;
};

std::vector<PathField> PathFields(const JobSpec& spec) {
  std::vector<PathField> out;
  for (const common::PathField& f : common::MakePlan(common::WithDefaults(spec)).paths)
    out.push_back({f.field, f.path, f.output});
  return out;
}

}  // namespace

std::string SerializeListJobsResponse(const std::vector<Coordinator::ListedJob>& jobs,
                                      const std::string& next_page_token) {
  using google::protobuf::io::CodedOutputStream;
  constexpr uint32_t kVarint = 0, kLengthDelimited = 2;
  auto tag = [](int field, uint32_t wire_type) {
    return (static_cast<uint32_t>(field) << 3) | wire_type;
  };
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    CodedOutputStream o(&stream);
    const uint32_t position_tag = tag(distill::v1::Job::kQueuePositionFieldNumber, kVarint);
    for (const Coordinator::ListedJob& j : jobs) {
      // queue_position is an int32 (>= 0 here): a plain varint.
      const auto position = static_cast<uint32_t>(j.queue_position);
      const size_t appended =
          CodedOutputStream::VarintSize32(position_tag) + CodedOutputStream::VarintSize32(position);
      o.WriteTag(tag(distill::v1::ListJobsResponse::kJobsFieldNumber, kLengthDelimited));
      o.WriteVarint32(static_cast<uint32_t>(j.stored.job.size() + appended));
      o.WriteString(j.stored.job);
      o.WriteTag(position_tag);
      o.WriteVarint32(position);
    }
    if (!next_page_token.empty()) {
      o.WriteTag(tag(distill::v1::ListJobsResponse::kNextPageTokenFieldNumber, kLengthDelimited));
      o.WriteVarint32(static_cast<uint32_t>(next_page_token.size()));
      o.WriteString(next_page_token);
    }
  }
  return out;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

namespace {

// Absolute paths, confined to the roots.
absl::Status CheckSpecPaths(const JobSpec& spec, const ServiceOptions& options) {
  std::vector<PathField> paths = PathFields(spec);
  for (const PathField& f : paths) {
    if (!fs::path(f.path).is_absolute()) {
      return absl::InvalidArgumentError(absl::StrCat(
          f.field, ": must be an absolute path (clients resolve relative paths), got '", f.path,
          "'"));
    }
  }
  for (const PathField& f : paths) {
    const std::string& root = f.output ? options.output_root : options.data_root;
    if (!root.empty() && !Under(f.path, root)) {
      return absl::PermissionDeniedError(absl::StrCat(f.field, ": '", f.path, "' lies outside the ",
                                                      f.output ? "output" : "data", " root ",
                                                      root));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckSubmittedSpec(const JobSpec& spec, const ServiceOptions& options,
                                distill::v1::JobKind kind) {
  if (spec.sweep_size() > 0) {
    ASSIGN_OR_RETURN(std::vector<common::SweepChild> children, common::ExpandSweep(spec));
    for (size_t i = 0; i < children.size(); ++i) {
      absl::Status st = CheckSpecPaths(children[i].spec, options);
      if (!st.ok()) {
        return absl::Status(st.code(), absl::StrCat("sweep child ", i, " (", children[i].label,
                                                    "): ", st.message()));
      }
    }
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(common::ValidateJobSpec(spec));
  if (kind == distill::v1::CAPTURE &&
      (spec.type() != distill::v1::DISTILL || spec.teacher().model().empty() ||
       spec.teacher().cache().empty())) {
    return absl::InvalidArgumentError(
        "teacher.cache: a capture job needs a distill spec with teacher.model and teacher.cache");
  }
  return CheckSpecPaths(spec, options);
}

grpc::Status CoordinatorService::CheckAuth(const grpc::ServerContextBase* context) const {
  if (options_.auth_token.empty()) return grpc::Status::OK;
  const auto& md = context->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end())
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing bearer token");
  const std::string got(it->second.data(), it->second.size());
  const std::string want = "Bearer " + options_.auth_token;
  // Constant time in the token's length.
  unsigned diff = got.size() != want.size();
  for (size_t i = 0; i < want.size(); ++i)
    diff |= static_cast<unsigned char>(want[i]) ^
            static_cast<unsigned char>(i < got.size() ? got[i] : 0);
  if (diff != 0) return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid bearer token");
  return grpc::Status::OK;
}

void CoordinatorService::ObserveRpc(const char* method, absl::Time start) const {
  if (metrics_ != nullptr) metrics_->ObserveRpc(method, absl::ToDoubleSeconds(absl::Now() - start));
}

grpc::ServerUnaryReactor* CoordinatorService::SubmitJob(
    grpc::CallbackServerContext* context, const distill::v1::SubmitJobRequest* request,
    distill::v1::Job* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time start = absl::Now();
  if (grpc::Status st = CheckAuth(context); !st.ok() || !(st = CheckSubmitJob(request)).ok()) {
    ObserveRpc("SubmitJob", start);
    reactor->Finish(st);
    return reactor;
  }
  // Answered after the group commit that holds the job (Note [Group commit]
  // in coordinator.h); gRPC keeps `response` alive until Finish().
  coordinator_->SubmitAsync(*request, [this, start, reactor, response](absl::StatusOr<distill::v1::Job> job) {
    ObserveRpc("SubmitJob", start);
    if (!job.ok()) {
      reactor->Finish(ToGrpcStatus(job.status()));
      return;
    }
    *response = std::move(*job);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::Status CoordinatorService::CheckSubmitJob(
    const distill::v1::SubmitJobRequest* request) const {
  if (!request->has_spec())
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "spec: required");
  if (request->request_id().size() > kMaxRequestIdBytes) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("request_id: at most ", kMaxRequestIdBytes, " bytes, got ",
                                     request->request_id().size()));
  }
  if (absl::Status st = CheckSubmittedSpec(request->spec(), options_, request->kind()); !st.ok())
    return ToGrpcStatus(st);
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* CoordinatorService::GetJob(grpc::CallbackServerContext* context,
                                                     const distill::v1::GetJobRequest* request,
                                                     distill::v1::Job* response) {
  return AuthorizedUnary("GetJob", context, [&] { return DoGetJob(request, response); });
}

grpc::Status CoordinatorService::DoGetJob(const distill::v1::GetJobRequest* request,
                                          distill::v1::Job* response) {
  absl::StatusOr<distill::v1::Job> job = coordinator_->Get(request->id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = std::move(*job);
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* CoordinatorService::ListJobs(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* response) {
  return AuthorizedUnary("ListJobs", context, [&] { return DoListJobs(request, response); });
}

grpc::Status CoordinatorService::DoListJobs(const grpc::ByteBuffer* raw_request,
                                            grpc::ByteBuffer* response) {
  distill::v1::ListJobsRequest req;
  const distill::v1::ListJobsRequest* request = &req;
  grpc::ByteBuffer copy(*raw_request);  // Deserialize() consumes its buffer
  grpc::Status parsed =
      grpc::SerializationTraits<distill::v1::ListJobsRequest>::Deserialize(&copy, &req);
  if (!parsed.ok()) return parsed;
  if (request->page_size() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "page_size: must be >= 0");
  }
  const int size =
      request->page_size() == 0 ? kDefaultPageSize : std::min(request->page_size(), kMaxPageSize);
  int64_t before = 0;
  if (!request->page_token().empty()) {
    absl::StatusOr<int64_t> seq = ParsePageToken(request->page_token(), request->state());
    if (!seq.ok()) return ToGrpcStatus(seq.status());
    before = *seq;
  }
  // Note [ListJobs budget]: the jobs' bytes plus, per job, its field's tag
  // and length and the appended queue_position (Note [ListJobs bytes]: at
  // most 12 bytes), plus the page token's field, stay within the budget.
  constexpr size_t kPerJobBytes = 12, kTokenBytes = 64;
  const size_t max_bytes = kListJobsMaxBytes - kTokenBytes - kPerJobBytes * size;
  bool more = false;
  absl::StatusOr<std::vector<Coordinator::ListedJob>> jobs =
      coordinator_->ListSerialized(request->state(), before, size, max_bytes, &more);
  if (!jobs.ok()) return ToGrpcStatus(jobs.status());
  auto* bytes = new std::string(SerializeListJobsResponse(
      *jobs, more && !jobs->empty() ? MakePageToken(jobs->back().stored.seq, request->state())
                                    : ""));
  grpc::Slice slice(
      bytes->data(), bytes->size(), [](void* p) { delete static_cast<std::string*>(p); }, bytes);
  grpc::ByteBuffer out(&slice, 1);
  response->Swap(&out);
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* CoordinatorService::CancelJob(
    grpc::CallbackServerContext* context, const distill::v1::CancelJobRequest* request,
    distill::v1::Job* response) {
  return AuthorizedUnary("CancelJob", context, [&] { return DoCancelJob(request, response); });
}

grpc::Status CoordinatorService::DoCancelJob(const distill::v1::CancelJobRequest* request,
                                             distill::v1::Job* response) {
  absl::StatusOr<distill::v1::Job> job = coordinator_->Cancel(request->id(), request->force());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = std::move(*job);
  return grpc::Status::OK;
}

grpc::ServerWriteReactor<distill::v1::JobEvent>* CoordinatorService::WatchJob(
    grpc::CallbackServerContext* context, const distill::v1::WatchJobRequest* request) {
  return AuthorizedWriter<distill::v1::JobEvent>(
      "WatchJob", context, [&](absl::Time start) { return watch_hub_.Open(*request, start); });
}

grpc::Status CoordinatorService::StreamLogs(grpc::ServerContext* context,
                                            const distill::v1::StreamLogsRequest* request,
                                            grpc::ServerWriter<distill::v1::LogChunk>* writer) {
  return Authorized("StreamLogs", context, [&] { return DoStreamLogs(context, request, writer); });
}

grpc::Status CoordinatorService::DoStreamLogs(grpc::ServerContext* context,
                                              const distill::v1::StreamLogsRequest* request,
                                              grpc::ServerWriter<distill::v1::LogChunk>* writer) {
  absl::StatusOr<distill::v1::Job> job = coordinator_->Get(request->id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  if (request->has_rank() && (request->rank() < 0 || request->rank() >= job->ranks())) {
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("rank: the job has ranks 0..", job->ranks() - 1, ", got ", request->rank()));
  }
  if (request->attempt() < 0 || request->attempt() > job->attempt()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("attempt: the job has attempts 1..", job->attempt(), ", got ",
                                     request->attempt()));
  }
  int attempt = request->attempt() == 0 ? job->attempt() : request->attempt();
  std::map<int, int64_t> offsets;  // rank -> bytes sent
  std::string buf(kLogChunkBytes, '\0');
  while (true) {
    // Read the state before the files, so that the final pass after the
    // job ends sends everything written before it ended.
    job = coordinator_->Get(request->id());
    if (!job.ok()) return ToGrpcStatus(job.status());
    const bool ended = IsTerminal(job->state()) ||
                       (request->attempt() != 0 && job->attempt() != attempt) ||
                       job->state() == distill::v1::QUEUED;
    for (int rank = 0; attempt > 0 && rank < job->ranks(); ++rank) {
      if (request->has_rank() && rank != request->rank()) continue;
      std::ifstream in(coordinator_->RankLogPath(job->id(), attempt, rank), std::ios::binary);
      if (!in) continue;
      in.seekg(offsets[rank]);
      while (in) {
        in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
        const std::streamsize n = in.gcount();
        if (n <= 0) break;
        distill::v1::LogChunk chunk;
        chunk.set_rank(rank);
        chunk.set_attempt(attempt);
        chunk.set_data(buf.data(), static_cast<size_t>(n));
        if (!writer->Write(chunk))
          return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
        offsets[rank] += n;
      }
    }
    if (!request->follow() || context->IsCancelled()) break;
    if (IsTerminal(job->state())) break;
    if (request->attempt() == 0 && job->attempt() != attempt) {
      attempt = job->attempt();  // a retry: follow the new attempt
      offsets.clear();
      continue;
    }
    if (ended && request->attempt() != 0) break;
    const int64_t version = coordinator_->version();
    coordinator_->WaitForChange(version, kStreamPoll);
  }
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::ReportProgress(
    grpc::ServerContext* context, grpc::ServerReader<distill::v1::ProgressReport>* reader,
    distill::v1::ReportProgressResponse* response) {
  return Authorized("ReportProgress", context, [&] { return DoReportProgress(reader); });
}

grpc::Status CoordinatorService::DoReportProgress(
    grpc::ServerReader<distill::v1::ProgressReport>* reader) {
  distill::v1::ProgressReport report;
  while (reader->Read(&report)) {
    absl::Status st = coordinator_->Report(report);
    if (!st.ok()) return ToGrpcStatus(st);
  }
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::DeleteJob(grpc::ServerContext* context,
                                           const distill::v1::DeleteJobRequest* request,
                                           distill::v1::Job* response) {
  return Authorized("DeleteJob", context, [&] { return DoDeleteJob(request, response); });
}

grpc::Status CoordinatorService::DoDeleteJob(const distill::v1::DeleteJobRequest* request,
                                             distill::v1::Job* response) {
  absl::StatusOr<distill::v1::Job> job = coordinator_->Delete(request->id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = std::move(*job);
  return grpc::Status::OK;
}

}  // namespace distill::coordinator
