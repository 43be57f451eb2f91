# The loopback communicator is one rank: one mpirun rank runs its tests
# (tests/CMakeLists.txt: distill_mpi_test).
distill_mpi_test(loopback_np1 1 "LoopbackCommunicator*")
