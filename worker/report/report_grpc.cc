#include "worker/report/report_grpc.h"

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/fs_util.h"

namespace distill::worker {
namespace {

using Clock = std::chrono::steady_clock;

std::string StatusText(const grpc::Status& s) {
  return absl::StrCat(absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code())),
                      s.error_message().empty() ? "" : ": ", s.error_message());
}

std::string GetEnv(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

}  // namespace

absl::StatusOr<std::unique_ptr<CoordinatorSink>> CoordinatorSink::Create(
    CoordinatorSinkOptions options, std::shared_ptr<grpc::ChannelCredentials> credentials) {
  if (options.target.empty()) return absl::InvalidArgumentError("coordinator address is empty");
  if (options.job_id.empty()) return absl::InvalidArgumentError("coordinator job id is empty");
  grpc::ChannelArguments args;
  // gRPC's default reconnect backoff grows to two minutes; a restarted
  // coordinator should hear from its ranks well within its heartbeat timeout.
  const int max_backoff_ms = static_cast<int>(options.max_reconnect_backoff.count());
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, std::min(250, max_backoff_ms));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, std::min(250, max_backoff_ms));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, max_backoff_ms);
  auto channel = grpc::CreateCustomChannel(options.target, credentials, args);
  return std::unique_ptr<CoordinatorSink>(new CoordinatorSink(std::move(options), channel));
}

CoordinatorSink::CoordinatorSink(CoordinatorSinkOptions options,
                                 std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      stub_(distill::v1::Coordinator::NewStub(channel_)) {
  thread_ = std::thread([this] { Run(); });
}

CoordinatorSink::~CoordinatorSink() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (active_ != nullptr) active_->TryCancel();
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

// Note [Every logged step is reported]: each step record (every log_every
// steps) and each eval goes to the coordinator as a report of its own, in
// order: the job's events are its loss curve (`distillctl report` draws it
// from them). Sending only the latest progress lost the records written while
// the stream was still connecting or slow: a run of 6 steps logged at 2, 4
// and 6 could reach the coordinator as step 6 alone. While the coordinator is
// unreachable the records wait, at most kMaxUnsent of them (the oldest go
// first); a record written into a stream that then broke is sent again on the
// next one, so the coordinator may see it twice.
void CoordinatorSink::OnStep(const StepRecord& r) {
  std::lock_guard<std::mutex> lock(mu_);
  SetStepProgress(r, &progress_);
  Queue();
}

void CoordinatorSink::OnStepDone(int64_t step) {
  std::lock_guard<std::mutex> lock(mu_);
  step_ = step;  // no wake-up: the next report, a heartbeat at the latest, carries it
}

void CoordinatorSink::OnEval(const EvalRecord& r) {
  std::lock_guard<std::mutex> lock(mu_);
  SetEvalProgress(r, &progress_);
  Queue();
}

void CoordinatorSink::Queue() {
  unsent_.emplace_back(queued_++, progress_);
  if (unsent_.size() > kMaxUnsent) unsent_.pop_front();
  dirty_ = false;  // the queue ends with the latest progress
  cv_.notify_all();
}

bool CoordinatorSink::Finish(bool training_finished) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!closing_) {
      closing_ = true;
      final_value_ = training_finished;
      cv_.notify_all();
    }
    if (!cv_.wait_for(lock, options_.finish_timeout, [this] { return done_; })) {
      // Unreachable or stuck coordinator: the run's result is already on disk,
      // so give up on the report rather than hold up the process's exit.
      stopping_ = true;
      if (active_ != nullptr) active_->TryCancel();
      cv_.notify_all();
    }
  }
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  return acknowledged_;
}

int64_t CoordinatorSink::reports_sent() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reports_sent_;
}

distill::v1::ProgressReport CoordinatorSink::MakeReport(bool final,
                                                       const distill::v1::Progress* progress) const {
  distill::v1::ProgressReport report;
  report.set_job_id(options_.job_id);
  report.set_rank(options_.rank);
  report.set_attempt(options_.attempt);
  if (progress != nullptr) *report.mutable_progress() = *progress;
  if (step_) report.set_step(*step_);
  report.set_final(final);
  return report;
}

void CoordinatorSink::LogUnreachable(const grpc::Status& status) {
  // Requires mu_. Once per outage: a worker log full of retries helps nobody.
  if (logged_unreachable_) return;
  logged_unreachable_ = true;
  std::cerr << "distill-worker: rank " << options_.rank
            << ": cannot report progress to coordinator " << options_.target << " ("
            << StatusText(status) << "); training continues, retrying in the background"
            << std::endl;
}

void CoordinatorSink::Run() {
  std::chrono::milliseconds backoff = options_.reconnect_backoff;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    lock.unlock();
    const StreamEnd end = RunStream();
    lock.lock();
    if (end == StreamEnd::kClosed || stopping_) break;
    // A stream that carried reports broke: start the backoff over.
    if (end == StreamEnd::kBroken) backoff = options_.reconnect_backoff;
    // After a close request, retry sooner: Finish() bounds the total wait.
    cv_.wait_for(lock, closing_ ? std::min(backoff, options_.reconnect_backoff) : backoff,
                 [this] { return stopping_; });
    backoff = std::min(backoff * 2, options_.max_reconnect_backoff);
  }
  done_ = true;
  cv_.notify_all();
}

CoordinatorSink::StreamEnd CoordinatorSink::RunStream() {
  grpc::ClientContext context;
  if (!options_.auth_token.empty()) {
    context.AddMetadata("authorization", "Bearer " + options_.auth_token);
  }
  distill::v1::ReportProgressResponse response;
  std::unique_lock<std::mutex> lock(mu_);
  if (stopping_) return StreamEnd::kFailed;
  active_ = &context;  // from here on the destructor and Finish() can cancel the call
  lock.unlock();
  std::unique_ptr<grpc::ClientWriter<distill::v1::ProgressReport>> writer =
      stub_->ReportProgress(&context, &response);
  lock.lock();

  // The first report on a new stream goes out at once: the records not yet
  // sent, or else the latest progress again. It tells a restarted coordinator
  // that this rank is alive, and it resends a record that was written into the
  // broken stream (a write that succeeds has only reached the transport) and
  // so may have been lost.
  dirty_ = unsent_.empty();
  bool wrote_any = false;
  Clock::time_point last_sent = Clock::now();
  while (!stopping_) {
    cv_.wait_until(lock, last_sent + options_.heartbeat_interval,
                   [this] { return dirty_ || !unsent_.empty() || closing_ || stopping_; });
    if (stopping_) break;
    // The queued records first, in order; the final report after them.
    const bool queued = !unsent_.empty();
    const bool last = closing_ && !queued;
    // A heartbeat carries no progress: the coordinator records an event per
    // progress report, and an unchanged one would only repeat the last.
    const bool resend = dirty_ || (last && progress_.ByteSizeLong() > 0);
    const int64_t seq = queued ? unsent_.front().first : -1;
    distill::v1::ProgressReport report = MakeReport(
        last && final_value_, queued ? &unsent_.front().second : resend ? &progress_ : nullptr);
    if (!queued) dirty_ = false;
    lock.unlock();
    const bool ok = writer->Write(report);
    lock.lock();
    if (!ok) {
      dirty_ = unsent_.empty();  // resend on the next stream
      break;
    }
    // Written: off the queue, unless OnStep dropped it meanwhile (kMaxUnsent).
    if (queued && !unsent_.empty() && unsent_.front().first == seq) unsent_.pop_front();
    ++reports_sent_;
    last_sent = Clock::now();
    if (!wrote_any && logged_unreachable_) {
      logged_unreachable_ = false;
      std::cerr << "distill-worker: rank " << options_.rank << ": reporting to coordinator "
                << options_.target << " again" << std::endl;
    }
    wrote_any = true;
    if (last) {
      lock.unlock();
      writer->WritesDone();
      const grpc::Status status = writer->Finish();
      lock.lock();
      active_ = nullptr;
      acknowledged_ = status.ok();
      if (status.ok()) return StreamEnd::kClosed;
      LogUnreachable(status);
      // Only a lost connection is worth another try; any other answer (e.g.
      // UNAUTHENTICATED, FAILED_PRECONDITION for a job that ended) is final.
      return status.error_code() == grpc::StatusCode::UNAVAILABLE ? StreamEnd::kFailed
                                                                  : StreamEnd::kClosed;
    }
  }
  // The stream broke (Finish() then returns at once with the reason) or the
  // sink is stopping (cancel first: the server would wait for more reports).
  if (stopping_) context.TryCancel();
  lock.unlock();
  const grpc::Status status = writer->Finish();
  lock.lock();
  // OK: the coordinator ended the stream itself (e.g. while shutting down).
  if (!stopping_ && !status.ok()) LogUnreachable(status);
  active_ = nullptr;
  return wrote_any ? StreamEnd::kBroken : StreamEnd::kFailed;
}

absl::StatusOr<std::unique_ptr<CoordinatorSink>> MakeCoordinatorSinkFromEnv() {
  CoordinatorSinkOptions options;
  options.target = GetEnv("DISTILL_COORDINATOR");
  if (options.target.empty()) return std::unique_ptr<CoordinatorSink>();
  options.job_id = GetEnv("DISTILL_JOB_ID");
  if (options.job_id.empty()) {
    return absl::InvalidArgumentError("DISTILL_COORDINATOR is set but DISTILL_JOB_ID is not");
  }
  options.auth_token = GetEnv("DISTILL_AUTH_TOKEN");
  struct IntVar {
    const char* name;
    int32_t* out;
  };
  std::string rank_var =
      GetEnv("OMPI_COMM_WORLD_RANK").empty() ? "PMI_RANK" : "OMPI_COMM_WORLD_RANK";
  for (const IntVar& v :
       {IntVar{"DISTILL_ATTEMPT", &options.attempt}, IntVar{rank_var.c_str(), &options.rank}}) {
    const std::string text = GetEnv(v.name);
    if (text.empty()) continue;
    if (!absl::SimpleAtoi(text, v.out) || *v.out < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(v.name, ": not a non-negative integer: '", text, "'"));
    }
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (const std::string ca_path = GetEnv("DISTILL_COORDINATOR_CA"); !ca_path.empty()) {
    // A coordinator serving TLS accepts nothing else: a rank that cannot
    // read the certificate fails fast instead of reporting into the void.
    absl::StatusOr<std::string> pem = common::ReadFileToString(ca_path);
    if (!pem.ok()) {
      return absl::Status(pem.status().code(),
                          absl::StrCat("DISTILL_COORDINATOR_CA: ", pem.status().message()));
    }
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *std::move(pem);
    credentials = grpc::SslCredentials(ssl);
  }
  return CoordinatorSink::Create(std::move(options), std::move(credentials));
}

}  // namespace distill::worker
