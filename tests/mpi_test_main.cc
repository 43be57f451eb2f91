// main() of mpi_tests: every rank of `mpirun -np N mpi_tests` runs the same
// GoogleTest cases against the world communicator. Only rank 0 prints the
// per-test lines; every rank prints its failures (prefixed by GoogleTest's
// file:line), and any failing rank makes mpirun exit non-zero.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>

#include "worker/comm/mpi_communicator.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (absl::Status st = distill::worker::InitMpi(&argc, &argv); !st.ok()) {
    std::fprintf(stderr, "mpi_tests: %s\n", st.ToString().c_str());
    return 1;
  }
  at::set_num_threads(1);
  const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
  if (rank != nullptr && std::string(rank) != "0") {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    // Failures still reach stderr through this minimal printer.
    struct FailurePrinter : ::testing::EmptyTestEventListener {
      void OnTestPartResult(const ::testing::TestPartResult& r) override {
        if (r.failed()) std::fprintf(stderr, "[rank %s] %s:%d: %s\n", std::getenv("OMPI_COMM_WORLD_RANK"),
                                     r.file_name() ? r.file_name() : "?", r.line_number(), r.summary());
      }
    };
    listeners.Append(new FailurePrinter);
  }
  return RUN_ALL_TESTS();
}
