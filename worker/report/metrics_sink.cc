#include "worker/report/metrics_sink.h"

#include <chrono>
#include <exception>
#include <memory>
#include <utility>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "absl/strings/str_cat.h"
#include "prometheus/text_serializer.h"

namespace distill::worker {
namespace http = boost::beast::http;
using boost::asio::ip::tcp;

absl::StatusOr<std::unique_ptr<MetricsSink>> MetricsSink::Create(const std::string& address,
                                                                 const std::string& job_id, int rank) {
  if (job_id.empty()) return absl::InvalidArgumentError("--metrics-listen: the job id is empty");
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("--metrics-listen: not HOST:PORT: '", address, "'"));
  }
  std::unique_ptr<MetricsSink> sink(new MetricsSink(job_id, rank));
  boost::system::error_code ec;
  tcp::resolver resolver(sink->io_);
  const auto endpoints = resolver.resolve(address.substr(0, colon), address.substr(colon + 1), ec);
  if (!ec && endpoints.empty()) ec = boost::asio::error::host_not_found;
  if (!ec) sink->acceptor_.open(endpoints.begin()->endpoint().protocol(), ec);
  if (!ec) sink->acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) sink->acceptor_.bind(endpoints.begin()->endpoint(), ec);
  if (!ec) sink->acceptor_.listen(boost::asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-listen: cannot serve /metrics on ", address, ": ", ec.message()));
  }
  sink->port_ = sink->acceptor_.local_endpoint().port();
  sink->Accept();
  sink->thread_ = std::thread([s = sink.get()] { s->io_.run(); });
  return sink;
}

MetricsSink::MetricsSink(const std::string& job_id, int rank)
    : job_id_(job_id), rank_(rank), registry_(std::make_shared<prometheus::Registry>()), metrics_(*registry_) {}

MetricsSink::~MetricsSink() {
  io_.stop();
  if (thread_.joinable()) thread_.join();
}

void MetricsSink::Accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (!ec) Serve(std::move(socket));
    if (acceptor_.is_open()) Accept();
  });
}

// One scrape: read the request, answer, close; at most 10 s for all of it,
// so a client that connects and sends nothing holds nothing for long.
class MetricsSink::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const prometheus::Registry& registry)
      : stream_(std::move(socket)), registry_(registry) {}

  void Start() {
    stream_.expires_after(std::chrono::seconds(10));
    http::async_read(stream_, buffer_, request_,
                     [self = shared_from_this()](boost::system::error_code ec, size_t) {
                       if (!ec) self->Answer();
                     });
  }

 private:
  void Answer() {
    response_.version(request_.version());
    response_.keep_alive(false);
    if (request_.method() == http::verb::get && request_.target() == "/metrics") {
      response_.result(http::status::ok);
      response_.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      response_.body() = prometheus::TextSerializer().Serialize(registry_.Collect());
    } else {
      response_.result(http::status::not_found);
      response_.set(http::field::content_type, "text/plain");
      response_.body() = "distill-worker serves GET /metrics only\n";
    }
    response_.prepare_payload();
    http::async_write(stream_, response_, [self = shared_from_this()](boost::system::error_code, size_t) {
      boost::system::error_code ignored;
      self->stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    });
  }

  boost::beast::tcp_stream stream_;
  const prometheus::Registry& registry_;
  boost::beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
};

void MetricsSink::Serve(tcp::socket socket) { std::make_shared<Session>(std::move(socket), *registry_)->Start(); }

void MetricsSink::OnStep(const StepRecord& r) {
  std::lock_guard<std::mutex> lock(mu_);
  SetStepProgress(r, &progress_);
  metrics_.Observe(job_id_, rank_, 1, progress_);
}

void MetricsSink::OnEval(const EvalRecord& r) {
  std::lock_guard<std::mutex> lock(mu_);
  SetEvalProgress(r, &progress_);
  metrics_.Observe(job_id_, rank_, 1, progress_);
}

}  // namespace distill::worker
