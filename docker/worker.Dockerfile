# CPU image of the trainer (distill-worker) on Debian 12, built with the same
# setup script as a developer machine. (Not built in CI: CI has no Docker
# engine.) The CUDA worker image comes with the distributed-runtime issue.
#   docker build -f docker/worker.Dockerfile -t distill-worker .
#   docker run --rm -v $PWD/data:/data distill-worker train --spec /data/job.yaml
FROM debian:12
COPY scripts/setup.sh /src/scripts/setup.sh
RUN bash /src/scripts/setup.sh && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN cd /src && cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DDISTILL_BUILD_TESTS=OFF \
      -DDISTILL_BUILD_BENCH=OFF && cmake --build build --target distill-worker \
    && install -m 755 build/worker/distill-worker /usr/local/bin/ && rm -rf /src/build
ENTRYPOINT ["distill-worker"]
