// CoordinatorSink: a ReportSink that streams a rank's progress to the
// coordinator on one ReportProgress client stream, which doubles as the rank's
// heartbeat. OnStep/OnEval only record the latest progress and return; a
// background thread owns the stream, sends a report on every new record and a
// heartbeat every `heartbeat_interval` between them, and reconnects with
// backoff when the stream breaks (the coordinator may restart); a heartbeat is
// a report without progress. An unreachable coordinator never blocks or fails
// training: it is logged once to stderr.
#ifndef DISTILL_WORKER_REPORT_REPORT_GRPC_H_
#define DISTILL_WORKER_REPORT_REPORT_GRPC_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <utility>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "distill/v1/coordinator.grpc.pb.h"
#include "worker/train/report.h"

namespace distill::worker {

struct CoordinatorSinkOptions {
  std::string target;      // coordinator address, "host:port" (DISTILL_COORDINATOR).
  std::string job_id;      // DISTILL_JOB_ID.
  std::string auth_token;  // sent as "authorization: Bearer <token>"; empty = none.
  int32_t rank = 0;        // MPI world rank (OMPI_COMM_WORLD_RANK).
  int32_t attempt = 1;     // DISTILL_ATTEMPT.
  // A report goes out at least this often, new step or not. Must stay well
  // under the coordinator's --heartbeat-timeout; shorter costs a tiny message.
  std::chrono::milliseconds heartbeat_interval{2000};
  // Wait before reconnecting after a broken stream; doubles up to the maximum.
  std::chrono::milliseconds reconnect_backoff{250};
  std::chrono::milliseconds max_reconnect_backoff{4000};
  // How long Finish() may wait to deliver the last report before giving up.
  // Long enough to outlast a coordinator restart (a restarted coordinator
  // adopts the launch and runs its start-up checks first): the last report
  // carries the final eval, which the job's record would otherwise lack.
  std::chrono::milliseconds finish_timeout{30000};
};

// Thread-safe: OnStep/OnEval/OnMessage (from the training thread) and Finish()
// never wait on the network, except Finish(), for at most finish_timeout.
class CoordinatorSink : public ReportSink {
 public:
  // Records kept while the coordinator is unreachable; older ones are dropped
  // (the latest always stays).
  static constexpr size_t kMaxUnsent = 1024;

  // Starts the background thread; connecting happens there, so this succeeds
  // whether or not the coordinator is up. InvalidArgument for an empty target
  // or job id.
  static absl::StatusOr<std::unique_ptr<CoordinatorSink>> Create(
      CoordinatorSinkOptions options,
      std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials());

  // Stops the thread and abandons the stream without a final report (a run
  // that did not call Finish() did not finish).
  ~CoordinatorSink() override;

  void OnStep(const StepRecord& r) override;
  void OnEval(const EvalRecord& r) override;
  // Every report from now on carries `step` (Note [Liveness by progress]).
  void OnStepDone(int64_t step) override;
  void OnMessage(const std::string& text) override {}  // the worker's stdout is the job log

  // Sends the last report (final = `training_finished`), closes the stream and
  // stops the thread. Waits at most finish_timeout; returns whether the
  // coordinator acknowledged the stream. Idempotent.
  bool Finish(bool training_finished);

  // Reports written to a stream so far (heartbeats included); for tests.
  int64_t reports_sent() const;

 private:
  CoordinatorSink(CoordinatorSinkOptions options, std::shared_ptr<grpc::Channel> channel);
  enum class StreamEnd {
    kClosed,  // the final report went out and the stream was closed: done
    kBroken,  // reports went out, then the stream broke
    kFailed,  // no report went out (no connection, or stopping)
  };
  void Run();
  // One stream, from connect to break or close.
  StreamEnd RunStream();
  // `progress` (may be null: a heartbeat) in a report; requires mu_.
  distill::v1::ProgressReport MakeReport(bool final, const distill::v1::Progress* progress) const;
  void LogUnreachable(const grpc::Status& status);
  void Queue();  // progress_ onto unsent_; requires mu_

  const CoordinatorSinkOptions options_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<distill::v1::Coordinator::Stub> stub_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  distill::v1::Progress progress_;         // GUARDED_BY(mu_): latest state of the run
  bool dirty_ = false;                     // GUARDED_BY(mu_): progress_ to be sent again
  // GUARDED_BY(mu_): Note [Every logged step is reported]: each OnStep and
  // OnEval's progress, oldest first, until written (at most kMaxUnsent).
  std::deque<std::pair<int64_t, distill::v1::Progress>> unsent_;  // (sequence number, progress)
  int64_t queued_ = 0;  // GUARDED_BY(mu_): records queued so far (the next sequence number)
  std::optional<int64_t> step_;            // GUARDED_BY(mu_): steps completed (a training rank)
  bool closing_ = false;                   // GUARDED_BY(mu_): Finish() called
  bool stopping_ = false;                  // GUARDED_BY(mu_): give up now (destructor, timeout)
  bool final_value_ = false;               // GUARDED_BY(mu_)
  bool done_ = false;                      // GUARDED_BY(mu_): thread finished
  bool acknowledged_ = false;              // GUARDED_BY(mu_): the final stream closed OK
  bool logged_unreachable_ = false;        // GUARDED_BY(mu_)
  grpc::ClientContext* active_ = nullptr;  // GUARDED_BY(mu_): to cancel a blocked call
  int64_t reports_sent_ = 0;               // GUARDED_BY(mu_)
  std::thread thread_;
};

// The sink for a rank launched by the coordinator, configured from the
// environment it sets: DISTILL_COORDINATOR (host:port), DISTILL_JOB_ID,
// DISTILL_ATTEMPT, DISTILL_AUTH_TOKEN (optional), DISTILL_COORDINATOR_CA
// (optional: a PEM file of the coordinator's certificate or its CA; when set
// the stream uses TLS verified against it, as a coordinator started with
// --tls-cert requires), and the rank from OMPI_COMM_WORLD_RANK (PMI_RANK,
// else 0). Returns null when DISTILL_COORDINATOR is unset or empty
// (standalone run); InvalidArgument for a missing job id or a non-numeric
// attempt or rank; the read error (e.g. NotFound) for an unreadable CA file.
absl::StatusOr<std::unique_ptr<CoordinatorSink>> MakeCoordinatorSinkFromEnv();

}  // namespace distill::worker

#endif  // DISTILL_WORKER_REPORT_REPORT_GRPC_H_
