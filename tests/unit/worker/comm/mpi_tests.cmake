# mpirun runs of the comm tests (tests/CMakeLists.txt: distill_mpi_test).
# The tests work for any world size >= 2: two and three ranks (an odd size
# exercises uneven splits and rank-range formatting).
distill_mpi_test(comm_np2 2 "MpiCommunicatorTest.*:GradReducerTest.*")
distill_mpi_test(comm_np3 3 "MpiCommunicatorTest.*:GradReducerTest.*")
# Abort takes the whole job down: rank 1 aborts while rank 0 waits in a
# barrier. Passes when rank 1's message is printed; if rank 0 were left
# hanging, the 120 s limit fails it.
distill_mpi_test(comm_abort_np2 2 "MpiCommunicatorAbortTest.*")
set_tests_properties(mpi.comm_abort_np2 PROPERTIES
  ENVIRONMENT "GTEST_ALSO_RUN_DISABLED_TESTS=1"
  PASS_REGULAR_EXPRESSION "rank 1: deliberate abort \\(code 3\\)"
  TIMEOUT 120)
