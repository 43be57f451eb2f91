// The one abseil -> gRPC status mapping of the coordinator's service (the
// codes are the same numbers). Defined in service.cc.
#ifndef DISTILL_COORDINATOR_GRPC_STATUS_H_
#define DISTILL_COORDINATOR_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace distill::coordinator {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace distill::coordinator

#endif  // DISTILL_COORDINATOR_GRPC_STATUS_H_
