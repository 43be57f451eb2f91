#include "tests/test_util/mpi_fixture.h"

#include <torch/torch.h>

#include <cstring>
#include <utility>

#include "tests/test_util/test_util.h"
#include "worker/comm/mpi_communicator.h"

namespace distill::testing {

std::unique_ptr<distill::worker::Communicator> MpiWorldOrFail(double timeout_s) {
  auto world = distill::worker::MpiWorld(timeout_s);
  EXPECT_TRUE(world.ok()) << world.status();
  return world.ok() ? std::move(world).value() : nullptr;
}

std::string SharedTempDir(distill::worker::Communicator& world, const std::string& prefix) {
  std::string dir = world.rank() == 0 ? MakeTempDir(prefix) : "";
  torch::Tensor len = torch::tensor({static_cast<int64_t>(dir.size())}, torch::kLong);
  EXPECT_TRUE(world.Broadcast(len, 0, "temp dir length").ok());
  torch::Tensor bytes = torch::zeros({len.item<int64_t>()}, torch::kUInt8);
  if (world.rank() == 0) std::memcpy(bytes.data_ptr(), dir.data(), dir.size());
  EXPECT_TRUE(world.Broadcast(bytes, 0, "temp dir").ok());
  return std::string(static_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(bytes.numel()));
}

void MpiTest::SetUp() {
  world_ = MpiWorldOrFail();
  ASSERT_NE(world_, nullptr);
  rank_ = world_->rank();
  n_ = world_->size();
  ASSERT_GE(n_, 2) << "run under mpirun -np 2 or more";
}

void MpiTest::TearDown() {
  if (world_ != nullptr) {
    EXPECT_TRUE(world_->Barrier("end of test").ok());
  }
}

}  // namespace distill::testing
