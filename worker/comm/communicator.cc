#include "worker/comm/communicator.h"

#include "common/status_macros.h"

namespace distill::worker {

absl::Status Communicator::AllReduce(torch::Tensor& t, ReduceOp op, const std::string& what) {
  ASSIGN_OR_RETURN(std::unique_ptr<Work> w, AllReduceAsync(t, op, what));
  return w->Wait();
}

absl::Status Communicator::Broadcast(torch::Tensor& t, int root, const std::string& what) {
  ASSIGN_OR_RETURN(std::unique_ptr<Work> w, BroadcastAsync(t, root, what));
  return w->Wait();
}

absl::Status Communicator::Send(const torch::Tensor& t, int dst, int tag, const std::string& what) {
  ASSIGN_OR_RETURN(std::unique_ptr<Work> w, SendAsync(t, dst, tag, what));
  return w->Wait();
}

absl::Status Communicator::Recv(torch::Tensor& t, int src, int tag, const std::string& what) {
  ASSIGN_OR_RETURN(std::unique_ptr<Work> w, RecvAsync(t, src, tag, what));
  return w->Wait();
}

}  // namespace distill::worker
