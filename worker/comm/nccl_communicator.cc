// The NCCL backend of Communicator (nccl_communicator.h). One NcclState per
// NCCL communicator holds the ncclComm_t, its stream and a scratch float;
// the communicator and every Work share it, so a handle may outlive the
// communicator. Every CUDA/NCCL error becomes a Status with the library's
// own message.
//
// Abort() ends the job through the bootstrap communicator's Abort()
// (MPI_Abort): the bootstrap passed to MakeNcclCommunicator must outlive
// the NCCL communicator and every communicator Split from it.
#include "worker/comm/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <utility>

#if DISTILL_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace distill::worker {
namespace {

absl::Status CudaStatus(cudaError_t e, const std::string& context) {
  if (e == cudaSuccess) return absl::OkStatus();
  (void)cudaGetLastError();  // Clear it, so that LibTorch's next check does not see it.
  std::string msg =
      absl::StrCat("comm: nccl: ", context, ": ", cudaGetErrorName(e), ": ", cudaGetErrorString(e));
  switch (e) {
    case cudaErrorMemoryAllocation:
      return absl::ResourceExhaustedError(msg);
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
      return absl::FailedPreconditionError(msg);
    default:
      return absl::InternalError(msg);
  }
}

#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 14, 0)
constexpr ncclResult_t kNcclInProgress = ncclInProgress;
#else
constexpr ncclResult_t kNcclInProgress = ncclSuccess;  // No nonblocking mode.
#endif

// `comm` may be null (no communicator yet); it adds NCCL's last error text.
absl::Status NcclStatus(ncclResult_t r, ncclComm_t comm, const std::string& context) {
  if (r == ncclSuccess) return absl::OkStatus();
  std::string msg = absl::StrCat("comm: nccl: ", context, ": ", ncclGetErrorString(r));
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 13, 0)
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && last[0] != '\0') absl::StrAppend(&msg, " (", last, ")");
#endif
  switch (r) {
    case ncclInvalidArgument:
      return absl::InvalidArgumentError(msg);
    case ncclInvalidUsage:
      return absl::FailedPreconditionError(msg);
    case ncclSystemError:
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 14, 0)
    case ncclRemoteError:
    case ncclInProgress:
#endif
      return absl::UnavailableError(msg);
    default:
      return absl::InternalError(msg);
  }
}

// Makes `device` current for its lifetime (CUDA events and streams belong to
// a device; NCCL wants its communicator's device current).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) : device_(device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) {
      (void)cudaGetLastError();
      previous_ = device;
    }
    if (previous_ != device_) (void)cudaSetDevice(device_);
  }
  ~DeviceGuard() {
    if (previous_ != device_) (void)cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int device_;
  int previous_ = 0;
};

// The stream the caller's CUDA work runs on: LibTorch's current stream, or
// (CPU LibTorch: nothing of ours runs on the GPU) the legacy default stream.
cudaStream_t CallerStream(int device) {
#if DISTILL_WITH_CUDA
  return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream();
#else
  (void)device;
  return cudaStreamLegacy;
#endif
}

// The NCCL reduction for `op` over `ranks`, and the divisor to apply after
// completion (1: none): avg is ncclAvg from NCCL 2.10, else sum then divide.
std::pair<ncclRedOp_t, int> Reduction(ReduceOp op, int ranks) {
  if (op != ReduceOp::kAvg) return {ncclSum, 1};
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 10, 0)
  (void)ranks;
  return {ncclAvg, 1};
#else
  return {ncclSum, ranks};
#endif
}

absl::StatusOr<ncclDataType_t> NcclType(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32:
      return ncclFloat32;
    case torch::kFloat64:
      return ncclFloat64;
    case torch::kFloat16:
      return ncclFloat16;
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 10, 0)
    case torch::kBFloat16:
      return ncclBfloat16;
#endif
    case torch::kInt64:
      return ncclInt64;
    case torch::kInt32:
      return ncclInt32;
    case torch::kUInt8:
      return ncclUint8;
    default:
      return absl::InvalidArgumentError(absl::StrCat("unsupported dtype ", c10::toString(t),
                                                     " (float32, float64, bfloat16, float16, "
                                                     "int64, int32, uint8)"));
  }
}

// Shared by a communicator and its Work handles.
struct NcclState {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;  // Ours: cudaStreamNonBlocking.
  cudaEvent_t ready = nullptr;    // Recorded on the caller's stream before each op.
  float* scratch = nullptr;       // One float on the device, for Barrier.
  int device = 0;
  int rank = 0;
  int size = 0;
  double timeout_s = 60;
  bool aborted = false;  // After ncclCommAbort: every later op is refused.
  Communicator* bootstrap = nullptr;

  NcclState() = default;
  NcclState(const NcclState&) = delete;
  NcclState& operator=(const NcclState&) = delete;

  // Idempotent; a hung peer does not block it.
  void AbortComm() {
    if (aborted || comm == nullptr) return;
    aborted = true;
    DeviceGuard guard(device);
    (void)ncclCommAbort(comm);
  }

  ~NcclState() {
    DeviceGuard guard(device);
    if (comm != nullptr && !aborted) {
      // ncclCommDestroy waits for operations still in flight; with one still
      // running (a handle dropped unwaited, a hung peer) abort instead.
      if (stream != nullptr && cudaStreamQuery(stream) != cudaSuccess) {
        (void)cudaGetLastError();
        (void)ncclCommAbort(comm);
      } else {
        (void)ncclCommDestroy(comm);
      }
    }
    if (ready != nullptr) (void)cudaEventDestroy(ready);
    if (stream != nullptr) (void)cudaStreamDestroy(stream);
    if (scratch != nullptr) (void)cudaFree(scratch);
    (void)cudaGetLastError();
  }
};

class NcclWork final : public Work {
 public:
  // `divide_by` > 1: divide the result after completion (ReduceOp::kAvg
  // without ncclAvg).
  NcclWork(std::shared_ptr<NcclState> state, cudaEvent_t done, torch::Tensor tensor,
           std::string description, int divide_by)
      : state_(std::move(state)),
        done_(done),
        tensor_(std::move(tensor)),
        description_(std::move(description)),
        divide_by_(divide_by) {}
  ~NcclWork() override { (void)cudaEventDestroy(done_); }

  bool Test() override {
    if (complete_) return true;
    cudaError_t e = cudaEventQuery(done_);
    if (e == cudaErrorNotReady) return false;
    complete_ = true;
    result_ = CudaStatus(e, description_);
    return true;
  }

  absl::Status Wait() override {
    if (waited_) return result_;
    waited_ = true;
    result_ = AwaitCompletion();
    if (result_.ok()) {
      DeviceGuard guard(state_->device);
      result_ = CudaStatus(cudaStreamWaitEvent(CallerStream(state_->device), done_, 0),
                           absl::StrCat("order the caller's stream after ", description_));
    }
    if (result_.ok() && divide_by_ > 1) {  // Integers: as ncclAvg does.
      if (torch::isFloatingType(tensor_.scalar_type())) {
        tensor_.div_(divide_by_);
      } else {
        tensor_.div_(divide_by_, "trunc");
      }
    }
    tensor_ = torch::Tensor();  // The caller's stream is ordered after us now.
    return result_;
  }

 private:
  // Polls the completion event until done, an asynchronous NCCL error or the
  // timeout (the last two abort the communicator).
  absl::Status AwaitCompletion() {
    if (state_->aborted && !Test()) {
      return absl::FailedPreconditionError(absl::StrCat("comm: nccl: rank ", state_->rank,
                                                        ": the communicator was aborted before ",
                                                        description_, " completed"));
    }
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + std::chrono::duration<double>(state_->timeout_s);
    auto pause = std::chrono::microseconds(0);
    while (!Test()) {
      ncclResult_t async = ncclSuccess;
      if (ncclCommGetAsyncError(state_->comm, &async) == ncclSuccess && async != ncclSuccess &&
          async != kNcclInProgress) {
        absl::Status s = NcclStatus(async, state_->comm,
                                    absl::StrCat("rank ", state_->rank, ": ", description_));
        state_->AbortComm();
        return s;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        state_->AbortComm();
        return absl::DeadlineExceededError(
            absl::StrFormat("rank %d: timed out after %g s waiting for %s (nccl, %d ranks); "
                            "aborted the NCCL communicator",
                            state_->rank, state_->timeout_s, description_, state_->size));
      }
      // Spin for 200 us (collectives often finish in microseconds), then back
      // off to 1 ms sleeps so that a long wait does not burn a core.
      if (pause.count() == 0) {
        std::this_thread::yield();
        if (std::chrono::steady_clock::now() - start > std::chrono::microseconds(200)) {
          pause = std::chrono::microseconds(20);
        }
      } else {
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::microseconds(1000));
      }
    }
    return result_;
  }

  std::shared_ptr<NcclState> state_;
  cudaEvent_t done_;
  torch::Tensor tensor_;  // Kept alive while in flight.
  std::string description_;
  int divide_by_;
  bool complete_ = false;
  bool waited_ = false;
  absl::Status result_;
};

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(std::shared_ptr<NcclState> state) : state_(std::move(state)) {}

  int rank() const override { return state_->rank; }
  int size() const override { return state_->size; }
  std::string backend() const override { return "nccl"; }

  absl::StatusOr<std::unique_ptr<Work>> AllReduceAsync(torch::Tensor& t, ReduceOp op,
                                                       const std::string& what) override {
    const std::string desc = absl::StrCat("allreduce of ", what);
    ASSIGN_OR_RETURN(ncclDataType_t type, CheckTensor(t, desc));
    const std::pair<ncclRedOp_t, int> reduction = Reduction(op, state_->size);
    const ncclRedOp_t nccl_op = reduction.first;
    const int divide_by = reduction.second;
    return Enqueue(desc, t, divide_by, [&](ncclComm_t comm, cudaStream_t s) {
      return ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), type, nccl_op, comm, s);
    });
  }

  absl::StatusOr<std::unique_ptr<Work>> ReduceScatterAsync(const torch::Tensor& input,
                                                           torch::Tensor& output, ReduceOp op,
                                                           const std::string& what) override {
    const std::string desc = absl::StrCat("reducescatter of ", what);
    ASSIGN_OR_RETURN(ncclDataType_t type, CheckTensor(input, absl::StrCat(desc, " (input)")));
    RETURN_IF_ERROR(CheckTensor(output, absl::StrCat(desc, " (output)")).status());
    RETURN_IF_ERROR(CheckWholeAndBlock(input, output, size(), /*whole_is_input=*/true,
                                       absl::StrCat("comm: nccl: ", desc)));
    const std::pair<ncclRedOp_t, int> reduction = Reduction(op, state_->size);
    const ncclRedOp_t nccl_op = reduction.first;
    const int divide_by = reduction.second;
    return Enqueue(
        desc, output, divide_by,
        [&](ncclComm_t comm, cudaStream_t s) {
          return ncclReduceScatter(input.data_ptr(), output.data_ptr(), output.numel(), type,
                                   nccl_op, comm, s);
        },
        input);
  }

  absl::StatusOr<std::unique_ptr<Work>> AllGatherAsync(const torch::Tensor& input,
                                                       torch::Tensor& output,
                                                       const std::string& what) override {
    const std::string desc = absl::StrCat("allgather of ", what);
    ASSIGN_OR_RETURN(ncclDataType_t type, CheckTensor(input, absl::StrCat(desc, " (input)")));
    RETURN_IF_ERROR(CheckTensor(output, absl::StrCat(desc, " (output)")).status());
    RETURN_IF_ERROR(CheckWholeAndBlock(output, input, size(), /*whole_is_input=*/false,
                                       absl::StrCat("comm: nccl: ", desc)));
    return Enqueue(
        desc, output, 1,
        [&](ncclComm_t comm, cudaStream_t s) {
          return ncclAllGather(input.data_ptr(), output.data_ptr(), input.numel(), type, comm, s);
        },
        input);
  }

  absl::StatusOr<std::unique_ptr<Work>> BroadcastAsync(torch::Tensor& t, int root,
                                                       const std::string& what) override {
    const std::string desc = absl::StrCat("broadcast of ", what, " from rank ", root);
    ASSIGN_OR_RETURN(ncclDataType_t type, CheckTensor(t, desc));
    if (root < 0 || root >= size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("comm: nccl: ", desc, ": root out of range [0, ", size(), ")"));
    }
    return Enqueue(desc, t, 1, [&](ncclComm_t comm, cudaStream_t s) {
      return ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), type, root, comm, s);
    });
  }

  absl::StatusOr<std::unique_ptr<Work>> SendAsync(const torch::Tensor& t, int dst, int tag,
                                                  const std::string& what) override {
    const std::string desc = absl::StrCat("send of ", what, " to rank ", dst, " (tag ", tag, ")");
    ASSIGN_OR_RETURN(ncclDataType_t type, CheckTensor(t, desc));
    RETURN_IF_ERROR(CheckPeer(dst, desc));
    return Enqueue(desc, t, 1, [&](ncclComm_t comm, cudaStream_t s) {
      return ncclSend(t.data_ptr(), t.numel(), type, dst, comm, s);
    });
  }

  absl::StatusOr<std::unique_ptr<Work>> RecvAsync(torch::Tensor& t, int src, int tag,
                                                  const std::string& what) override {
    const std::string desc = absl::StrCat("recv of ", what, " from rank ", src, " (tag ", tag, ")");
    ASSIGN_OR_RETURN(ncclDataType_t type, CheckTensor(t, desc));
    RETURN_IF_ERROR(CheckPeer(src, desc));
    return Enqueue(desc, t, 1, [&](ncclComm_t comm, cudaStream_t s) {
      return ncclRecv(t.data_ptr(), t.numel(), type, src, comm, s);
    });
  }

  absl::StatusOr<bool> Probe(int src, int tag) override {
    return absl::UnimplementedError(
        absl::StrCat("comm: nccl: Probe (from rank ", src, ", tag ", tag,
                     ") is not supported: NCCL matches sends and receives by order, not by tag"));
  }

  absl::Status Barrier(const std::string& what) override {
    float* p = state_->scratch;
    ASSIGN_OR_RETURN(std::unique_ptr<Work> w,
                     Enqueue(absl::StrCat("barrier for ", what), torch::Tensor(), 1,
                             [&](ncclComm_t comm, cudaStream_t s) {
                               return ncclAllReduce(p, p, 1, ncclFloat32, ncclSum, comm, s);
                             }));
    return w->Wait();
  }

  absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key) override;

  [[noreturn]] void Abort(const std::string& message, int code) override {
    state_->AbortComm();
    state_->bootstrap->Abort(message, code);
    std::_Exit(code != 0 ? code : 1);  // Not reached: the bootstrap's Abort does not return.
  }

 private:
  absl::Status CheckUsable(const std::string& desc) const {
    if (state_->aborted) {
      return absl::FailedPreconditionError(
          absl::StrCat("comm: nccl: rank ", state_->rank, ": ", desc,
                       ": the NCCL communicator was aborted (after a timeout or error)"));
    }
    return absl::OkStatus();
  }

  // The tensor's NCCL type, or InvalidArgument naming `desc` (and so `what`).
  absl::StatusOr<ncclDataType_t> CheckTensor(const torch::Tensor& t,
                                             const std::string& desc) const {
    auto invalid = [&](const std::string& why) {
      return absl::InvalidArgumentError(absl::StrCat("comm: nccl: ", desc, ": ", why));
    };
    if (!t.defined()) return invalid("undefined tensor");
    if (!t.is_cuda() || t.layout() != torch::kStrided) {
      return invalid(absl::StrCat("expected a dense CUDA tensor on cuda:", state_->device, ", got ",
                                  t.device().str(), " (", c10::str(t.layout()), ")"));
    }
    if (t.device().index() != state_->device) {
      return invalid(absl::StrCat("tensor is on ", t.device().str(),
                                  " but this communicator uses cuda:", state_->device));
    }
    if (!t.is_contiguous()) return invalid("tensor must be contiguous");
    absl::StatusOr<ncclDataType_t> type = NcclType(t.scalar_type());
    if (!type.ok()) return invalid(std::string(type.status().message()));
    return type;
  }

  absl::Status CheckPeer(int peer, const std::string& desc) const {
    if (peer < 0 || peer >= size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("comm: nccl: ", desc, ": peer out of range [0, ", size(), ")"));
    }
    if (peer == rank()) {
      // An ungrouped ncclSend blocks the stream until its ncclRecv runs: to
      // self, that recv would queue behind it forever.
      return absl::InvalidArgumentError(
          absl::StrCat("comm: nccl: ", desc,
                       ": send/recv to self is not supported (it would deadlock the stream)"));
    }
    return absl::OkStatus();
  }

  // Orders our stream after the caller's, enqueues `launch` on it, and
  // returns a handle on its completion event. `t` is the tensor written (or
  // the only one), `source` a separate tensor read (reduce-scatter,
  // all-gather); both are kept from reuse until the operation is done.
  template <typename Launch>
  absl::StatusOr<std::unique_ptr<Work>> Enqueue(const std::string& desc, const torch::Tensor& t,
                                                int divide_by, Launch&& launch,
                                                const torch::Tensor& source = torch::Tensor()) {
    RETURN_IF_ERROR(CheckUsable(desc));
    NcclState& st = *state_;
    DeviceGuard guard(st.device);
    cudaEvent_t done = nullptr;
    RETURN_IF_ERROR(CudaStatus(cudaEventCreateWithFlags(&done, cudaEventDisableTiming),
                               absl::StrCat("create the event of ", desc)));
    auto fail = [&](absl::Status s) {
      (void)cudaEventDestroy(done);
      return s;
    };
    absl::Status s = CudaStatus(cudaEventRecord(st.ready, CallerStream(st.device)),
                                absl::StrCat("record the caller's stream before ", desc));
    if (!s.ok()) return fail(s);
    s = CudaStatus(cudaStreamWaitEvent(st.stream, st.ready, 0), absl::StrCat("order ", desc));
    if (!s.ok()) return fail(s);
    if (!t.defined() || t.numel() > 0) {  // Empty: a no-op on every rank (same counts).
      s = NcclStatus(launch(st.comm, st.stream), st.comm,
                     absl::StrCat("rank ", st.rank, ": ", desc));
      if (!s.ok()) return fail(s);
    }
    s = CudaStatus(cudaEventRecord(done, st.stream),
                   absl::StrCat("record the completion of ", desc));
    if (!s.ok()) return fail(s);
#if DISTILL_WITH_CUDA
    // The caching allocator must not hand the memory out again (when the
    // caller frees a tensor) before our stream is done with it.
    for (const torch::Tensor* used : {&t, &source}) {
      if (used->defined() && used->numel() > 0) {
        c10::cuda::CUDACachingAllocator::recordStream(
            used->storage().data_ptr(),
            c10::cuda::getStreamFromExternal(st.stream, static_cast<c10::DeviceIndex>(st.device)));
      }
    }
#endif
    return std::unique_ptr<Work>(std::make_unique<NcclWork>(state_, done, t, desc, divide_by));
  }

  std::shared_ptr<NcclState> state_;
};

// Gives a fresh ncclComm_t its stream, events and scratch; `state->comm`,
// `device`, `timeout_s` and `bootstrap` are set.
absl::Status FinishState(NcclState& st) {
  DeviceGuard guard(st.device);
  RETURN_IF_ERROR(
      NcclStatus(ncclCommUserRank(st.comm, &st.rank), st.comm, "rank of the communicator"));
  RETURN_IF_ERROR(
      NcclStatus(ncclCommCount(st.comm, &st.size), st.comm, "size of the communicator"));
  RETURN_IF_ERROR(CudaStatus(cudaStreamCreateWithFlags(&st.stream, cudaStreamNonBlocking),
                             "create the communication stream"));
  RETURN_IF_ERROR(
      CudaStatus(cudaEventCreateWithFlags(&st.ready, cudaEventDisableTiming), "create an event"));
  RETURN_IF_ERROR(CudaStatus(cudaMalloc(reinterpret_cast<void**>(&st.scratch), sizeof(float)),
                             "allocate the barrier's scratch float"));
  return CudaStatus(cudaMemsetAsync(st.scratch, 0, sizeof(float), st.stream),
                    "clear the barrier's scratch float");
}

absl::StatusOr<std::unique_ptr<Communicator>> NcclCommunicator::Split(int color, int key) {
  RETURN_IF_ERROR(CheckUsable("split"));
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 18, 0)
  auto child = std::make_shared<NcclState>();
  child->device = state_->device;
  child->timeout_s = state_->timeout_s;
  child->bootstrap = state_->bootstrap;
  {
    DeviceGuard guard(state_->device);
    RETURN_IF_ERROR(NcclStatus(
        ncclCommSplit(state_->comm, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &child->comm,
                      nullptr),
        state_->comm, absl::StrFormat("rank %d: split (color %d, key %d)", rank(), color, key)));
  }
  if (color < 0 || child->comm == nullptr) return std::unique_ptr<Communicator>();
  RETURN_IF_ERROR(FinishState(*child));
  return std::unique_ptr<Communicator>(std::make_unique<NcclCommunicator>(std::move(child)));
#else
  (void)color;
  (void)key;
  return absl::UnimplementedError(
      absl::StrCat("comm: nccl: Split needs ncclCommSplit (NCCL >= 2.18); "
                   "this build has NCCL ",
                   NCCL_MAJOR, ".", NCCL_MINOR, ".", NCCL_PATCH));
#endif
}

}  // namespace

bool NcclAvailable() { return true; }

std::string NcclVersion() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "";
  // Codes before 2.9 were major*1000 + minor*100 + patch.
  if (v < 20900) return absl::StrCat(v / 1000, ".", v % 1000 / 100, ".", v % 100);
  return absl::StrCat(v / 10000, ".", v % 10000 / 100, ".", v % 100);
}

absl::StatusOr<std::unique_ptr<Communicator>> MakeNcclCommunicator(Communicator& bootstrap,
                                                                   int device, double timeout_s) {
  if (!(timeout_s > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("comm: nccl: timeout must be > 0 s, got ", timeout_s));
  }
  // Every rank checks its device, then all agree, so that one rank without
  // it fails every rank at once instead of leaving them in the id broadcast.
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  std::string problem;
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    count = 0;
  }
  if (device < 0 || device >= count) {
    problem = absl::StrFormat("comm: nccl: no CUDA device %d (found %d%s)", device, count,
                              e == cudaSuccess ? "" : absl::StrCat("; ", cudaGetErrorString(e)));
  }
  if (bootstrap.size() > 1) {
    torch::Tensor failed = torch::full({1}, problem.empty() ? 0 : 1, torch::kInt32);
    RETURN_IF_ERROR(bootstrap.AllReduce(failed, ReduceOp::kSum, "nccl setup: device check"));
    const int n = failed.item<int>();
    if (problem.empty() && n > 0) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "comm: nccl: %d of %d ranks have no CUDA device %d", n, bootstrap.size(), device));
    }
  }
  if (!problem.empty()) return absl::FailedPreconditionError(problem);
  RETURN_IF_ERROR(CudaStatus(cudaSetDevice(device), absl::StrCat("select device ", device)));

  // Rank 0 makes the id; the last byte says whether it could.
  torch::Tensor id_bytes =
      torch::zeros({static_cast<int64_t>(sizeof(ncclUniqueId)) + 1}, torch::kUInt8);
  ncclUniqueId id;
  absl::Status id_status;
  if (bootstrap.rank() == 0) {
    id_status = NcclStatus(ncclGetUniqueId(&id), nullptr, "make the unique id");
    if (id_status.ok()) {
      std::memcpy(id_bytes.data_ptr(), &id, sizeof(id));
      id_bytes.data_ptr<uint8_t>()[sizeof(id)] = 1;
    }
  }
  RETURN_IF_ERROR(bootstrap.Broadcast(id_bytes, 0, "nccl setup: unique id"));
  if (!id_status.ok()) return id_status;
  if (id_bytes.data_ptr<uint8_t>()[sizeof(id)] != 1) {
    return absl::UnavailableError(
        "comm: nccl: rank 0 could not make the NCCL unique id (see its log)");
  }
  std::memcpy(&id, id_bytes.data_ptr(), sizeof(id));

  auto state = std::make_shared<NcclState>();
  state->device = device;
  state->timeout_s = timeout_s;
  state->bootstrap = &bootstrap;
  RETURN_IF_ERROR(NcclStatus(ncclCommInitRank(&state->comm, bootstrap.size(), id, bootstrap.rank()),
                             nullptr,
                             absl::StrFormat("rank %d: init (%d ranks, cuda:%d)", bootstrap.rank(),
                                             bootstrap.size(), device)));
  RETURN_IF_ERROR(FinishState(*state));
  return std::unique_ptr<Communicator>(std::make_unique<NcclCommunicator>(std::move(state)));
}

}  // namespace distill::worker
