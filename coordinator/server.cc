#include "coordinator/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "prometheus/exposer.h"

namespace distill::coordinator {
namespace {

// "HOST:PORT" with the port replaced.
std::string WithPort(const std::string& address, int port) {
  size_t colon = address.rfind(':');
  std::string host = colon == std::string::npos ? address : address.substr(0, colon);
  if (host == "0.0.0.0" || host == "[::]" || host.empty()) host = "127.0.0.1";
  return absl::StrCat(host, ":", port);
}

// A secret's file (the API token) must not be readable or writable by
// anyone but its owner: a token others can read is a token others have.
absl::Status CheckPrivate(const std::string& path, const std::string& flag) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(flag, " ", path, ": ", std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": not a regular file"));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::PermissionDeniedError(
        absl::StrFormat("%s %s: readable or writable by others (mode %04o): chmod 600 it", flag,
                        path, st.st_mode & 07777));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(ServerOptions options) {
  std::unique_ptr<Server> s(new Server());
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> creds, s->Build(options));
  RETURN_IF_ERROR(s->Serve(options, std::move(creds)));
  return s;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Server::Build(ServerOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(options.state_dir, ec);
  if (ec)
    return absl::UnavailableError(
        absl::StrCat("cannot create state dir ", options.state_dir, ": ", ec.message()));

  // Note [Private state]: the jobs' specs, logs and the store are the
  // user's; nobody else lists or reads them.
  if (chmod(options.state_dir.c_str(), 0700) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("state dir ", options.state_dir,
                     ": cannot make it private (chmod 700): ", std::strerror(errno)));
  }
  if (!options.auth_token_file.empty()) {
    RETURN_IF_ERROR(CheckPrivate(options.auth_token_file, "--auth-token-file"));
    ASSIGN_OR_RETURN(std::string token, common::ReadFileToString(options.auth_token_file));
    token = std::string(absl::StripAsciiWhitespace(token.substr(0, token.find('\n'))));
    if (token.empty())
      return absl::InvalidArgumentError(absl::StrCat(options.auth_token_file, ": empty token"));
    options.service.auth_token = token;
    options.coordinator.auth_token = token;
  }
  std::vector<Host> inventory = LocalInventory(options.slots);
  if (!options.hosts_file.empty()) {
    ASSIGN_OR_RETURN(std::string text, common::ReadFileToString(options.hosts_file));
    ASSIGN_OR_RETURN(inventory, ParseHostsFile(text, options.hosts_file));
  }
  ASSIGN_OR_RETURN(store_, SqliteJobStore::Open(options.state_dir + "/coordinator.db", options.sync));
  for (const char* suffix : {"", "-wal", "-shm"}) {  // SQLite gives its -wal and -shm the db's mode
    const std::string file = absl::StrCat(options.state_dir, "/coordinator.db", suffix);
    if (chmod(file.c_str(), 0600) != 0 && errno != ENOENT) {
      return absl::PermissionDeniedError(
          absl::StrCat(file, ": cannot make it private (chmod 600): ", std::strerror(errno)));
    }
  }
  scheduler_ = std::make_unique<Scheduler>(std::move(inventory));
  if (options.launcher == "slurm") {
    launcher_ = std::make_unique<SlurmLauncher>(options.slurm);
  } else if (options.launcher == "mpirun") {
    launcher_ = std::make_unique<MpirunLauncher>(options.mpirun);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("launcher: expected mpirun or slurm, got '", options.launcher, "'"));
  }
  metrics_ = std::make_unique<Metrics>();

  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!options.tls_cert.empty() || !options.tls_key.empty()) {
    if (options.tls_cert.empty() || options.tls_key.empty()) {
      return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
    }
    grpc::SslServerCredentialsOptions ssl;
    ASSIGN_OR_RETURN(std::string cert, common::ReadFileToString(options.tls_cert));
    ASSIGN_OR_RETURN(std::string key, common::ReadFileToString(options.tls_key));
    ssl.pem_key_cert_pairs.push_back({key, cert});
    creds = grpc::SslServerCredentials(ssl);
    // The ranks report over the same TLS port: they verify it against the
    // certificate itself (self-signed or not, it names this server), found by
    // an absolute path since their working directory is the job's.
    options.coordinator.report_ca_file = std::filesystem::absolute(options.tls_cert, ec).string();
    if (ec) options.coordinator.report_ca_file = options.tls_cert;
  }

  options.coordinator.state_dir = options.state_dir;
  options.coordinator.data_root = options.service.data_root;
  options.coordinator.output_root = options.service.output_root;
  coordinator_ = std::make_unique<Coordinator>(options.coordinator, store_.get(), scheduler_.get(),
                                               launcher_.get(), metrics_.get());
  service_ = std::make_unique<CoordinatorService>(options.service, coordinator_.get(), metrics_.get());
  return creds;
}

absl::Status Server::Serve(const ServerOptions& options,
                           std::shared_ptr<grpc::ServerCredentials> creds) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen, std::move(creds), &port);
  builder.RegisterService(service_.get());
  grpc_ = builder.BuildAndStart();
  if (!grpc_ || port == 0)
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  port_ = port;
  grpc_->GetHealthCheckService()->SetServingStatus(true);

  if (!options.metrics_listen.empty()) {
    try {
      exposer_ = std::make_unique<prometheus::Exposer>(options.metrics_listen);
    } catch (const std::exception& e) {
      grpc_->Shutdown();
      return absl::UnavailableError(
          absl::StrCat("cannot serve /metrics on ", options.metrics_listen, ": ", e.what()));
    }
    exposer_->RegisterCollectable(metrics_->registry());
    std::vector<int> ports = exposer_->GetListeningPorts();
    metrics_port_ = ports.empty() ? 0 : ports[0];
  }
  // The ranks report to the real port (known only now when it was 0).
  coordinator_->SetReportAddress(options.advertise.empty() ? WithPort(options.listen, port)
                                                           : options.advertise);
  absl::Status st = coordinator_->Start();
  if (!st.ok()) grpc_->Shutdown();
  return st;
}

void Server::Shutdown(absl::Duration deadline) {
  if (shut_down_) return;
  shut_down_ = true;
  grpc_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(deadline));
  coordinator_->Stop();
  exposer_.reset();
}

Server::~Server() {
  if (grpc_) Shutdown();
}

}  // namespace distill::coordinator
