// The NCCL Communicator (nccl_communicator.h) under mpirun (nccl_tests.cmake:
// one rank). Without a GPU (the CPU build) the build and refusal paths run
// and the GPU tests skip; on the GPU machine (scripts/gpu_check.sh) the GPU
// tests run on one rank, where every collective is the identity, so they
// check the plumbing: dtypes, stream ordering, errors, timeouts.
// NcclTwoRanksOneGpuTest runs only with two ranks on one GPU.
#include "worker/comm/nccl_communicator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "worker/comm/mpi_communicator.h"

#if DISTILL_WITH_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#endif
#if DISTILL_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

namespace distill::worker {
namespace {

using ::testing::HasSubstr;

constexpr double kTimeoutS = 60.0;

std::string Message(const absl::Status& s) { return std::string(s.message()); }

#if !DISTILL_WITH_NCCL

TEST(NcclBuildTest, WithoutNcclTheBackendIsRefused) {
  EXPECT_FALSE(NcclAvailable());
  EXPECT_EQ(NcclVersion(), "");
  auto world = MpiWorld(kTimeoutS);
  ASSERT_TRUE(world.ok()) << world.status();
  auto comm = MakeNcclCommunicator(**world, 0, kTimeoutS);
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kUnimplemented) << comm.status();
  EXPECT_THAT(Message(comm.status()), HasSubstr("use comm: mpi"));
}

#else  // DISTILL_WITH_NCCL

// The CUDA runtime's device count (0 without a GPU or driver).
int CudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

cudaStream_t CallerStream() {
#if DISTILL_WITH_CUDA
  return c10::cuda::getCurrentCUDAStream().stream();
#else
  return cudaStreamLegacy;
#endif
}

TEST(NcclBuildTest, AvailableAtTheHeadersVersion) {
  EXPECT_TRUE(NcclAvailable());
  // nccl.cmake takes nccl.h and libnccl from one place (pip torch's NCCL
  // first), so the loaded library is the one compiled against.
  EXPECT_EQ(NcclVersion(), absl::StrCat(NCCL_MAJOR, ".", NCCL_MINOR, ".", NCCL_PATCH));
}

TEST(NcclSetupTest, MissingDeviceIsFailedPreconditionNamingIt) {
  auto world = MpiWorld(kTimeoutS);
  ASSERT_TRUE(world.ok()) << world.status();
  const int n = CudaDeviceCount();
  // One past the last device: device 0 here, where there is no GPU.
  auto comm = MakeNcclCommunicator(**world, n, kTimeoutS);
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kFailedPrecondition) << comm.status();
  EXPECT_THAT(Message(comm.status()),
              HasSubstr(absl::StrFormat("comm: nccl: no CUDA device %d (found %d", n, n)));

  comm = MakeNcclCommunicator(**world, -1, kTimeoutS);
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kFailedPrecondition) << comm.status();
  EXPECT_THAT(Message(comm.status()), HasSubstr("no CUDA device -1"));

  comm = MakeNcclCommunicator(**world, 0, 0.0);
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kInvalidArgument) << comm.status();
  EXPECT_THAT(Message(comm.status()), HasSubstr("timeout"));
}

TEST(NcclSetupTest, WithoutGpuDeviceZeroIsRefused) {
  if (CudaDeviceCount() > 0) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_FALSE(torch::cuda::is_available());
  auto world = MpiWorld(kTimeoutS);
  ASSERT_TRUE(world.ok()) << world.status();
  auto comm = MakeNcclCommunicator(**world, 0, kTimeoutS);
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kFailedPrecondition) << comm.status();
  EXPECT_THAT(Message(comm.status()), HasSubstr("comm: nccl: no CUDA device 0 (found 0"));
  std::printf("[ info     ] %s\n", comm.status().ToString().c_str());
}

// One NCCL communicator per test over the MPI world, rank r on device
// r % devices.
class NcclCommunicatorGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch::cuda::is_available() || CudaDeviceCount() == 0) {
      GTEST_SKIP() << "needs a CUDA device and CUDA LibTorch";
    }
    auto world = MpiWorld(kTimeoutS);
    ASSERT_TRUE(world.ok()) << world.status();
    world_ = std::move(world).value();
    rank_ = world_->rank();
    n_ = world_->size();
    device_ = rank_ % CudaDeviceCount();
    auto comm = MakeNcclCommunicator(*world_, device_, Timeout());
    ASSERT_TRUE(comm.ok()) << comm.status();
    comm_ = std::move(comm).value();
  }
  virtual double Timeout() const { return kTimeoutS; }

  torch::TensorOptions Cuda(torch::ScalarType t = torch::kFloat32) const {
    return torch::TensorOptions().dtype(t).device(torch::kCUDA, device_);
  }

  std::unique_ptr<Communicator> world_;  // Outlives comm_ (Abort goes through it).
  std::unique_ptr<Communicator> comm_;
  int rank_ = 0;
  int n_ = 0;
  int device_ = 0;
};

TEST_F(NcclCommunicatorGpuTest, ReportsRankSizeAndBackend) {
  EXPECT_EQ(comm_->backend(), "nccl");
  EXPECT_EQ(comm_->rank(), rank_);
  EXPECT_EQ(comm_->size(), n_);
}

TEST_F(NcclCommunicatorGpuTest, AllReduceSumAndAvgFloat32) {
  // Rank r contributes r + 1 (+ i): sum n (n + 1) / 2, avg (n + 1) / 2.
  const int64_t k = 1 << 20;
  torch::Tensor ramp = torch::arange(k, Cuda()).remainder(1000);
  torch::Tensor t = ramp + (rank_ + 1);
  ASSERT_TRUE(comm_->AllReduce(t, ReduceOp::kSum, "sum test").ok());
  EXPECT_TRUE(torch::equal(t, ramp * n_ + n_ * (n_ + 1) / 2.0f));

  torch::Tensor a = torch::full({3, 5}, rank_ + 1.0f, Cuda());
  ASSERT_TRUE(comm_->AllReduce(a, ReduceOp::kAvg, "avg test").ok());
  EXPECT_TRUE(torch::equal(a, torch::full({3, 5}, (n_ + 1) / 2.0f, Cuda())));
}

TEST_F(NcclCommunicatorGpuTest, AllReduceOtherDtypes) {
  for (torch::ScalarType dt :
       {torch::kBFloat16, torch::kFloat16, torch::kFloat64, torch::kInt64, torch::kInt32}) {
    SCOPED_TRACE(c10::toString(dt));
    torch::Tensor t = torch::full({4097}, rank_ + 1, Cuda(dt));
    ASSERT_TRUE(comm_->AllReduce(t, ReduceOp::kSum, "dtype test").ok());
    EXPECT_TRUE(torch::equal(t, torch::full({4097}, n_ * (n_ + 1) / 2, Cuda(dt))));
  }
  torch::Tensor b = torch::full({7}, 2.0f * (rank_ + 1), Cuda(torch::kBFloat16));
  ASSERT_TRUE(comm_->AllReduce(b, ReduceOp::kAvg, "bf16 avg").ok());
  EXPECT_TRUE(torch::equal(b, torch::full({7}, n_ + 1.0f, Cuda(torch::kBFloat16))));
}

TEST_F(NcclCommunicatorGpuTest, ReduceScatterSumAndAvg) {
  // Rank r contributes ramp + r (ramp = arange(n_ * n) % 25), a block of n
  // (odd) per rank: the sum is n_ ramp + n_ (n_ - 1) / 2 (exact in every
  // dtype here for n_ <= 8), the avg ramp + (n_ - 1) / 2 (to a rounding of
  // ncclAvg's division).
  const int64_t n = 4097;
  for (torch::ScalarType dt : {torch::kFloat32, torch::kBFloat16, torch::kFloat64, torch::kInt32}) {
    SCOPED_TRACE(c10::toString(dt));
    const torch::Tensor ramp = torch::arange(n_ * n, Cuda(torch::kInt64)).remainder(25);
    const torch::Tensor input = (ramp + rank_).to(dt);
    torch::Tensor out = torch::full({n}, 7, Cuda(dt));
    ASSERT_TRUE(comm_->ReduceScatter(input, out, ReduceOp::kSum, "sum test").ok());
    torch::Tensor sum = (ramp * n_ + n_ * (n_ - 1) / 2).narrow(0, rank_ * n, n);
    EXPECT_TRUE(torch::equal(out, sum.to(dt)));
    if (dt == torch::kInt32) continue;
    ASSERT_TRUE(comm_->ReduceScatter(input, out, ReduceOp::kAvg, "avg test").ok());
    torch::Tensor avg = (ramp.to(torch::kFloat64) + (n_ - 1) / 2.0).narrow(0, rank_ * n, n);
    const double rtol = dt == torch::kBFloat16 ? 8e-3 : 1e-6;
    EXPECT_TRUE(torch::allclose(out.to(torch::kFloat64), avg, rtol, 0.0));
  }
}

TEST_F(NcclCommunicatorGpuTest, AllGather) {
  // Rank r's block of n is arange(n) % 100 + 10 r (exact in uint8 and
  // bfloat16 for n_ <= 8).
  const int64_t n = 4097;
  for (torch::ScalarType dt : {torch::kFloat32, torch::kBFloat16, torch::kInt64, torch::kUInt8}) {
    SCOPED_TRACE(c10::toString(dt));
    const torch::Tensor block = torch::arange(n, Cuda(torch::kInt64)).remainder(100);
    torch::Tensor out = torch::zeros({n_, n}, Cuda(dt));
    ASSERT_TRUE(comm_->AllGather((block + 10 * rank_).to(dt), out, "gather test").ok());
    torch::Tensor want =
        block.unsqueeze(0) + torch::arange(n_, Cuda(torch::kInt64)).unsqueeze(1) * 10;
    EXPECT_TRUE(torch::equal(out, want.to(dt)));
  }
}

TEST_F(NcclCommunicatorGpuTest, ReduceScatterAndAllGatherRejectBadTensorsNamingWhat) {
  torch::Tensor out = torch::zeros({4}, Cuda());
  auto w = comm_->ReduceScatterAsync(torch::zeros({n_ * 4 + 1}, Cuda()), out, ReduceOp::kSum,
                                     "long thing");
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument) << w.status();
  EXPECT_THAT(Message(w.status()),
              HasSubstr(absl::StrCat("comm: nccl: reducescatter of long thing: the input has ",
                                     n_ * 4 + 1, " elements, expected ", n_ * 4)));
  w = comm_->ReduceScatterAsync(torch::zeros({n_ * 4}), out, ReduceOp::kSum, "cpu thing");
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument) << w.status();
  EXPECT_THAT(Message(w.status()), HasSubstr("reducescatter of cpu thing (input)"));
  EXPECT_THAT(Message(w.status()), HasSubstr("CUDA tensor"));
  w = comm_->ReduceScatterAsync(torch::zeros({n_ * 4}, Cuda(torch::kFloat64)), out, ReduceOp::kSum,
                                "mixed thing");
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument) << w.status();
  EXPECT_THAT(Message(w.status()), HasSubstr("the input is Double but the output is Float"));

  torch::Tensor whole = torch::zeros({n_ * 4}, Cuda());
  w = comm_->AllGatherAsync(whole.narrow(0, 0, 4), whole, "overlapping thing");
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument) << w.status();
  EXPECT_THAT(Message(w.status()), HasSubstr("allgather of overlapping thing: the input and the "
                                             "output overlap"));
  torch::Tensor strided = torch::zeros({4, n_}, Cuda()).t();
  w = comm_->AllGatherAsync(out, strided, "strided thing");
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument) << w.status();
  EXPECT_THAT(Message(w.status()), HasSubstr("allgather of strided thing (output)"));
  EXPECT_THAT(Message(w.status()), HasSubstr("contiguous"));
  // Nothing above reached NCCL: the communicator still works.
  EXPECT_TRUE(comm_->AllGather(out, whole, "after errors").ok());
}

// Both run on the communicator's stream after the caller's work, and Wait
// orders the caller's stream after them.
TEST_F(NcclCommunicatorGpuTest, ReduceScatterThenAllGatherFollowTheCallersStream) {
  const int64_t n = 1 << 18;
  torch::Tensor input = torch::zeros({n_ * n}, Cuda());
  input.add_(rank_ + 1);  // Enqueued on the caller's stream just before.
  torch::Tensor shard = torch::empty({n}, Cuda());
  auto rs = comm_->ReduceScatterAsync(input, shard, ReduceOp::kAvg, "grad shard");
  ASSERT_TRUE(rs.ok()) << rs.status();
  ASSERT_TRUE((*rs)->Wait().ok());
  shard.mul_(2);  // The "update" of this rank's shard, on the caller's stream.
  torch::Tensor whole = torch::empty({n_ * n}, Cuda());
  auto ag = comm_->AllGatherAsync(shard, whole, "param shards");
  ASSERT_TRUE(ag.ok()) << ag.status();
  ASSERT_TRUE((*ag)->Wait().ok());
  EXPECT_TRUE(torch::allclose(whole, torch::full({n_ * n}, n_ + 1.0f, Cuda()), 1e-6, 0.0));
}

TEST_F(NcclCommunicatorGpuTest, BroadcastFromRootZero) {
  torch::Tensor expected =
      torch::arange(1000, Cuda(torch::kInt64)).remainder(251).to(torch::kUInt8);
  torch::Tensor t = rank_ == 0 ? expected.clone() : torch::zeros({1000}, Cuda(torch::kUInt8));
  ASSERT_TRUE(comm_->Broadcast(t, 0, "broadcast test").ok());
  EXPECT_TRUE(torch::equal(t, expected));
}

TEST_F(NcclCommunicatorGpuTest, BarrierAndSplit) {
  EXPECT_TRUE(comm_->Barrier("barrier test").ok());
  auto none = comm_->Split(-1, 0);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*none, nullptr);
  auto all = comm_->Split(0, -rank_);  // Reversed order.
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_NE(*all, nullptr);
  EXPECT_EQ((*all)->size(), n_);
  EXPECT_EQ((*all)->rank(), n_ - 1 - rank_);
  torch::Tensor t = torch::full({9}, rank_ + 1.0, Cuda(torch::kFloat64));
  ASSERT_TRUE((*all)->AllReduce(t, ReduceOp::kSum, "split sum").ok());
  EXPECT_TRUE(torch::equal(t, torch::full({9}, n_ * (n_ + 1) / 2.0, Cuda(torch::kFloat64))));
}

TEST_F(NcclCommunicatorGpuTest, BadTensorsAndPeersAreInvalidArgumentNamingWhat) {
  torch::Tensor cpu = torch::ones({4});
  auto w = comm_->AllReduceAsync(cpu, ReduceOp::kSum, "cpu thing");
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument) << w.status();
  EXPECT_THAT(Message(w.status()), HasSubstr("cpu thing"));
  EXPECT_THAT(Message(w.status()), HasSubstr("CUDA tensor"));

  torch::Tensor strided = torch::ones({4, 6}, Cuda()).t();
  w = comm_->BroadcastAsync(strided, 0, "strided thing");
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument) << w.status();
  EXPECT_THAT(Message(w.status()), HasSubstr("strided thing"));
  EXPECT_THAT(Message(w.status()), HasSubstr("contiguous"));

  torch::Tensor flags = torch::ones({4}, Cuda(torch::kBool));
  w = comm_->AllReduceAsync(flags, ReduceOp::kSum, "bool thing");
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument) << w.status();
  EXPECT_THAT(Message(w.status()), HasSubstr("bool thing"));
  EXPECT_THAT(Message(w.status()), HasSubstr("unsupported dtype Bool"));

  torch::Tensor t = torch::ones({4}, Cuda());
  w = comm_->BroadcastAsync(t, n_, "rootless thing");
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument) << w.status();
  EXPECT_THAT(Message(w.status()), HasSubstr("rootless thing"));
  w = comm_->SendAsync(t, rank_, 3, "self thing");
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument) << w.status();
  EXPECT_THAT(Message(w.status()), HasSubstr("send of self thing to rank"));
  EXPECT_THAT(Message(w.status()), HasSubstr("to self"));
  w = comm_->RecvAsync(t, n_, 3, "far thing");
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument) << w.status();
  EXPECT_THAT(Message(w.status()), HasSubstr("recv of far thing from rank"));

  EXPECT_EQ(comm_->Probe(0, 3).status().code(), absl::StatusCode::kUnimplemented);
  // Nothing above reached NCCL: the communicator still works.
  EXPECT_TRUE(comm_->AllReduce(t, ReduceOp::kSum, "after errors").ok());
}

// The op is ordered after the caller's stream without blocking the host, and
// Wait orders the caller's stream after it.
TEST_F(NcclCommunicatorGpuTest, AsyncOpWaitsForTheCallersStreamWithoutBlockingTheHost) {
  using Clock = std::chrono::steady_clock;
  torch::Tensor a = torch::randn({4096, 4096}, Cuda());
  torch::Tensor t = torch::zeros({1 << 20}, Cuda());
  torch::cuda::synchronize();
  const auto start = Clock::now();
  torch::Tensor busy = a;
  for (int i = 0; i < 20; ++i) busy = torch::tanh(busy.mm(a));  // Tens of ms on an H100.
  t.add_(busy.sum() * 0 + rank_ + 1);                           // Last on the caller's stream.
  const auto enqueue = Clock::now();
  auto w = comm_->AllReduceAsync(t, ReduceOp::kSum, "overlap test");
  const auto enqueued = Clock::now();
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_FALSE((*w)->Test()) << "the op did not wait for the caller's stream";
  ASSERT_TRUE((*w)->Wait().ok());
  const auto done = Clock::now();
  EXPECT_TRUE((*w)->Test());
  t.mul_(2);  // On the caller's stream, after the op (Wait ordered it).
  EXPECT_TRUE(torch::equal(t, torch::full({1 << 20}, n_ * (n_ + 1.0f), Cuda())));
  const double issue_s = std::chrono::duration<double>(enqueued - enqueue).count();
  const double total_s = std::chrono::duration<double>(done - start).count();
  EXPECT_LT(issue_s, total_s / 4) << "AllReduceAsync blocked the host";
  std::printf("[ info     ] busy caller stream %.1f ms, AllReduceAsync took %.3f ms\n",
              total_s * 1e3, issue_s * 1e3);
}

TEST_F(NcclCommunicatorGpuTest, WorkOutlivesTheCommunicator) {
  torch::Tensor t = torch::full({1000}, rank_ + 1.0f, Cuda());
  auto w = comm_->AllReduceAsync(t, ReduceOp::kSum, "orphan test");
  ASSERT_TRUE(w.ok()) << w.status();
  comm_.reset();
  ASSERT_TRUE((*w)->Wait().ok());
  EXPECT_TRUE(torch::equal(t, torch::full({1000}, n_ * (n_ + 1) / 2.0f, Cuda())));
}

// Last (it aborts a communicator): a caller stream stuck for 2 s (a host
// function) holds the op back past a 0.5 s timeout.
class NcclTimeoutGpuTest : public NcclCommunicatorGpuTest {
 protected:
  double Timeout() const override { return 0.5; }
};

TEST_F(NcclTimeoutGpuTest, WaitTimesOutWithDeadlineExceededAndAborts) {
  cudaStream_t caller = CallerStream();
  ASSERT_EQ(
      cudaLaunchHostFunc(
          caller, [](void*) { std::this_thread::sleep_for(std::chrono::seconds(2)); }, nullptr),
      cudaSuccess);
  torch::Tensor t = torch::ones({1000}, Cuda());
  auto w = comm_->AllReduceAsync(t, ReduceOp::kSum, "stuck thing");
  ASSERT_TRUE(w.ok()) << w.status();
  const absl::Status st = (*w)->Wait();
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
  EXPECT_THAT(Message(st), HasSubstr(absl::StrCat("rank ", rank_, ": timed out after 0.5 s")));
  EXPECT_THAT(Message(st), HasSubstr("allreduce of stuck thing"));
  EXPECT_EQ((*w)->Wait().code(), absl::StatusCode::kDeadlineExceeded);

  auto later = comm_->AllReduceAsync(t, ReduceOp::kSum, "later thing");
  EXPECT_EQ(later.status().code(), absl::StatusCode::kFailedPrecondition) << later.status();
  EXPECT_THAT(Message(later.status()), HasSubstr("aborted"));
  EXPECT_EQ(cudaStreamSynchronize(caller), cudaSuccess);
}

// mpirun -np 2 on a one-GPU machine: NCCL is expected to refuse two ranks on
// one device; either it does so promptly on both ranks, or it works.
TEST(NcclTwoRanksOneGpuTest, RefusedCleanlyOrWorks) {
  if (!torch::cuda::is_available() || CudaDeviceCount() != 1) GTEST_SKIP() << "needs one GPU";
  auto world = MpiWorld(kTimeoutS);
  ASSERT_TRUE(world.ok()) << world.status();
  if ((*world)->size() != 2) GTEST_SKIP() << "needs mpirun -np 2";
  const auto start = std::chrono::steady_clock::now();
  auto comm = MakeNcclCommunicator(**world, 0, 30.0);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ info     ] rank %d: two ranks on one GPU: %s after %.1f s\n", (*world)->rank(),
              comm.ok() ? "OK" : comm.status().ToString().c_str(), s);
  if (!comm.ok()) {
    EXPECT_EQ(comm.status().code(), absl::StatusCode::kFailedPrecondition) << comm.status();
    EXPECT_THAT(Message(comm.status()), HasSubstr("init"));
    return;
  }
  torch::Tensor t =
      torch::full({100}, (*world)->rank() + 1.0f, torch::TensorOptions().device(torch::kCUDA));
  ASSERT_TRUE((*comm)->AllReduce(t, ReduceOp::kSum, "two ranks").ok());
  EXPECT_TRUE(torch::equal(t, torch::full({100}, 3.0f, t.options())));
}

#endif  // DISTILL_WITH_NCCL

}  // namespace
}  // namespace distill::worker
