# The NCCL backend's tests (nccl_communicator_test.cc) on one rank. Without a
# GPU only the build and refusal checks run (the GPU tests skip); on the GPU
# machine scripts/gpu_check.sh runs the same filter, plus NcclTwoRanks* on
# two ranks sharing its one GPU.
distill_mpi_test(nccl_np1 1 "Nccl*")
