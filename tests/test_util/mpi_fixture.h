// The fixture of the tests that run on real MPI ranks (mpi_tests under
// `mpirun -np N`, tests/unit/worker/{comm,runtime}/*.cmake): every rank runs
// every test against the world communicator. Worker tests only.
#ifndef DISTILL_TESTS_TEST_UTIL_MPI_FIXTURE_H_
#define DISTILL_TESTS_TEST_UTIL_MPI_FIXTURE_H_

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "worker/comm/communicator.h"

namespace distill::testing {

// Every wait of the world communicator times out after this long.
constexpr double kMpiTimeoutS = 60.0;

// The world communicator (timeout `timeout_s`); fails the test and returns
// null when MPI is not initialised.
std::unique_ptr<distill::worker::Communicator> MpiWorldOrFail(double timeout_s = kMpiTimeoutS);

// A temp dir made on rank 0 of `world`, its name broadcast to every rank.
std::string SharedTempDir(distill::worker::Communicator& world, const std::string& prefix);

// world_, rank_, n_ of the world communicator (at least two ranks). Every
// test ends with a barrier, so that a failing test does not bleed into the
// next one.
class MpiTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  std::unique_ptr<distill::worker::Communicator> world_;
  int rank_ = 0;
  int n_ = 0;
};

}  // namespace distill::testing

#endif  // DISTILL_TESTS_TEST_UTIL_MPI_FIXTURE_H_
