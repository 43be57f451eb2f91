# mpirun runs of the ZeRO optimizer tests (tests/CMakeLists.txt:
# distill_mpi_test): an even and an odd rank count (chunks cut unevenly).
distill_mpi_test(zero_np2 2 "ShardedAdamWMpiTest.*")
distill_mpi_test(zero_np3 3 "ShardedAdamWMpiTest.*")
