// CoordinatorClient: distillctl's view of the distill.v1.Coordinator service.
// Each method is one user-level operation over the gRPC stub; errors come back
// as absl::Status with the server's code and message unchanged (gRPC and
// absl codes are the same numbers). Adds the bearer token to every call.
// Thread-compatible: one client per thread, or external locking.
#ifndef DISTILL_COORDINATOR_CTL_CLIENT_H_
#define DISTILL_COORDINATOR_CTL_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coordinator/ctl/args.h"
#include "distill/v1/coordinator.grpc.pb.h"

namespace distill::coordinator::ctl {

// absl::Status with the same code and message.
absl::Status FromGrpcStatus(const grpc::Status& status);

class CoordinatorClient {
 public:
  explicit CoordinatorClient(const ConnectionOptions& options);
  // For tests: a client over an existing channel.
  CoordinatorClient(const ConnectionOptions& options, std::shared_ptr<grpc::Channel> channel);

  absl::StatusOr<distill::v1::Job> Submit(const distill::v1::SubmitJobRequest& request);
  absl::StatusOr<distill::v1::Job> Get(const std::string& id);
  absl::StatusOr<distill::v1::ListJobsResponse> ListPage(
      const distill::v1::ListJobsRequest& request);
  // Every job matching `state` (unspecified = all), following page tokens.
  absl::StatusOr<std::vector<distill::v1::Job>> ListAll(distill::v1::JobState state, int page_size);
  absl::StatusOr<distill::v1::Job> Cancel(const std::string& id, bool force);
  // The job as it was before its deletion.
  absl::StatusOr<distill::v1::Job> Delete(const std::string& id);

  // Streams the job's events to `on_event` until its terminal state and
  // returns the job as of that event. A stream that breaks after events have
  // arrived (coordinator restart) is resumed with after_sequence, waiting up
  // to `resume_timeout` for the coordinator to come back; events are never
  // delivered twice.
  absl::StatusOr<distill::v1::Job> Watch(
      const std::string& id, const std::function<void(const distill::v1::JobEvent&)>& on_event,
      std::chrono::milliseconds resume_timeout = std::chrono::seconds(60));

  // The job's events so far, oldest first, without waiting for the job: a
  // finished job's whole log; for one still going, the events up to the one
  // current as of `job` (its update_time), or up to a pause of `idle` in the
  // stream (a state written without an event). Not resumed across a broken
  // stream: the error comes back.
  absl::StatusOr<std::vector<distill::v1::JobEvent>> EventsSoFar(
      const distill::v1::Job& job, std::chrono::milliseconds idle = std::chrono::seconds(1));

  // Streams the job's log chunks to `on_chunk` (with `follow`, until the job
  // ends).
  absl::Status StreamLogs(const distill::v1::StreamLogsRequest& request,
                          const std::function<void(const distill::v1::LogChunk&)>& on_chunk);

 private:
  // A context with the token and, for unary calls, the deadline.
  std::unique_ptr<grpc::ClientContext> NewContext(bool unary) const;

  const ConnectionOptions options_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<distill::v1::Coordinator::Stub> stub_;
};

// The channel credentials for `options`: TLS with the given roots, or plaintext.
std::shared_ptr<grpc::ChannelCredentials> MakeCredentials(const ConnectionOptions& options);

}  // namespace distill::coordinator::ctl

#endif  // DISTILL_COORDINATOR_CTL_CLIENT_H_
