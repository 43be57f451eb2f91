# mpirun runs of the teacher cache capture (capture_test.cc; tests/CMakeLists.txt:
# distill_mpi_test): two ranks share the shards of one cache.
distill_mpi_test(capture_np2 2 "CaptureTest.*")
