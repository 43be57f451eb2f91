// CoordinatorService: the distill.v1.Coordinator gRPC API over a Coordinator.
// Checks the bearer token on every call (Note [One auth check]), validates submitted specs in full
// (INVALID_ARGUMENT naming the field) and confines their paths to the
// configured roots (PERMISSION_DENIED naming the field). The unary calls and
// WatchJob are on gRPC's callback API (Note [Callback unary calls], Note
// [Watch fan-out]); StreamLogs and ReportProgress are synchronous, holding a
// server thread each. Thread-safe.
#ifndef DISTILL_COORDINATOR_SERVICE_H_
#define DISTILL_COORDINATOR_SERVICE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "coordinator/coordinator.h"
#include "coordinator/grpc_status.h"
#include "coordinator/metrics.h"
#include "coordinator/watch_hub.h"
#include "distill/v1/coordinator.grpc.pb.h"

namespace distill::coordinator {

struct ServiceOptions {
  // Expected in `authorization: Bearer TOKEN`; empty = no authentication.
  std::string auth_token;
  // Inputs (models, data, tokenizer) must lie under this directory; empty = anywhere.
  std::string data_root;
  // Outputs must lie under this directory; empty = anywhere.
  std::string output_root;
  // WatchJob streams open at once; beyond it WatchJob answers
  // RESOURCE_EXHAUSTED. Each costs a few hundred bytes and no thread (Note
  // [Watch fan-out]), so the cap guards memory and file descriptors.
  int max_watchers = 10000;
};

// Note [Input bounds] (common/spec.h): a submission's request_id, at most.
inline constexpr size_t kMaxRequestIdBytes = 256;

// Note [ListJobs budget]: a ListJobs response carries at most this many
// bytes, well under gRPC's default 4 MiB limit on a received message: a
// page ends early, with a next_page_token, rather than exceed it. A single
// job larger than the budget still comes, alone (Note [Input bounds] keeps
// it near 1 MiB).
inline constexpr size_t kListJobsMaxBytes = size_t{3} << 20;

// Checks a submitted spec: its size bounds first (Note [Input bounds] in
// common/spec.h), full validation (InvalidArgument "field: ..."),
// absolute paths (InvalidArgument) and roots (PermissionDenied "field: ...").
// A sweep is expanded and every child checked so (errors name the child); a
// CAPTURE job needs a distill spec with teacher.model and teacher.cache.
absl::Status CheckSubmittedSpec(const distill::v1::JobSpec& spec, const ServiceOptions& options,
                                distill::v1::JobKind kind = distill::v1::TRAIN);

// Note [ListJobs bytes]: ListJobs answers with the jobs' stored bytes instead
// of parsing each job and serializing it again (most of the call's CPU). A
// ListJobsResponse on the wire is each job as a length-delimited field 1 and
// the token as field 2; each stored job gets its current queue_position
// appended as one more field 9, and a parser keeps the last value of a scalar
// field, so a client reads exactly the Job that Coordinator::List() builds
// (tested against it), as if the server had parsed, set the position and
// serialized again.
std::string SerializeListJobsResponse(const std::vector<Coordinator::ListedJob>& jobs,
                                      const std::string& next_page_token);

// Note [Callback unary calls]: the short unary calls use gRPC's callback API
// (they run on gRPC's own few threads, cores / 2 clamped to 2..16 in gRPC
// 1.51, so they must never wait: a short mutex and a store read; SubmitJob
// does not even wait for its commit, the group commit's thread finishes its
// reactor). WatchJob is a callback stream too (Note [Watch fan-out]);
// StreamLogs and ReportProgress stay synchronous. The sync server gives each
// in-flight call a thread and creates and ends threads as load varies, which
// under 100 concurrent clients cost more CPU than the calls themselves.
using CoordinatorServiceBase = distill::v1::Coordinator::WithCallbackMethod_SubmitJob<
    distill::v1::Coordinator::WithCallbackMethod_GetJob<
        distill::v1::Coordinator::WithRawCallbackMethod_ListJobs<
            distill::v1::Coordinator::WithCallbackMethod_CancelJob<
                distill::v1::Coordinator::WithCallbackMethod_WatchJob<
                    distill::v1::Coordinator::Service>>>>>;

// A stream's reactor that answers `status` at once (a refused call).
template <typename Response>
class FinishedWriter final : public grpc::ServerWriteReactor<Response> {
 public:
  explicit FinishedWriter(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

class CoordinatorService final : public CoordinatorServiceBase {
 public:
  // `metrics` (may be null) gets each RPC's server-side duration.
  CoordinatorService(ServiceOptions options, Coordinator* coordinator, Metrics* metrics = nullptr)
      : options_(std::move(options)),
        coordinator_(coordinator),
        metrics_(metrics),
        watch_hub_(coordinator, options_.max_watchers, metrics) {}

  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* context,
                                      const distill::v1::SubmitJobRequest* request,
                                      distill::v1::Job* response) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context,
                                   const distill::v1::GetJobRequest* request,
                                   distill::v1::Job* response) override;
  // Raw: answers with the stored jobs' bytes (Note [ListJobs bytes]).
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* context,
                                      const distill::v1::CancelJobRequest* request,
                                      distill::v1::Job* response) override;
  grpc::ServerWriteReactor<distill::v1::JobEvent>* WatchJob(
      grpc::CallbackServerContext* context, const distill::v1::WatchJobRequest* request) override;
  grpc::Status StreamLogs(grpc::ServerContext* context,
                          const distill::v1::StreamLogsRequest* request,
                          grpc::ServerWriter<distill::v1::LogChunk>* writer) override;
  grpc::Status ReportProgress(grpc::ServerContext* context,
                              grpc::ServerReader<distill::v1::ProgressReport>* reader,
                              distill::v1::ReportProgressResponse* response) override;
  // Synchronous (a server thread): it removes the job's work directory.
  grpc::Status DeleteJob(grpc::ServerContext* context, const distill::v1::DeleteJobRequest* request,
                         distill::v1::Job* response) override;

 private:
  // Note [One auth check]: each RPC's work runs only through Authorized()
  // (or AuthorizedUnary(), AuthorizedWriter() for the callback calls), which
  // checks the bearer token first: the handlers above are one line that
  // hands their body to it, and their bodies (Do*, WatchHub::Open) never see
  // an unauthenticated call. service_test calls every method of the service's
  // descriptor without a token, so a new RPC that skips it fails that test.
  // `method` names the RPC in distill_rpc_duration_seconds, which gets the
  // call's duration (a stream's: its whole life).
  template <typename Body>
  grpc::Status Authorized(const char* method, const grpc::ServerContextBase* context,
                          Body&& body) const {
    const absl::Time start = absl::Now();
    grpc::Status st = CheckAuth(context);
    if (st.ok()) st = body();
    ObserveRpc(method, start);
    return st;
  }
  // Authorized(), answered through the callback context's default reactor.
  template <typename Body>
  grpc::ServerUnaryReactor* AuthorizedUnary(const char* method, grpc::CallbackServerContext* context,
                                            Body&& body) const {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(Authorized(method, context, std::forward<Body>(body)));
    return reactor;
  }
  // Authorized() for a callback stream: `body(start)` returns its reactor
  // (which observes the duration when the stream ends) or an error, answered
  // at once.
  template <typename Response, typename Body>
  grpc::ServerWriteReactor<Response>* AuthorizedWriter(const char* method,
                                                       grpc::CallbackServerContext* context,
                                                       Body&& body) const {
    const absl::Time start = absl::Now();
    grpc::Status st = CheckAuth(context);
    if (st.ok()) {
      absl::StatusOr<grpc::ServerWriteReactor<Response>*> reactor = body(start);
      if (reactor.ok()) return *reactor;
      st = ToGrpcStatus(reactor.status());
    }
    ObserveRpc(method, start);
    return new FinishedWriter<Response>(st);
  }
  void ObserveRpc(const char* method, absl::Time start) const;
  grpc::Status CheckAuth(const grpc::ServerContextBase* context) const;
  // SubmitJob's checks before the coordinator sees it (spec, roots); its
  // answer comes after the commit (SubmitJob).
  grpc::Status CheckSubmitJob(const distill::v1::SubmitJobRequest* request) const;
  // The calls' work, after Authorized().
  grpc::Status DoGetJob(const distill::v1::GetJobRequest* request, distill::v1::Job* response);
  grpc::Status DoListJobs(const grpc::ByteBuffer* request, grpc::ByteBuffer* response);
  grpc::Status DoCancelJob(const distill::v1::CancelJobRequest* request,
                           distill::v1::Job* response);
  grpc::Status DoStreamLogs(grpc::ServerContext* context,
                            const distill::v1::StreamLogsRequest* request,
                            grpc::ServerWriter<distill::v1::LogChunk>* writer);
  grpc::Status DoReportProgress(grpc::ServerReader<distill::v1::ProgressReport>* reader);
  grpc::Status DoDeleteJob(const distill::v1::DeleteJobRequest* request,
                           distill::v1::Job* response);

  const ServiceOptions options_;
  Coordinator* const coordinator_;
  Metrics* const metrics_;
  WatchHub watch_hub_;  // WatchJob's streams
};

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_SERVICE_H_
