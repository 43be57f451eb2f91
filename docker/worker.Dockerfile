# Image of the trainer (distill-worker) on Debian 12, built with the same
# setup script as a developer machine: LibTorch is the pip torch wheel (CUDA 13,
# which also runs on CPUs) in /src/.venv, which the binary loads from there
# (keep it), with NVIDIA's nvcc wheels to configure against it. Runs on CPU;
# docker/worker-cuda.Dockerfile is the GPU image.
# Besides the trainer it holds Open MPI (orted) and sshd (both from
# setup.sh), so a coordinator container can launch ranks here over ssh
# (deploy/compose/).
#   docker build -f docker/worker.Dockerfile -t distill-worker .
#   docker run --rm -v $PWD/data:/data distill-worker train --spec /data/job.yaml
# BASE: any Debian 12 image (scripts/docker_e2e.sh passes one made by
# debootstrap); JOBS: parallel compile jobs (the LibTorch code is heavy: about
# 3 GB of memory per job).
ARG BASE=debian:12
FROM ${BASE}
ARG JOBS=2
# Extra CA certificates for a network whose HTTPS goes through an
# intercepting proxy (docker/ca-certificates/*.crt, none by default; see its
# README): pip and curl reach PyPI through it.
COPY docker/ca-certificates/ /usr/local/share/ca-certificates/
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ca-certificates \
 && update-ca-certificates && rm -rf /var/lib/apt/lists/*
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
COPY scripts/setup.sh scripts/fetch_jinja.sh /src/scripts/
COPY requirements.txt requirements.lock /src/
RUN bash /src/scripts/setup.sh && rm -rf /var/lib/apt/lists/* /root/.cache/pip
# The CUDA wheel's CMake config (Caffe2) will not configure without a CUDA
# toolkit and its nvcc ("Your installed Caffe2 version uses CUDA but I cannot
# find the CUDA libraries"), and Debian 12 has none of CUDA 13. NVIDIA's nvcc
# and CCCL (nv/target, for cuda_fp16.h) wheels of the wheel's own release
# (13.0.88, 13.0.85) go next to the CUDA libraries
# that torch brought (site-packages/nvidia/cu13), which becomes /usr/local/cuda
# (what CMakeLists.txt looks for), with the unversioned .so names CMake finds.
RUN /src/.venv/bin/pip install --no-cache-dir --no-deps -q \
      nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
      nvidia-cuda-cccl==13.0.85 \
 && cu=$(echo /src/.venv/lib/python3*/site-packages/nvidia/cu13) \
 && for f in "$cu"/lib/lib*.so.*; do \
      b="${f%%.so.*}.so"; [ -e "$b" ] || ln -s "$(basename "$f")" "$b"; \
    done \
 && ln -sfn lib "$cu/lib64" && ln -sfn "$cu" /usr/local/cuda && /usr/local/cuda/bin/nvcc --version
# Only what the build reads (edits elsewhere keep the compile cached);
# .dockerignore keeps the host's .venv and build dirs out of any copy.
COPY CMakeLists.txt /src/
COPY cmake /src/cmake
COPY proto /src/proto
COPY common /src/common
COPY coordinator /src/coordinator
# Built into the coordinator (Note [One sbatch script]).
COPY deploy/slurm/distill.sbatch /src/deploy/slurm/distill.sbatch
COPY worker /src/worker
WORKDIR /src
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DDISTILL_BUILD_TESTS=OFF \
      -DDISTILL_BUILD_BENCH=OFF \
 && nice -n 10 cmake --build build --target distill-worker -j "${JOBS}" \
 && install -m 755 build/worker/distill-worker /usr/local/bin/ && rm -rf build \
 && mkdir -p /run/sshd
ENTRYPOINT ["distill-worker"]
