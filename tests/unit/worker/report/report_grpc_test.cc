#include "worker/report/report_grpc.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "common/fs_util.h"
#include "distill/v1/coordinator.grpc.pb.h"

namespace distill::worker {
namespace {
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// The server side of the peer under test: a coordinator that implements only
// ReportProgress and records what arrives.
class FakeCoordinator final : public distill::v1::Coordinator::Service {
 public:
  grpc::Status ReportProgress(grpc::ServerContext* context,
                              grpc::ServerReader<distill::v1::ProgressReport>* reader,
                              distill::v1::ReportProgressResponse*) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = context->client_metadata().find("authorization");
      authorization_.push_back(it == context->client_metadata().end()
                                   ? "<none>"
                                   : std::string(it->second.data(), it->second.size()));
    }
    distill::v1::ProgressReport report;
    while (reader->Read(&report)) {
      std::lock_guard<std::mutex> lock(mu_);
      reports_.push_back(report);
      cv_.notify_all();
    }
    return grpc::Status::OK;
  }

  // Waits up to `timeout` until `done(reports)` holds; returns whether it did.
  bool WaitFor(const std::function<bool(const std::vector<distill::v1::ProgressReport>&)>& done,
               milliseconds timeout = milliseconds(5000)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return done(reports_); });
  }
  std::vector<distill::v1::ProgressReport> reports() {
    std::lock_guard<std::mutex> lock(mu_);
    return reports_;
  }
  std::vector<std::string> authorization() {
    std::lock_guard<std::mutex> lock(mu_);
    return authorization_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<distill::v1::ProgressReport> reports_;
  std::vector<std::string> authorization_;  // per stream
};

struct RunningServer {
  FakeCoordinator service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;

  // Listens on 127.0.0.1:`port` (0 = any free port), plaintext unless
  // `credentials` are given.
  explicit RunningServer(int want_port = 0,
                         std::shared_ptr<grpc::ServerCredentials> credentials = nullptr) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:" + std::to_string(want_port),
                             credentials ? credentials : grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service);
    server = builder.BuildAndStart();
  }
  ~RunningServer() { Stop(); }
  void Stop() {
    if (server) server->Shutdown(std::chrono::system_clock::now() + milliseconds(100));
    server.reset();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
};

// A loopback port nobody listens on (bound, then released).
int ClosedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

CoordinatorSinkOptions Options(const std::string& target) {
  CoordinatorSinkOptions o;
  o.target = target;
  o.job_id = "job-7";
  o.rank = 3;
  o.attempt = 2;
  o.heartbeat_interval = milliseconds(60000);  // tests that want heartbeats lower it
  o.reconnect_backoff = milliseconds(50);
  o.max_reconnect_backoff = milliseconds(200);
  return o;
}

bool HasStep(const std::vector<distill::v1::ProgressReport>& rs, int64_t step) {
  for (const auto& r : rs) {
    if (r.progress().step() == step) return true;
  }
  return false;
}

TEST(CoordinatorSinkTest, ReportsCarryTheStepRecordAndTheLastOneIsFinal) {
  RunningServer server;
  CoordinatorSinkOptions options = Options(server.address());
  options.auth_token = "s3cret";
  auto sink = CoordinatorSink::Create(options);
  ASSERT_TRUE(sink.ok()) << sink.status();

  StepRecord r;
  r.step = 5;
  r.total_steps = 40;
  r.loss = 2.5;
  r.fields.scalars = {{"ce_loss", 1.5}, {"kd_loss", 0.75}, {"teacher_s", 0.125}, {"stream_bytes_per_token", 96}};
  r.fields.groups["feature_losses"] = {{"s1_t2", 0.25}};
  r.lr = 3e-4;
  r.tokens_per_s = 1234.5;
  r.eta_s = 70;
  r.step_s = 0.5;
  r.peak_rss_bytes = 1 << 30;
  r.trainable_params = 123456;
  r.tokens = 20480;
  (*sink)->OnStep(r);
  (*sink)->OnEval(EvalRecord{5, 2.75, 15.6, 1000, {}});
  ASSERT_TRUE(server.service.WaitFor([](const auto& rs) { return HasStep(rs, 5); }));
  EXPECT_TRUE((*sink)->Finish(/*training_finished=*/true));

  const auto reports = server.service.reports();
  ASSERT_FALSE(reports.empty());
  const distill::v1::ProgressReport& last = reports.back();
  EXPECT_TRUE(last.final());
  EXPECT_EQ(last.job_id(), "job-7");
  EXPECT_EQ(last.rank(), 3);
  EXPECT_EQ(last.attempt(), 2);
  const distill::v1::Progress& p = last.progress();
  EXPECT_EQ(p.step(), 5);
  EXPECT_EQ(p.total_steps(), 40);
  EXPECT_DOUBLE_EQ(p.loss(), 2.5);
  EXPECT_DOUBLE_EQ(p.ce_loss(), 1.5);
  EXPECT_DOUBLE_EQ(p.kd_loss(), 0.75);
  ASSERT_EQ(p.feature_losses().count("s1_t2"), 1u);
  EXPECT_DOUBLE_EQ(p.feature_losses().at("s1_t2"), 0.25);
  EXPECT_DOUBLE_EQ(p.lr(), 3e-4);
  EXPECT_DOUBLE_EQ(p.tokens_per_second(), 1234.5);
  EXPECT_DOUBLE_EQ(p.eta_seconds(), 70);
  EXPECT_DOUBLE_EQ(p.step_seconds(), 0.5);
  EXPECT_DOUBLE_EQ(p.teacher_seconds(), 0.125);
  EXPECT_DOUBLE_EQ(p.stream_bytes_per_token(), 96);
  EXPECT_EQ(p.memory_bytes(), 1 << 30);
  EXPECT_EQ(p.trainable_params(), 123456);
  EXPECT_EQ(p.tokens(), 20480);
  EXPECT_DOUBLE_EQ(p.eval_loss(), 2.75);
  EXPECT_EQ(p.eval_step(), 5);
  EXPECT_DOUBLE_EQ(p.eval_kl(), 0);  // a finetune's eval has no teacher
  for (size_t i = 0; i + 1 < reports.size(); ++i) EXPECT_FALSE(reports[i].final()) << i;

  const auto auth = server.service.authorization();
  ASSERT_FALSE(auth.empty());
  for (const std::string& a : auth) EXPECT_EQ(a, "Bearer s3cret");
}

// The trainer's last eval runs after the last step and right before
// Finish(): the final report must carry it, teacher metrics included, and the
// step fields of the last step beside it.
TEST(CoordinatorSinkTest, TheFinalReportCarriesTheLastEvalAgainstTheTeacher) {
  RunningServer server;
  auto sink = CoordinatorSink::Create(Options(server.address()));
  ASSERT_TRUE(sink.ok()) << sink.status();
  StepRecord r;
  r.step = 40;
  r.total_steps = 40;
  r.loss = 1.25;
  r.tokens = 81920;
  r.trainable_params = 777;
  (*sink)->OnStep(r);
  EvalRecord eval{40, 1.5, 4.48, 512, {}};
  eval.fields.scalars = {{"kl", 0.0625}, {"top1_agreement", 0.875}, {"teacher_loss", 1.125}};
  (*sink)->OnEval(eval);
  EXPECT_TRUE((*sink)->Finish(/*training_finished=*/true));

  const auto reports = server.service.reports();
  ASSERT_FALSE(reports.empty());
  ASSERT_TRUE(reports.back().final());
  const distill::v1::Progress& p = reports.back().progress();
  EXPECT_EQ(p.step(), 40);
  EXPECT_EQ(p.tokens(), 81920);
  EXPECT_EQ(p.trainable_params(), 777);
  EXPECT_EQ(p.eval_step(), 40);
  EXPECT_DOUBLE_EQ(p.eval_loss(), 1.5);
  EXPECT_DOUBLE_EQ(p.eval_kl(), 0.0625);
  EXPECT_DOUBLE_EQ(p.eval_top1_agreement(), 0.875);
  EXPECT_DOUBLE_EQ(p.eval_teacher_loss(), 1.125);
}

TEST(CoordinatorSinkTest, NoTokenMeansNoAuthorizationMetadata) {
  RunningServer server;
  auto sink = CoordinatorSink::Create(Options(server.address()));
  ASSERT_TRUE(sink.ok()) << sink.status();
  ASSERT_TRUE(server.service.WaitFor([](const auto& rs) { return !rs.empty(); }));
  EXPECT_TRUE((*sink)->Finish(true));
  for (const std::string& a : server.service.authorization()) EXPECT_EQ(a, "<none>");
}

TEST(CoordinatorSinkTest, HeartbeatsArriveWithoutSteps) {
  RunningServer server;
  CoordinatorSinkOptions options = Options(server.address());
  options.heartbeat_interval = milliseconds(50);
  auto sink = CoordinatorSink::Create(options);
  ASSERT_TRUE(sink.ok()) << sink.status();
  // One report when the stream opens (with the progress so far), then a
  // heartbeat without progress per interval: >= 5 in ~0.25 s.
  EXPECT_TRUE(server.service.WaitFor([](const auto& rs) { return rs.size() >= 5; }));
  const auto reports = server.service.reports();
  EXPECT_TRUE(reports[0].has_progress());
  for (size_t i = 0; i < reports.size(); ++i) {
    EXPECT_EQ(reports[i].progress().step(), 0);
    EXPECT_EQ(reports[i].job_id(), "job-7");
    EXPECT_EQ(reports[i].rank(), 3);
    EXPECT_FALSE(reports[i].final());
    if (i > 0) {
      EXPECT_FALSE(reports[i].has_progress()) << i;
    }
  }
}

TEST(CoordinatorSinkTest, ReconnectsAfterTheCoordinatorRestarts) {
  auto first = std::make_unique<RunningServer>();
  const int port = first->port;
  // A report written just as the stream dies can be lost (a write only
  // reaches the transport); the next heartbeat finds the broken stream and
  // the new stream starts with the latest progress.
  CoordinatorSinkOptions options = Options(first->address());
  options.heartbeat_interval = milliseconds(100);
  auto sink = CoordinatorSink::Create(options);
  ASSERT_TRUE(sink.ok()) << sink.status();
  StepRecord r;
  r.step = 1;
  (*sink)->OnStep(r);
  ASSERT_TRUE(first->service.WaitFor([](const auto& rs) { return HasStep(rs, 1); }));
  first.reset();

  RunningServer second(port);
  ASSERT_EQ(second.port, port);
  r.step = 2;
  (*sink)->OnStep(r);
  EXPECT_TRUE(
      second.service.WaitFor([](const auto& rs) { return HasStep(rs, 2); }, milliseconds(10000)));
  EXPECT_TRUE((*sink)->Finish(true));
  EXPECT_TRUE(second.service.reports().back().final());
}

// Note [Every logged step is reported]: records written before the stream
// is up (here: before the coordinator listens) all arrive, in order, each in
// a report of its own; only the latest used to.
TEST(CoordinatorSinkTest, EveryLoggedStepArrivesInOrder) {
  const int port = ClosedPort();
  auto sink = CoordinatorSink::Create(Options("127.0.0.1:" + std::to_string(port)));
  ASSERT_TRUE(sink.ok()) << sink.status();
  StepRecord r;
  for (int i = 1; i <= 5; ++i) {
    r.step = 2 * i;
    r.loss = 10.0 - i;
    (*sink)->OnStep(r);
  }
  (*sink)->OnEval(EvalRecord{10, 4.5, 90.0, 1000, {}});
  RunningServer server(port);
  ASSERT_EQ(server.port, port);
  ASSERT_TRUE(server.service.WaitFor([](const auto& rs) { return rs.size() >= 6; }, milliseconds(10000)));
  EXPECT_TRUE((*sink)->Finish(true));
  std::vector<std::pair<int64_t, double>> steps;
  for (const auto& report : server.service.reports()) {
    if (!report.has_progress()) continue;
    if (steps.empty() || steps.back().first != report.progress().step()) {
      steps.emplace_back(report.progress().step(), report.progress().loss());
    }
  }
  EXPECT_EQ(steps, (std::vector<std::pair<int64_t, double>>{{2, 9}, {4, 8}, {6, 7}, {8, 6}, {10, 5}}));
  const auto reports = server.service.reports();
  EXPECT_DOUBLE_EQ(reports.back().progress().eval_loss(), 4.5);
  EXPECT_TRUE(reports.back().final());
}

TEST(CoordinatorSinkTest, UnreachableCoordinatorNeverBlocksTraining) {
  CoordinatorSinkOptions options = Options("127.0.0.1:" + std::to_string(ClosedPort()));
  options.heartbeat_interval = milliseconds(10);
  options.finish_timeout = milliseconds(300);
  auto sink = CoordinatorSink::Create(options);
  ASSERT_TRUE(sink.ok()) << sink.status();
  const auto start = Clock::now();
  StepRecord r;
  for (int i = 1; i <= 1000; ++i) {
    r.step = i;
    (*sink)->OnStep(r);
  }
  EXPECT_LT(Clock::now() - start, milliseconds(200));
  const auto finish_start = Clock::now();
  EXPECT_FALSE((*sink)->Finish(true));
  EXPECT_LT(Clock::now() - finish_start, milliseconds(2000));
  EXPECT_EQ((*sink)->reports_sent(), 0);
}

TEST(CoordinatorSinkTest, DestroyingAnUnfinishedSinkReturnsPromptly) {
  RunningServer server;
  auto sink = CoordinatorSink::Create(Options(server.address()));
  ASSERT_TRUE(sink.ok()) << sink.status();
  ASSERT_TRUE(server.service.WaitFor([](const auto& rs) { return !rs.empty(); }));
  const auto start = Clock::now();
  sink->reset();
  EXPECT_LT(Clock::now() - start, milliseconds(2000));
  for (const auto& r : server.service.reports()) EXPECT_FALSE(r.final());
}

// Sets environment variables for one test and restores them after.
class ScopedEnv {
 public:
  void Set(const char* name, const char* value) {
    const char* old = getenv(name);
    saved_.push_back({name, old != nullptr, old ? old : ""});
    if (value == nullptr) {
      unsetenv(name);
    } else {
      setenv(name, value, 1);
    }
  }
  ~ScopedEnv() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->had) {
        setenv(it->name.c_str(), it->value.c_str(), 1);
      } else {
        unsetenv(it->name.c_str());
      }
    }
  }

 private:
  struct Saved {
    std::string name;
    bool had;
    std::string value;
  };
  std::vector<Saved> saved_;
};

TEST(MakeCoordinatorSinkFromEnvTest, UnsetCoordinatorMeansNoSink) {
  ScopedEnv env;
  env.Set("DISTILL_COORDINATOR", nullptr);
  auto sink = MakeCoordinatorSinkFromEnv();
  ASSERT_TRUE(sink.ok()) << sink.status();
  EXPECT_EQ(*sink, nullptr);
}

TEST(MakeCoordinatorSinkFromEnvTest, MissingJobIdIsInvalidArgument) {
  ScopedEnv env;
  env.Set("DISTILL_COORDINATOR", "127.0.0.1:1");
  env.Set("DISTILL_JOB_ID", nullptr);
  auto sink = MakeCoordinatorSinkFromEnv();
  EXPECT_EQ(sink.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MakeCoordinatorSinkFromEnvTest, BadAttemptIsInvalidArgument) {
  ScopedEnv env;
  env.Set("DISTILL_COORDINATOR", "127.0.0.1:1");
  env.Set("DISTILL_JOB_ID", "j");
  env.Set("DISTILL_ATTEMPT", "two");
  auto sink = MakeCoordinatorSinkFromEnv();
  EXPECT_EQ(sink.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(sink.status().message().find("DISTILL_ATTEMPT"), std::string::npos);
}

TEST(MakeCoordinatorSinkFromEnvTest, ReportsRankAttemptAndTokenFromTheEnvironment) {
  RunningServer server;
  ScopedEnv env;
  env.Set("DISTILL_COORDINATOR", server.address().c_str());
  env.Set("DISTILL_JOB_ID", "job-env");
  env.Set("DISTILL_ATTEMPT", "4");
  env.Set("DISTILL_AUTH_TOKEN", "tok");
  env.Set("OMPI_COMM_WORLD_RANK", "1");
  env.Set("DISTILL_COORDINATOR_CA", nullptr);
  auto sink = MakeCoordinatorSinkFromEnv();
  ASSERT_TRUE(sink.ok()) << sink.status();
  ASSERT_NE(*sink, nullptr);
  EXPECT_TRUE((*sink)->Finish(true));
  const auto reports = server.service.reports();
  ASSERT_FALSE(reports.empty());
  EXPECT_EQ(reports.back().job_id(), "job-env");
  EXPECT_EQ(reports.back().attempt(), 4);
  EXPECT_EQ(reports.back().rank(), 1);
  EXPECT_EQ(server.service.authorization().front(), "Bearer tok");
}

// A temporary directory holding a self-signed certificate for localhost and
// 127.0.0.1 (cert.pem, key.pem), made by the openssl CLI; removed at exit.
class SelfSignedCert {
 public:
  SelfSignedCert() {
    char tmpl[] = "/tmp/report_grpc_tls.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return;
    dir_ = tmpl;
    const std::string cmd =
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
        "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " +
        key_path() + " -out " + cert_path() + " >/dev/null 2>&1";
    ok_ = std::system(cmd.c_str()) == 0;
  }
  ~SelfSignedCert() {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  bool ok() const { return ok_; }
  std::string cert_path() const { return dir_ + "/cert.pem"; }
  std::string key_path() const { return dir_ + "/key.pem"; }
  std::string dir() const { return dir_; }

 private:
  std::string dir_;
  bool ok_ = false;
};

TEST(MakeCoordinatorSinkFromEnvTest, CoordinatorCaMeansTlsVerifiedAgainstIt) {
  SelfSignedCert cert;
  ASSERT_TRUE(cert.ok()) << "openssl could not make a certificate";
  auto pem = common::ReadFileToString(cert.cert_path());
  auto key = common::ReadFileToString(cert.key_path());
  ASSERT_TRUE(pem.ok() && key.ok());
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({*key, *pem});
  RunningServer server(0, grpc::SslServerCredentials(ssl));  // TLS only
  ScopedEnv env;
  env.Set("DISTILL_COORDINATOR", server.address().c_str());
  env.Set("DISTILL_JOB_ID", "job-tls");
  env.Set("DISTILL_ATTEMPT", "1");
  env.Set("DISTILL_AUTH_TOKEN", "tok");
  env.Set("OMPI_COMM_WORLD_RANK", "0");
  env.Set("DISTILL_COORDINATOR_CA", cert.cert_path().c_str());
  auto sink = MakeCoordinatorSinkFromEnv();
  ASSERT_TRUE(sink.ok()) << sink.status();
  ASSERT_NE(*sink, nullptr);
  (*sink)->OnStep(StepRecord{});
  EXPECT_TRUE((*sink)->Finish(true));
  const auto reports = server.service.reports();
  ASSERT_FALSE(reports.empty());
  EXPECT_EQ(reports.back().job_id(), "job-tls");
  EXPECT_TRUE(reports.back().final());
  EXPECT_EQ(server.service.authorization().front(), "Bearer tok");
}

TEST(MakeCoordinatorSinkFromEnvTest, UnreadableCoordinatorCaIsNotFound) {
  ScopedEnv env;
  env.Set("DISTILL_COORDINATOR", "127.0.0.1:1");
  env.Set("DISTILL_JOB_ID", "j");
  env.Set("DISTILL_ATTEMPT", "1");
  env.Set("DISTILL_COORDINATOR_CA", "/nonexistent/ca.pem");
  auto sink = MakeCoordinatorSinkFromEnv();
  EXPECT_EQ(sink.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(sink.status().message().find("DISTILL_COORDINATOR_CA"), std::string::npos);
}

}  // namespace
}  // namespace distill::worker
