# Image of the trainer (distill-worker) on Debian 12, built with the same
# setup script as a developer machine: LibTorch is the pip torch wheel (CUDA 13,
# which also runs on CPUs) in /src/.venv, which the binary loads from there
# (keep it). Runs on CPU; docker/worker-cuda.Dockerfile is the GPU image.
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
COPY scripts/setup.sh scripts/fetch_jinja.sh /src/scripts/
COPY requirements.txt requirements.lock /src/
RUN bash /src/scripts/setup.sh && rm -rf /var/lib/apt/lists/* /root/.cache/pip
# .dockerignore keeps the host's .venv, build dirs and data out of this copy
# (without it the host's .venv replaced the one setup.sh made above).
COPY . /src
WORKDIR /src
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DDISTILL_BUILD_TESTS=OFF \
      -DDISTILL_BUILD_BENCH=OFF \
 && nice -n 10 cmake --build build --target distill-worker -j "${JOBS}" \
 && install -m 755 build/worker/distill-worker /usr/local/bin/ && rm -rf build \
 && mkdir -p /run/sshd
ENTRYPOINT ["distill-worker"]
