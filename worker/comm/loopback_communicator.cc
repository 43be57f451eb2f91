#include "worker/comm/loopback_communicator.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace distill::worker {
namespace {

// Already complete: the operation's result is in the caller's tensor.
class DoneWork : public Work {
 public:
  bool Test() override { return true; }
  absl::Status Wait() override { return absl::OkStatus(); }
};

absl::StatusOr<std::unique_ptr<Work>> Done() {
  return std::unique_ptr<Work>(std::make_unique<DoneWork>());
}

// Copies `from` into `to` (same numel, any shapes; outside autograd, like
// the MPI backend's write-back) and is done.
absl::StatusOr<std::unique_ptr<Work>> CopyDone(const torch::Tensor& from, torch::Tensor& to) {
  torch::NoGradGuard no_grad;
  to.view({-1}).copy_(from.view({-1}));
  return Done();
}

absl::Status CheckTensor(const torch::Tensor& t, const char* op, const std::string& what) {
  if (!t.defined())
    return absl::InvalidArgumentError(absl::StrCat(op, " of ", what, ": undefined tensor"));
  if (!t.is_contiguous()) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, " of ", what, ": the tensor must be contiguous"));
  }
  return absl::OkStatus();
}

// A peer of a point-to-point operation: out of range like MPI, and rank 0
// (this rank) has no one to talk to.
absl::Status NoPeer(int peer, const char* op, const std::string& what, const char* role, int tag) {
  if (peer != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, " of ", what, ": ", role, " rank ", peer, " out of range [0, 1)"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(op, " of ", what, " (tag ", tag,
                   "): rank 0 is the only rank of a loopback "
                   "communicator; point-to-point to self is not supported"));
}

class LoopbackCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "loopback"; }

  absl::StatusOr<std::unique_ptr<Work>> AllReduceAsync(torch::Tensor& t, ReduceOp op,
                                                       const std::string& what) override {
    RETURN_IF_ERROR(CheckTensor(t, "allreduce", what));
    if (op == ReduceOp::kAvg && c10::isIntegralType(t.scalar_type(), /*includeBool=*/true)) {
      return absl::InvalidArgumentError(
          absl::StrCat("allreduce of ", what, ": avg of an integer tensor (",
                       c10::toString(t.scalar_type()), ") is not supported; sum and divide"));
    }
    return Done();  // the sum (and the mean) of one contribution is itself
  }
  absl::StatusOr<std::unique_ptr<Work>> ReduceScatterAsync(const torch::Tensor& input,
                                                           torch::Tensor& output, ReduceOp op,
                                                           const std::string& what) override {
    const std::string context = absl::StrCat("reducescatter of ", what);
    RETURN_IF_ERROR(CheckTensor(input, "reducescatter", absl::StrCat(what, " (input)")));
    RETURN_IF_ERROR(CheckTensor(output, "reducescatter", absl::StrCat(what, " (output)")));
    RETURN_IF_ERROR(CheckWholeAndBlock(input, output, 1, /*whole_is_input=*/true, context));
    if (op == ReduceOp::kAvg && c10::isIntegralType(input.scalar_type(), /*includeBool=*/true)) {
      return absl::InvalidArgumentError(absl::StrCat(context, ": avg of an integer tensor (",
                                                     c10::toString(input.scalar_type()),
                                                     ") is not supported; sum and divide"));
    }
    return CopyDone(input, output);  // the one block is the whole
  }
  absl::StatusOr<std::unique_ptr<Work>> AllGatherAsync(const torch::Tensor& input,
                                                       torch::Tensor& output,
                                                       const std::string& what) override {
    RETURN_IF_ERROR(CheckTensor(input, "allgather", absl::StrCat(what, " (input)")));
    RETURN_IF_ERROR(CheckTensor(output, "allgather", absl::StrCat(what, " (output)")));
    RETURN_IF_ERROR(CheckWholeAndBlock(output, input, 1, /*whole_is_input=*/false,
                                       absl::StrCat("allgather of ", what)));
    return CopyDone(input, output);
  }
  absl::StatusOr<std::unique_ptr<Work>> BroadcastAsync(torch::Tensor& t, int root,
                                                       const std::string& what) override {
    RETURN_IF_ERROR(CheckTensor(t, "broadcast", what));
    if (root != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("broadcast of ", what, ": root rank ", root, " out of range [0, 1)"));
    }
    return Done();
  }
  absl::StatusOr<std::unique_ptr<Work>> SendAsync(const torch::Tensor& t, int dst, int tag,
                                                  const std::string& what) override {
    RETURN_IF_ERROR(CheckTensor(t, "send", what));
    return NoPeer(dst, "send", what, "destination", tag);
  }
  absl::StatusOr<std::unique_ptr<Work>> RecvAsync(torch::Tensor& t, int src, int tag,
                                                  const std::string& what) override {
    RETURN_IF_ERROR(CheckTensor(t, "recv", what));
    return NoPeer(src, "recv", what, "source", tag);
  }
  absl::StatusOr<bool> Probe(int src, int tag) override {
    return NoPeer(src, "probe", absl::StrCat("tag ", tag), "source", tag);
  }
  absl::Status Barrier(const std::string&) override { return absl::OkStatus(); }

  absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int) override {
    if (color < 0) return std::unique_ptr<Communicator>();
    return MakeLoopbackCommunicator();
  }

  [[noreturn]] void Abort(const std::string& message, int code) override {
    std::fprintf(stderr, "rank 0: %s\n", message.c_str());
    std::fflush(stderr);
    std::fflush(stdout);
    std::_Exit(code == 0 ? 1 : code);
  }
};

}  // namespace

std::unique_ptr<Communicator> MakeLoopbackCommunicator() {
  return std::make_unique<LoopbackCommunicator>();
}

}  // namespace distill::worker
