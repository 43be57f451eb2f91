# Image of the trainer for NVIDIA GPUs: distill-worker on NVIDIA's CUDA 13.0
# development image (Ubuntu 24.04; nvcc is what Caffe2's CMake config needs
# to configure), built by scripts/setup.sh like a developer machine, with the
# pip torch 2.11.0 wheel (CUDA 13.0, its own cuDNN and NCCL 2.28) as LibTorch
# in /src/.venv (keep it: the binary loads LibTorch from there). Needs the
# NVIDIA container toolkit and a driver >= 580 on the host. Open MPI (orted)
# and sshd come with setup.sh, for mpirun over ssh (deploy/k8s/mpijob.yaml).
# Not built by scripts/docker_e2e.sh (no registry for the base image there).
#   docker build -f docker/worker-cuda.Dockerfile -t distill-worker-cuda .
#   docker run --rm --gpus all -v $PWD/data:/data distill-worker-cuda train --spec /data/job.yaml
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-devel-ubuntu24.04
FROM ${CUDA_IMAGE}
ARG JOBS=4
ENV DEBIAN_FRONTEND=noninteractive
# Extra CA certificates (docker/ca-certificates/README.md), as worker.Dockerfile.
COPY docker/ca-certificates/ /usr/local/share/ca-certificates/
RUN apt-get update -q && apt-get install -y -q --no-install-recommends ca-certificates \
 && update-ca-certificates && rm -rf /var/lib/apt/lists/*
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
COPY scripts/setup.sh scripts/fetch_jinja.sh /src/scripts/
COPY requirements.txt requirements.lock /src/
RUN bash /src/scripts/setup.sh && rm -rf /var/lib/apt/lists/* /root/.cache/pip
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
 && cmake --build build --target distill-worker -j "${JOBS}" \
 && install -m 755 build/worker/distill-worker /usr/local/bin/ && rm -rf build \
 && mkdir -p /run/sshd \
 && distill-worker --version
ENTRYPOINT ["distill-worker"]
