// MetricsSink: a ReportSink that serves this rank's worker series (docs/
// metrics.md, common::WorkerMetrics) on its own /metrics, for a worker
// started without a coordinator (mpirun or Slurm by hand): `distill-worker
// train --metrics-listen HOST:PORT`, each rank on PORT + its local rank.
// Prometheus scrapes the ranks directly; the names and labels are the
// coordinator's.
//
// Note [Worker HTTP]: the coordinator serves /metrics with prometheus-cpp's
// Exposer (civetweb); a worker cannot: civetweb starts its threads with a
// 100 KB stack, and glibc refuses a stack smaller than the process's static
// TLS, which LibTorch's CUDA libraries make larger than that ("Cannot create
// threads", EINVAL before any clone). So the worker answers GET /metrics
// with Boost.Beast on one thread of its own (default stack), serializing the
// registry with prometheus-cpp's TextSerializer.
#ifndef DISTILL_WORKER_REPORT_METRICS_SINK_H_
#define DISTILL_WORKER_REPORT_METRICS_SINK_H_

#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "common/worker_metrics.h"
#include "distill/v1/coordinator.pb.h"
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include "prometheus/registry.h"
#include "worker/train/report.h"

namespace distill::worker {

class MetricsSink : public ReportSink {
 public:
  // Serves /metrics on `address` ("HOST:PORT", PORT 0 = any free port) for
  // `job_id`'s rank `rank`. InvalidArgument names an address that cannot be
  // served.
  static absl::StatusOr<std::unique_ptr<MetricsSink>> Create(const std::string& address,
                                                             const std::string& job_id, int rank);

  void OnStep(const StepRecord& r) override;
  void OnEval(const EvalRecord& r) override;
  void OnMessage(const std::string&) override {}

  ~MetricsSink() override;
  int port() const { return port_; }  // the bound port

 private:
  MetricsSink(const std::string& job_id, int rank);
  class Session;
  void Accept();
  void Serve(boost::asio::ip::tcp::socket socket);

  const std::string job_id_;
  const int rank_;
  std::shared_ptr<prometheus::Registry> registry_;
  common::WorkerMetrics metrics_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_{io_};
  int port_ = 0;
  std::thread thread_;  // runs io_
  std::mutex mu_;
  distill::v1::Progress progress_;  // the latest step and eval, as one report
};

}  // namespace distill::worker

#endif  // DISTILL_WORKER_REPORT_METRICS_SINK_H_
