#include "coordinator/ctl/client.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "coordinator/ctl/format.h"

namespace distill::coordinator::ctl {
namespace v1 = distill::v1;
using Clock = std::chrono::steady_clock;

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

std::shared_ptr<grpc::ChannelCredentials> MakeCredentials(const ConnectionOptions& options) {
  if (options.tls_ca_pem.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = options.tls_ca_pem;
  return grpc::SslCredentials(ssl);
}

CoordinatorClient::CoordinatorClient(const ConnectionOptions& options)
    : CoordinatorClient(options, grpc::CreateChannel(options.address, MakeCredentials(options))) {}

CoordinatorClient::CoordinatorClient(const ConnectionOptions& options,
                                     std::shared_ptr<grpc::Channel> channel)
    : options_(options), channel_(std::move(channel)), stub_(v1::Coordinator::NewStub(channel_)) {}

std::unique_ptr<grpc::ClientContext> CoordinatorClient::NewContext(bool unary) const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!options_.token.empty()) context->AddMetadata("authorization", "Bearer " + options_.token);
  if (unary) context->set_deadline(std::chrono::system_clock::now() + options_.rpc_timeout);
  return context;
}

absl::StatusOr<v1::Job> CoordinatorClient::Submit(const v1::SubmitJobRequest& request) {
  auto context = NewContext(true);
  v1::Job job;
  grpc::Status s = stub_->SubmitJob(context.get(), request, &job);
  if (!s.ok()) return FromGrpcStatus(s);
  return job;
}

absl::StatusOr<v1::Job> CoordinatorClient::Get(const std::string& id) {
  auto context = NewContext(true);
  v1::GetJobRequest request;
  request.set_id(id);
  v1::Job job;
  grpc::Status s = stub_->GetJob(context.get(), request, &job);
  if (!s.ok()) return FromGrpcStatus(s);
  return job;
}

absl::StatusOr<v1::ListJobsResponse> CoordinatorClient::ListPage(
    const v1::ListJobsRequest& request) {
  auto context = NewContext(true);
  v1::ListJobsResponse response;
  grpc::Status s = stub_->ListJobs(context.get(), request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

absl::StatusOr<std::vector<v1::Job>> CoordinatorClient::ListAll(v1::JobState state, int page_size) {
  std::vector<v1::Job> jobs;
  v1::ListJobsRequest request;
  request.set_state(state);
  request.set_page_size(page_size);
  for (;;) {
    absl::StatusOr<v1::ListJobsResponse> page = ListPage(request);
    if (!page.ok()) return page.status();
    for (auto& job : *page->mutable_jobs()) jobs.push_back(std::move(job));
    if (page->next_page_token().empty()) break;
    // A server that hands back the token it was given would loop forever.
    if (page->next_page_token() == request.page_token()) {
      return absl::InternalError("ListJobs returned the same page token twice");
    }
    request.set_page_token(page->next_page_token());
  }
  return jobs;
}

absl::StatusOr<v1::Job> CoordinatorClient::Cancel(const std::string& id, bool force) {
  auto context = NewContext(true);
  v1::CancelJobRequest request;
  request.set_id(id);
  request.set_force(force);
  v1::Job job;
  grpc::Status s = stub_->CancelJob(context.get(), request, &job);
  if (!s.ok()) return FromGrpcStatus(s);
  return job;
}

absl::StatusOr<v1::Job> CoordinatorClient::Delete(const std::string& id) {
  auto context = NewContext(true);
  v1::DeleteJobRequest request;
  request.set_id(id);
  v1::Job job;
  grpc::Status s = stub_->DeleteJob(context.get(), request, &job);
  if (!s.ok()) return FromGrpcStatus(s);
  return job;
}

absl::StatusOr<v1::Job> CoordinatorClient::Watch(
    const std::string& id, const std::function<void(const v1::JobEvent&)>& on_event,
    std::chrono::milliseconds resume_timeout) {
  int64_t after_sequence = 0;
  bool seen_any = false;
  std::chrono::milliseconds backoff(100);
  Clock::time_point last_contact = Clock::now();
  for (;;) {
    auto context = NewContext(false);
    // While resuming, wait for a restarting coordinator instead of failing
    // at once; the first call fails fast so a wrong address is reported.
    if (seen_any) {
      context->set_wait_for_ready(true);
      context->set_deadline(std::chrono::system_clock::now() +
                            (last_contact + resume_timeout - Clock::now()));
    }
    v1::WatchJobRequest request;
    request.set_id(id);
    request.set_after_sequence(after_sequence);
    auto reader = stub_->WatchJob(context.get(), request);
    v1::JobEvent event;
    std::optional<v1::Job> terminal;
    while (reader->Read(&event)) {
      if (event.sequence() <= after_sequence) continue;  // a replay across a resume
      after_sequence = event.sequence();
      seen_any = true;
      last_contact = Clock::now();
      on_event(event);
      if (IsTerminal(event.job().state())) terminal = event.job();
    }
    grpc::Status status = reader->Finish();
    if (terminal.has_value()) return *terminal;
    const bool retryable = status.ok() || status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                           (seen_any && status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
    if (!seen_any && !status.ok()) return FromGrpcStatus(status);
    if (!retryable) return FromGrpcStatus(status);
    if (Clock::now() - last_contact > resume_timeout) {
      return status.ok() ? absl::UnavailableError(
                               absl::StrCat("watch of ", id, " ended before the job did"))
                         : FromGrpcStatus(status);
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
  }
}

absl::StatusOr<std::vector<v1::JobEvent>> CoordinatorClient::EventsSoFar(
    const v1::Job& job, std::chrono::milliseconds idle) {
  using google::protobuf::util::TimeUtil;
  auto context = NewContext(false);
  v1::WatchJobRequest request;
  request.set_id(job.id());
  const bool ended = IsTerminal(job.state());
  const int64_t current_ns = TimeUtil::TimestampToNanoseconds(job.update_time());
  // A job still going streams on after its stored events: a watchdog ends
  // the call once the stream has been quiet for `idle`.
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;                      // guarded by mu
  bool idle_cancel = false;               // guarded by mu
  Clock::time_point last = Clock::now();  // guarded by mu
  std::thread watchdog;
  if (!ended) {
    watchdog = std::thread([&] {
      std::unique_lock<std::mutex> lock(mu);
      while (!done) {
        if (cv.wait_until(lock, last + idle, [&] { return done; })) break;
        if (Clock::now() >= last + idle) {
          idle_cancel = true;
          context->TryCancel();
          break;
        }
      }
    });
  }
  auto reader = stub_->WatchJob(context.get(), request);
  std::vector<v1::JobEvent> events;
  v1::JobEvent event;
  bool caught_up = false;
  while (reader->Read(&event)) {
    {
      std::lock_guard<std::mutex> lock(mu);
      last = Clock::now();
    }
    caught_up = !ended && TimeUtil::TimestampToNanoseconds(event.job().update_time()) >= current_ns;
    events.push_back(event);
    if (caught_up) {
      context->TryCancel();
      break;
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    done = true;
  }
  cv.notify_all();
  if (watchdog.joinable()) watchdog.join();
  const grpc::Status status = reader->Finish();
  if (status.ok() || caught_up || idle_cancel) return events;
  return FromGrpcStatus(status);
}

absl::Status CoordinatorClient::StreamLogs(
    const v1::StreamLogsRequest& request,
    const std::function<void(const v1::LogChunk&)>& on_chunk) {
  auto context = NewContext(false);
  auto reader = stub_->StreamLogs(context.get(), request);
  v1::LogChunk chunk;
  while (reader->Read(&chunk)) on_chunk(chunk);
  return FromGrpcStatus(reader->Finish());
}

}  // namespace distill::coordinator::ctl
