#include "worker/comm/communicator.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace distill::worker {

absl::Status Communicator::AllReduce(torch::Tensor& t, ReduceOp op, const std::string& what) {
  ASSIGN_OR_RETURN(std::unique_ptr<Work> w, AllReduceAsync(t, op, what));
  return w->Wait();
}

absl::Status Communicator::ReduceScatter(const torch::Tensor& input, torch::Tensor& output,
                                         ReduceOp op, const std::string& what) {
  ASSIGN_OR_RETURN(std::unique_ptr<Work> w, ReduceScatterAsync(input, output, op, what));
  return w->Wait();
}

absl::Status Communicator::AllGather(const torch::Tensor& input, torch::Tensor& output,
                                     const std::string& what) {
  ASSIGN_OR_RETURN(std::unique_ptr<Work> w, AllGatherAsync(input, output, what));
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

absl::Status CheckWholeAndBlock(const torch::Tensor& whole, const torch::Tensor& block, int ranks,
                                bool whole_is_input, const std::string& context) {
  const torch::Tensor& input = whole_is_input ? whole : block;
  const torch::Tensor& output = whole_is_input ? block : whole;
  auto invalid = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(context, ": ", why));
  };
  if (input.scalar_type() != output.scalar_type()) {
    return invalid(absl::StrCat("the input is ", c10::toString(input.scalar_type()),
                                " but the output is ", c10::toString(output.scalar_type()),
                                " (the dtypes must match)"));
  }
  if (input.device() != output.device()) {
    return invalid(absl::StrCat("the input is on ", input.device().str(), " but the output is on ",
                                output.device().str(), " (the devices must match)"));
  }
  if (whole.numel() != ranks * block.numel()) {
    return invalid(absl::StrCat("the ", whole_is_input ? "input" : "output", " has ", whole.numel(),
                                " elements, expected ", ranks * block.numel(), " (", ranks,
                                " ranks x the ", whole_is_input ? "output" : "input", "'s ",
                                block.numel(), ")"));
  }
  const auto w = reinterpret_cast<uintptr_t>(whole.data_ptr());
  const auto b = reinterpret_cast<uintptr_t>(block.data_ptr());
  const uintptr_t w_bytes = whole.numel() * whole.element_size();
  const uintptr_t b_bytes = block.numel() * block.element_size();
  if (w_bytes > 0 && b_bytes > 0 && std::max(w, b) < std::min(w + w_bytes, b + b_bytes)) {
    return invalid("the input and the output overlap (they must be separate memory)");
  }
  return absl::OkStatus();
}

}  // namespace distill::worker
