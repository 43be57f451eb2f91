// The MPI backend (mpi_communicator.h). Every operation is a nonblocking MPI
// call on a private communicator (a dup of MPI_COMM_WORLD, or a split of it)
// whose error handler returns errors, so MPI failures become Status values.
// A Work owns its requests and every tensor MPI reads or writes; staging
// (CUDA -> host, bfloat16 -> float32 for sums) is copied back into the
// caller's tensor when the operation completes, in Test() or Wait().
#include "worker/comm/mpi_communicator.h"

#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace distill::worker {
namespace {

// Largest element count of one MPI call (counts are int): larger tensors are
// sent / reduced in chunks of this many elements, matched in order (every
// rank cuts the same tensor the same way). Lowered by tests only.
int64_t& MaxChunk() {
  static int64_t max_chunk = INT_MAX;
  return max_chunk;
}

// Process-wide MPI state: the rank names (SetMpiRankNames, by world rank),
// whether we initialised MPI, and whether Abort is under way (then the atexit
// handler must not call MPI_Finalize).
struct MpiProcess {
  std::mutex mu;
  std::vector<std::string> names;  // GUARDED_BY(mu)
  std::atomic<bool> we_initialised{false};
  std::atomic<bool> aborting{false};
};

MpiProcess& Process() {
  static MpiProcess* process = new MpiProcess;  // never destroyed: used at exit
  return *process;
}

bool MpiFinalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

void FinalizeMpiAtExit() {
  if (Process().aborting.load() || !Process().we_initialised.load()) return;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized && !MpiFinalized()) MPI_Finalize();
}

int WorldRank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// "rank 3 (teacher stage 1)" from the names, or "rank 3".
std::string DescribeWorldRank(int world_rank) {
  MpiProcess& p = Process();
  std::lock_guard<std::mutex> lock(p.mu);
  if (world_rank >= 0 && world_rank < static_cast<int>(p.names.size()) &&
      !p.names[world_rank].empty()) {
    const std::string& name = p.names[world_rank];
    // RankLayout::RankNames() gives full descriptions; accept bare roles too.
    if (name.rfind("rank ", 0) == 0) return name;
    return absl::StrCat("rank ", world_rank, " (", name, ")");
  }
  return absl::StrCat("rank ", world_rank);
}

std::string MpiErrorString(int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) return absl::StrCat("MPI error ", code);
  return std::string(buf, len);
}

// "0, 1, 2" with runs of three or more written "0-5".
std::string FormatRankList(const std::vector<int>& ranks) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (j - i >= 2) {
      parts.push_back(absl::StrCat(ranks[i], "-", ranks[j]));
    } else {
      for (size_t k = i; k <= j; ++k) parts.push_back(absl::StrCat(ranks[k]));
    }
    i = j + 1;
  }
  return absl::StrJoin(parts, ", ");
}

// How MPI sees a tensor's elements. bfloat16 moves as raw 16-bit words; a sum
// of it is staged through float32 (MPI has no bfloat16 arithmetic).
absl::StatusOr<MPI_Datatype> MpiType(torch::ScalarType dtype, const std::string& what) {
  switch (dtype) {
    case torch::kFloat32:
      return MPI_FLOAT;
    case torch::kFloat64:
      return MPI_DOUBLE;
    case torch::kBFloat16:
      return MPI_UINT16_T;
    case torch::kInt64:
      return MPI_INT64_T;
    case torch::kInt32:
      return MPI_INT32_T;
    case torch::kUInt8:
      return MPI_UINT8_T;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": dtype ", c10::toString(dtype),
                       " is not supported by the MPI communicator (float32, float64, bfloat16, "
                       "int64, int32, uint8)"));
  }
}

absl::Status CheckTensor(const torch::Tensor& t, const std::string& op, const std::string& what) {
  if (!t.defined())
    return absl::InvalidArgumentError(absl::StrCat(op, " of ", what, ": undefined tensor"));
  if (!t.is_contiguous()) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, " of ", what, ": the tensor must be contiguous"));
  }
  return MpiType(t.scalar_type(), absl::StrCat(op, " of ", what)).status();
}

// A host tensor shaped like `t`, in `dtype`, holding t's values if
// `copy_values`: pinned when `t` is on a GPU (CUDA LibTorch; never reached
// with CPU LibTorch), so both copies are plain DMA on the current stream.
torch::Tensor HostStaging(const torch::Tensor& t, torch::ScalarType dtype, bool copy_values) {
  torch::NoGradGuard no_grad;
  torch::TensorOptions options = torch::TensorOptions().dtype(dtype).device(torch::kCPU);
  if (t.is_cuda()) options = options.pinned_memory(true);
  torch::Tensor buf = torch::empty(t.sizes(), options);
  if (copy_values) buf.copy_(t);
  return buf;
}

// The chunks of `numel` elements, as (offset, count): one (0, 0) for none,
// so that both sides of a message still match.
using Chunks = std::vector<std::pair<int64_t, int>>;
Chunks ChunksOf(int64_t numel) {
  Chunks chunks;
  int64_t offset = 0;
  do {
    const int count = static_cast<int>(std::min(numel - offset, MaxChunk()));
    chunks.emplace_back(offset, count);
    offset += count;
  } while (offset < numel);
  return chunks;
}

// Issues `issue(offset, count)` for each chunk of `numel` elements.
template <typename F>
absl::Status ForEachChunk(int64_t numel, std::vector<int>* counts, F issue) {
  for (const auto& [offset, count] : ChunksOf(numel)) {
    counts->push_back(count);
    const int rc = issue(offset, count);
    if (rc != MPI_SUCCESS) return absl::InternalError(MpiErrorString(rc));
  }
  return absl::OkStatus();
}

// Note [Block chunks]: a reduce-scatter or all-gather moves one block of n
// elements per rank, and one call moves the same chunk (offset, count) of
// every block, so with n > MaxChunk() the whole tensor travels chunk-major:
// chunk (offset, count) of the blocks [size, n] as [size, count] at element
// size * offset. One chunk is the tensor's own layout.
torch::Tensor ToChunkMajor(const torch::Tensor& blocks, const Chunks& chunks) {
  std::vector<torch::Tensor> parts;
  for (const auto& [offset, count] : chunks) {
    parts.push_back(blocks.narrow(1, offset, count).reshape({-1}));
  }
  return torch::cat(parts);
}

// The inverse of ToChunkMajor: `chunk_major` back into `blocks` [size, n].
void FromChunkMajor(const torch::Tensor& chunk_major, torch::Tensor blocks, const Chunks& chunks) {
  const int64_t size = blocks.size(0);
  for (const auto& [offset, count] : chunks) {
    blocks.narrow(1, offset, count)
        .copy_(chunk_major.narrow(0, size * offset, size * count).view({size, count}));
  }
}

// "rank 2 (student 0)": this process, for messages.
std::string SelfName() { return DescribeWorldRank(WorldRank()); }

// One nonblocking operation: its requests, the tensors they use, and what to
// do once they complete.
class MpiWork : public Work {
 public:
  // Independent of its communicator's lifetime (MPI_Comm_free lets pending
  // operations finish).
  MpiWork(double timeout_s, std::string description, bool collective)
      : timeout_s_(timeout_s), description_(std::move(description)), collective_(collective) {}
  ~MpiWork() override;

  bool Test() override;
  absl::Status Wait() override;

  std::vector<MPI_Request> requests;
  std::vector<torch::Tensor> buffers;  // what MPI reads / writes: kept alive
  // Receives: the element counts expected per request (checked on completion).
  std::vector<int> expected_counts;
  MPI_Datatype type = MPI_BYTE;
  bool is_recv = false;
  // Runs once, on successful completion (divide for avg, copy staging back).
  std::function<void()> on_complete;

 private:
  void Complete(absl::Status status);
  // Once every request completed: checks the received counts, then Complete.
  void Completed(const std::vector<MPI_Status>& statuses);
  // On timeout: cancels the receive, so that no later message matches it.
  // Returns true if it completed (the message arrived) after all.
  bool CancelRecv();

  double timeout_s_;
  std::string description_;
  bool collective_;
  bool done_ = false;
  absl::Status status_;
};

class MpiCommunicator : public Communicator {
 public:
  // Takes ownership of `comm`.
  MpiCommunicator(MPI_Comm comm, double timeout_s) : comm_(comm), timeout_s_(timeout_s) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    MPI_Group group, world_group;
    MPI_Comm_group(comm_, &group);
    MPI_Comm_group(MPI_COMM_WORLD, &world_group);
    std::vector<int> local(size_);
    for (int i = 0; i < size_; ++i) local[i] = i;
    world_ranks_.resize(size_);
    MPI_Group_translate_ranks(group, size_, local.data(), world_group, world_ranks_.data());
    MPI_Group_free(&group);
    MPI_Group_free(&world_group);
    int flag = 0;
    int* tag_ub = nullptr;
    MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &tag_ub, &flag);
    if (flag && tag_ub != nullptr) tag_ub_ = *tag_ub;
  }
  ~MpiCommunicator() override {
    if (comm_ != MPI_COMM_NULL && !MpiFinalized()) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }

  absl::StatusOr<std::unique_ptr<Work>> AllReduceAsync(torch::Tensor& t, ReduceOp op,
                                                       const std::string& what) override {
    RETURN_IF_ERROR(CheckTensor(t, "allreduce", what));
    const bool integral = c10::isIntegralType(t.scalar_type(), /*includeBool=*/true);
    if (op == ReduceOp::kAvg && integral) {
      return absl::InvalidArgumentError(
          absl::StrCat("allreduce of ", what, ": avg of an integer tensor (",
                       c10::toString(t.scalar_type()), ") is not supported; sum and divide"));
    }
    const bool bf16 = t.scalar_type() == torch::kBFloat16;
    const bool staged = bf16 || !t.device().is_cpu();
    torch::Tensor buf =
        staged ? HostStaging(t, bf16 ? torch::kFloat32 : t.scalar_type(), /*copy_values=*/true) : t;
    ASSIGN_OR_RETURN(MPI_Datatype type, MpiType(buf.scalar_type(), what));
    auto work = std::make_unique<MpiWork>(
        timeout_s_,
        absl::StrCat("allreduce of ", what, " among ranks ", FormatRankList(world_ranks_)),
        /*collective=*/true);
    work->buffers = {buf, t};
    char* base = static_cast<char*>(buf.data_ptr());
    const int64_t elem = buf.element_size();
    RETURN_IF_ERROR(ForEachChunk(buf.numel(), &work->expected_counts, [&](int64_t off, int n) {
      work->requests.emplace_back();
      return MPI_Iallreduce(MPI_IN_PLACE, base + off * elem, n, type, MPI_SUM, comm_,
                            &work->requests.back());
    }));
    work->expected_counts.clear();
    const int size = size_;
    work->on_complete = [buf, t, staged, op, size]() mutable {
      if (op == ReduceOp::kAvg) buf.div_(size);
      if (staged) t.copy_(buf);
    };
    return std::unique_ptr<Work>(std::move(work));
  }

  // Sums like AllReduceAsync (bfloat16 in float32, avg divides after), in
  // chunks of every rank's block (Note [Block chunks]).
  absl::StatusOr<std::unique_ptr<Work>> ReduceScatterAsync(const torch::Tensor& input,
                                                           torch::Tensor& output, ReduceOp op,
                                                           const std::string& what) override {
    const std::string context = absl::StrCat("reducescatter of ", what);
    RETURN_IF_ERROR(CheckTensor(input, "reducescatter", absl::StrCat(what, " (input)")));
    RETURN_IF_ERROR(CheckTensor(output, "reducescatter", absl::StrCat(what, " (output)")));
    RETURN_IF_ERROR(CheckWholeAndBlock(input, output, size_, /*whole_is_input=*/true, context));
    if (op == ReduceOp::kAvg && c10::isIntegralType(input.scalar_type(), /*includeBool=*/true)) {
      return absl::InvalidArgumentError(absl::StrCat(context, ": avg of an integer tensor (",
                                                     c10::toString(input.scalar_type()),
                                                     ") is not supported; sum and divide"));
    }
    const bool bf16 = input.scalar_type() == torch::kBFloat16;
    const bool staged = bf16 || !input.device().is_cpu();
    const torch::ScalarType wire = bf16 ? torch::kFloat32 : input.scalar_type();
    const int64_t n = output.numel();
    const Chunks chunks = ChunksOf(n);
    torch::Tensor send = staged ? HostStaging(input, wire, /*copy_values=*/true) : input;
    if (chunks.size() > 1) send = ToChunkMajor(send.view({size_, n}), chunks);
    torch::Tensor recv = staged ? HostStaging(output, wire, /*copy_values=*/false) : output;
    ASSIGN_OR_RETURN(MPI_Datatype type, MpiType(wire, what));
    auto work = std::make_unique<MpiWork>(
        timeout_s_, absl::StrCat(context, " among ranks ", FormatRankList(world_ranks_)),
        /*collective=*/true);
    work->buffers = {send, recv, input, output};
    const char* send_base = static_cast<const char*>(send.data_ptr());
    char* recv_base = static_cast<char*>(recv.data_ptr());
    const int64_t elem = recv.element_size();
    for (const auto& [offset, count] : chunks) {
      work->requests.emplace_back();
      const int rc =
          MPI_Ireduce_scatter_block(send_base + size_ * offset * elem, recv_base + offset * elem,
                                    count, type, MPI_SUM, comm_, &work->requests.back());
      if (rc != MPI_SUCCESS)
        return absl::InternalError(absl::StrCat(context, ": ", MpiErrorString(rc)));
    }
    const int size = size_;
    work->on_complete = [recv, output, staged, op, size]() mutable {
      if (op == ReduceOp::kAvg) recv.div_(size);
      if (staged) output.copy_(recv);
    };
    return std::unique_ptr<Work>(std::move(work));
  }

  // bfloat16 moves as raw 16-bit words; in chunks of every rank's block
  // (Note [Block chunks]).
  absl::StatusOr<std::unique_ptr<Work>> AllGatherAsync(const torch::Tensor& input,
                                                       torch::Tensor& output,
                                                       const std::string& what) override {
    const std::string context = absl::StrCat("allgather of ", what);
    RETURN_IF_ERROR(CheckTensor(input, "allgather", absl::StrCat(what, " (input)")));
    RETURN_IF_ERROR(CheckTensor(output, "allgather", absl::StrCat(what, " (output)")));
    RETURN_IF_ERROR(CheckWholeAndBlock(output, input, size_, /*whole_is_input=*/false, context));
    const bool staged = !output.device().is_cpu();
    const int64_t n = input.numel();
    const Chunks chunks = ChunksOf(n);
    const bool chunked = chunks.size() > 1;
    torch::Tensor send =
        staged ? HostStaging(input, input.scalar_type(), /*copy_values=*/true) : input;
    torch::Tensor recv = staged || chunked
                             ? HostStaging(output, output.scalar_type(), /*copy_values=*/false)
                             : output;
    ASSIGN_OR_RETURN(MPI_Datatype type, MpiType(input.scalar_type(), what));
    auto work = std::make_unique<MpiWork>(
        timeout_s_, absl::StrCat(context, " among ranks ", FormatRankList(world_ranks_)),
        /*collective=*/true);
    work->buffers = {send, recv, input, output};
    const char* send_base = static_cast<const char*>(send.data_ptr());
    char* recv_base = static_cast<char*>(recv.data_ptr());
    const int64_t elem = recv.element_size();
    for (const auto& [offset, count] : chunks) {
      work->requests.emplace_back();
      const int rc =
          MPI_Iallgather(send_base + offset * elem, count, type, recv_base + size_ * offset * elem,
                         count, type, comm_, &work->requests.back());
      if (rc != MPI_SUCCESS)
        return absl::InternalError(absl::StrCat(context, ": ", MpiErrorString(rc)));
    }
    const int size = size_;
    if (chunked) {
      work->on_complete = [recv, output, chunks, size, n]() {
        FromChunkMajor(recv.view({-1}), output.detach().view({size, n}), chunks);
      };
    } else if (staged) {
      work->on_complete = [recv, output]() mutable { output.copy_(recv); };
    }
    return std::unique_ptr<Work>(std::move(work));
  }

  absl::StatusOr<std::unique_ptr<Work>> BroadcastAsync(torch::Tensor& t, int root,
                                                       const std::string& what) override {
    RETURN_IF_ERROR(CheckTensor(t, "broadcast", what));
    RETURN_IF_ERROR(CheckPeer(root, "broadcast", what, "root"));
    const bool staged = !t.device().is_cpu();
    torch::Tensor buf = staged ? HostStaging(t, t.scalar_type(), /*copy_values=*/true) : t;
    ASSIGN_OR_RETURN(MPI_Datatype type, MpiType(buf.scalar_type(), what));
    auto work = std::make_unique<MpiWork>(
        timeout_s_,
        absl::StrCat("broadcast of ", what, " from ", DescribeWorldRank(world_ranks_[root]),
                     " among ranks ", FormatRankList(world_ranks_)),
        /*collective=*/true);
    work->buffers = {buf, t};
    char* base = static_cast<char*>(buf.data_ptr());
    const int64_t elem = buf.element_size();
    RETURN_IF_ERROR(ForEachChunk(buf.numel(), &work->expected_counts, [&](int64_t off, int n) {
      work->requests.emplace_back();
      return MPI_Ibcast(base + off * elem, n, type, root, comm_, &work->requests.back());
    }));
    work->expected_counts.clear();
    if (staged && root != rank_) work->on_complete = [buf, t]() mutable { t.copy_(buf); };
    return std::unique_ptr<Work>(std::move(work));
  }

  absl::StatusOr<std::unique_ptr<Work>> SendAsync(const torch::Tensor& t, int dst, int tag,
                                                  const std::string& what) override {
    RETURN_IF_ERROR(CheckTensor(t, "send", what));
    RETURN_IF_ERROR(CheckPeer(dst, "send", what, "destination"));
    RETURN_IF_ERROR(CheckTag(tag, "send", what));
    torch::Tensor buf =
        t.device().is_cpu() ? t : HostStaging(t, t.scalar_type(), /*copy_values=*/true);
    ASSIGN_OR_RETURN(MPI_Datatype type, MpiType(buf.scalar_type(), what));
    auto work = std::make_unique<MpiWork>(
        timeout_s_,
        absl::StrCat("send of ", what, " to ", DescribeWorldRank(world_ranks_[dst]), " (tag ", tag,
                     ")"),
        /*collective=*/false);
    work->buffers = {buf};
    char* base = static_cast<char*>(buf.data_ptr());
    const int64_t elem = buf.element_size();
    RETURN_IF_ERROR(ForEachChunk(buf.numel(), &work->expected_counts, [&](int64_t off, int n) {
      work->requests.emplace_back();
      return MPI_Isend(base + off * elem, n, type, dst, tag, comm_, &work->requests.back());
    }));
    work->expected_counts.clear();
    return std::unique_ptr<Work>(std::move(work));
  }

  absl::StatusOr<std::unique_ptr<Work>> RecvAsync(torch::Tensor& t, int src, int tag,
                                                  const std::string& what) override {
    RETURN_IF_ERROR(CheckTensor(t, "recv", what));
    RETURN_IF_ERROR(CheckPeer(src, "recv", what, "source"));
    RETURN_IF_ERROR(CheckTag(tag, "recv", what));
    const bool staged = !t.device().is_cpu();
    torch::Tensor buf = staged ? HostStaging(t, t.scalar_type(), /*copy_values=*/false) : t;
    ASSIGN_OR_RETURN(MPI_Datatype type, MpiType(buf.scalar_type(), what));
    auto work = std::make_unique<MpiWork>(
        timeout_s_,
        absl::StrCat("recv of ", what, " from ", DescribeWorldRank(world_ranks_[src]), " (tag ",
                     tag, ")"),
        /*collective=*/false);
    work->buffers = {buf, t};
    char* base = static_cast<char*>(buf.data_ptr());
    const int64_t elem = buf.element_size();
    RETURN_IF_ERROR(ForEachChunk(buf.numel(), &work->expected_counts, [&](int64_t off, int n) {
      work->requests.emplace_back();
      return MPI_Irecv(base + off * elem, n, type, src, tag, comm_, &work->requests.back());
    }));
    work->type = type;
    work->is_recv = true;
    if (staged) work->on_complete = [buf, t]() mutable { t.copy_(buf); };
    return std::unique_ptr<Work>(std::move(work));
  }

  absl::StatusOr<bool> Probe(int src, int tag) override {
    RETURN_IF_ERROR(CheckPeer(src, "probe", absl::StrCat("tag ", tag), "source"));
    RETURN_IF_ERROR(CheckTag(tag, "probe", "a message"));
    int flag = 0;
    MPI_Status status;
    const int rc = MPI_Iprobe(src, tag, comm_, &flag, &status);
    if (rc != MPI_SUCCESS) return absl::InternalError(absl::StrCat("probe: ", MpiErrorString(rc)));
    return flag != 0;
  }

  absl::Status Barrier(const std::string& what) override {
    ASSIGN_OR_RETURN(std::unique_ptr<MpiWork> work,
                     IbarrierWork(absl::StrCat("barrier (", what, ")")));
    return work->Wait();
  }

  absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key) override {
    // MPI_Comm_split blocks without a bound: a bounded barrier first, so a
    // missing rank is a timeout rather than a hang (Note [Comm timeout]).
    ASSIGN_OR_RETURN(std::unique_ptr<MpiWork> barrier,
                     IbarrierWork(absl::StrCat("split (color ", color, ")")));
    RETURN_IF_ERROR(barrier->Wait());
    MPI_Comm out = MPI_COMM_NULL;
    const int rc = MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &out);
    if (rc != MPI_SUCCESS) return absl::InternalError(absl::StrCat("split: ", MpiErrorString(rc)));
    if (out == MPI_COMM_NULL) return std::unique_ptr<Communicator>();
    return std::unique_ptr<Communicator>(std::make_unique<MpiCommunicator>(out, timeout_s_));
  }

  [[noreturn]] void Abort(const std::string& message, int code) override {
    std::fprintf(stderr, "%s: %s\n", SelfName().c_str(), message.c_str());
    std::fflush(stderr);
    std::fflush(stdout);
    Process().aborting.store(true);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code == 0 ? 1 : code);  // MPI_Abort does not return; if it did
  }

 private:
  absl::StatusOr<std::unique_ptr<MpiWork>> IbarrierWork(const std::string& what) {
    auto work = std::make_unique<MpiWork>(
        timeout_s_, absl::StrCat(what, " among ranks ", FormatRankList(world_ranks_)),
        /*collective=*/true);
    work->requests.emplace_back();
    const int rc = MPI_Ibarrier(comm_, &work->requests.back());
    if (rc != MPI_SUCCESS) return absl::InternalError(absl::StrCat(what, ": ", MpiErrorString(rc)));
    return work;
  }

  absl::Status CheckPeer(int peer, const char* op, const std::string& what,
                         const char* role) const {
    if (peer < 0 || peer >= size_) {
      return absl::InvalidArgumentError(absl::StrCat(op, " of ", what, ": ", role, " rank ", peer,
                                                     " out of range [0, ", size_, ")"));
    }
    return absl::OkStatus();
  }
  absl::Status CheckTag(int tag, const char* op, const std::string& what) const {
    if (tag < 0 || tag > tag_ub_) {
      return absl::InvalidArgumentError(
          absl::StrCat(op, " of ", what, ": tag ", tag, " out of range [0, ", tag_ub_, "]"));
    }
    return absl::OkStatus();
  }

  MPI_Comm comm_;
  double timeout_s_;
  int rank_ = 0;
  int size_ = 1;
  int tag_ub_ = 32767;            // the least MPI guarantees
  std::vector<int> world_ranks_;  // by this communicator's rank
};

MpiWork::~MpiWork() {
  if (done_ || MpiFinalized()) return;
  // Still in flight (timed out or never waited on): MPI may yet read or write
  // the buffers, so they are deliberately leaked; the job is about to be
  // aborted anyway (Note [Comm timeout]). Point-to-point requests are freed
  // (MPI completes them in the background); a nonblocking collective's
  // request must not be freed.
  new std::vector<torch::Tensor>(std::move(buffers));
  if (!collective_) {
    for (MPI_Request& r : requests) {
      if (r != MPI_REQUEST_NULL) MPI_Request_free(&r);
    }
  }
}

void MpiWork::Complete(absl::Status status) {
  done_ = true;
  status_ = std::move(status);
  if (status_.ok() && on_complete) {
    // Writes into the caller's tensor (which may require grad) are not
    // autograd operations.
    torch::NoGradGuard no_grad;
    on_complete();
  }
  on_complete = nullptr;
  buffers.clear();
}

void MpiWork::Completed(const std::vector<MPI_Status>& statuses) {
  for (size_t i = 0; i < expected_counts.size() && i < statuses.size(); ++i) {
    int count = 0;
    MPI_Get_count(&statuses[i], type, &count);
    if (count != expected_counts[i]) {
      Complete(absl::InternalError(absl::StrCat(
          SelfName(), ": ", description_, ": the message has ", count, " elements, expected ",
          expected_counts[i], " (shapes differ between the ranks)")));
      return;
    }
  }
  Complete(absl::OkStatus());
}

bool MpiWork::CancelRecv() {
  bool received = true;
  std::vector<MPI_Status> statuses(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    // (MPI_Testall completes all requests or none: none is null yet.)
    MPI_Cancel(&requests[i]);
    MPI_Wait(&requests[i], &statuses[i]);  // prompt for a cancelled (or just matched) receive
    int cancelled = 0;
    MPI_Test_cancelled(&statuses[i], &cancelled);
    if (cancelled) received = false;
  }
  if (received) {
    Completed(statuses);
    return true;
  }
  done_ = true;  // nothing in flight any more
  buffers.clear();
  on_complete = nullptr;
  return false;
}

bool MpiWork::Test() {
  if (done_) return true;
  int flag = 0;
  std::vector<MPI_Status> statuses(requests.size());
  const int rc =
      MPI_Testall(static_cast<int>(requests.size()), requests.data(), &flag, statuses.data());
  if (rc != MPI_SUCCESS) {
    std::string detail = MpiErrorString(rc);
    if (rc == MPI_ERR_IN_STATUS) {
      for (const MPI_Status& s : statuses) {
        if (s.MPI_ERROR != MPI_SUCCESS && s.MPI_ERROR != MPI_ERR_PENDING) {
          detail = MpiErrorString(s.MPI_ERROR);
          break;
        }
      }
    }
    // Some requests may still be pending: their buffers must outlive them.
    new std::vector<torch::Tensor>(buffers);
    Complete(
        absl::InternalError(absl::StrCat(SelfName(), ": ", description_, " failed: ", detail)));
    return true;
  }
  if (!flag) return false;
  Completed(statuses);
  return true;
}

absl::Status MpiWork::Wait() {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(timeout_s_));
  // Spin briefly (latency), then sleep between polls, growing to 1 ms, so
  // oversubscribed ranks leave the cores to the ranks they wait for.
  int polls = 0;
  auto sleep = std::chrono::microseconds(50);
  while (!Test()) {
    if (Clock::now() >= deadline) {
      if (is_recv && CancelRecv()) return status_;  // it completed after all
      status_ = absl::DeadlineExceededError(absl::StrFormat(
          "%s: timed out after %g s waiting for %s", SelfName(), timeout_s_, description_));
      return status_;
    }
    if (++polls < 20) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(sleep);
      sleep = std::min(sleep * 2, std::chrono::microseconds(1000));
    }
  }
  return status_;
}

}  // namespace

namespace internal {
// Declared by the tests (mpi_communicator_test.cc): chunks of `elements`
// exercise the > INT_MAX path on small tensors. Same value on every rank.
void SetMpiMaxChunkForTesting(int64_t elements) { MaxChunk() = elements > 0 ? elements : INT_MAX; }
}  // namespace internal

absl::Status InitMpi(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return absl::OkStatus();
  if (MpiFinalized()) return absl::FailedPreconditionError("InitMpi: MPI was already finalised");
  int provided = 0;
  const int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  if (rc != MPI_SUCCESS) {
    return absl::UnavailableError(absl::StrCat("MPI_Init_thread failed: ", MpiErrorString(rc)));
  }
  Process().we_initialised.store(true);
  std::atexit(FinalizeMpiAtExit);
  if (provided < MPI_THREAD_FUNNELED) {
    return absl::FailedPreconditionError(
        absl::StrCat("MPI provides thread level ", provided, ", below MPI_THREAD_FUNNELED"));
  }
  return absl::OkStatus();
}

bool LaunchedByMpirun() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr ||
         std::getenv("PMI_RANK") != nullptr;
}

absl::StatusOr<std::unique_ptr<Communicator>> MpiWorld(double timeout_s) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized || MpiFinalized()) {
    return absl::FailedPreconditionError("MpiWorld: MPI is not initialised (call InitMpi first)");
  }
  if (!(timeout_s > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("MpiWorld: timeout_s must be > 0, got ", timeout_s));
  }
  // A dup (not blocking: idup) so our messages never mix with anyone else's
  // on MPI_COMM_WORLD; errors are returned rather than fatal.
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Request req = MPI_REQUEST_NULL;
  int rc = MPI_Comm_idup(MPI_COMM_WORLD, &comm, &req);
  if (rc != MPI_SUCCESS)
    return absl::InternalError(absl::StrCat("MPI_Comm_idup: ", MpiErrorString(rc)));
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(timeout_s));
  int flag = 0;
  while (true) {
    rc = MPI_Test(&req, &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS)
      return absl::InternalError(absl::StrCat("MPI_Comm_idup: ", MpiErrorString(rc)));
    if (flag) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      int size = 0;
      MPI_Comm_size(MPI_COMM_WORLD, &size);
      return absl::DeadlineExceededError(absl::StrFormat(
          "%s: timed out after %g s waiting for the creation of the world communicator among ranks "
          "0-%d",
          DescribeWorldRank(WorldRank()), timeout_s, size - 1));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  return std::unique_ptr<Communicator>(std::make_unique<MpiCommunicator>(comm, timeout_s));
}

void SetMpiRankNames(std::vector<std::string> names_by_world_rank) {
  MpiProcess& p = Process();
  std::lock_guard<std::mutex> lock(p.mu);
  p.names = std::move(names_by_world_rank);
}

}  // namespace distill::worker
