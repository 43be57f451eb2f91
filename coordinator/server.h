// Server: the composition root of distill-coordinator. Builds the store,
// inventory, launcher, metrics, coordinator and gRPC service from options,
// serves gRPC (with grpc.health.v1 and reflection) and /metrics, and stops
// accepting on Shutdown() while leaving running jobs alone. Thread-safe.
#ifndef DISTILL_COORDINATOR_SERVER_H_
#define DISTILL_COORDINATOR_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/coordinator.h"
#include "coordinator/metrics.h"
#include "coordinator/mpirun_launcher.h"
#include "coordinator/scheduler.h"
#include "coordinator/service.h"
#include "coordinator/slurm_launcher.h"
#include "coordinator/sqlite_job_store.h"

namespace grpc {
class Server;
class ServerCredentials;
}  // namespace grpc
namespace prometheus {
class Exposer;
}

namespace distill::coordinator {

struct ServerOptions {
  std::string listen = "127.0.0.1:50051";         // gRPC address; port 0 picks a free one.
  std::string metrics_listen = "127.0.0.1:9464";  // /metrics; empty = not served.
  // Address the ranks report to; empty = the listen address with its real
  // port (0.0.0.0 / [::] become 127.0.0.1).
  std::string advertise;
  std::string state_dir = "./var";  // coordinator.db and jobs/ID/ work dirs.
  // The store's durability (sqlite_job_store.h): kFull survives a power loss.
  SqliteJobStore::Sync sync = SqliteJobStore::Sync::kNormal;
  int slots = 1;                    // local inventory, when no hosts file.
  std::string hosts_file;           // `host slots=N [gpus=G]` lines; overrides slots.
  std::string auth_token_file;      // bearer token (first line); empty = no auth.
  // PEM; TLS when both cert and key are set. The ranks get the certificate's
  // path as DISTILL_COORDINATOR_CA and verify the report address against it,
  // so it must name that address (e.g. IP:127.0.0.1) and be readable there.
  std::string tls_cert;
  std::string tls_key;
  ServiceOptions service;          // roots (auth_token is filled from the file).
  CoordinatorOptions coordinator;  // retries, timeouts (state_dir and tokens filled in).
  // "mpirun": the ranks run on this host or the --hosts-file hosts, under
  // mpirun (MpirunLauncher). "slurm": each attempt is a Slurm batch job
  // (SlurmLauncher); the inventory (slots) then only caps the ranks submitted.
  std::string launcher = "mpirun";
  MpirunOptions mpirun;  // worker binary and mpirun.
  SlurmOptions slurm;    // with launcher "slurm".
};

class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Start(ServerOptions options);
  ~Server();

  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  Coordinator& coordinator() { return *coordinator_; }
  Metrics& metrics() { return *metrics_; }

  // Stops accepting calls (in-flight streams are cancelled after `deadline`)
  // and the control loop. Jobs keep running; a restart adopts them.
  void Shutdown(absl::Duration deadline = absl::Seconds(2));

 private:
  Server() = default;
  // The parts, from `options` (which gets the token, the CA file and the
  // state dir filled in); returns the credentials to serve with.
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Build(ServerOptions& options);
  // Serves gRPC and /metrics and starts the coordinator.
  absl::Status Serve(const ServerOptions& options, std::shared_ptr<grpc::ServerCredentials> creds);

  std::unique_ptr<SqliteJobStore> store_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<Launcher> launcher_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<CoordinatorService> service_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
  int metrics_port_ = 0;
  bool shut_down_ = false;
};

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_SERVER_H_
