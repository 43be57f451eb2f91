# Image of the trainer (distill-worker) on Debian 12, built with the same
# setup script as a developer machine: LibTorch is the pip torch wheel (CUDA 13)
# in /src/.venv, which the binary loads from there (keep it). Runs on CPU; on
# GPUs with the NVIDIA container toolkit (driver >= 580). (Not built in CI: CI
# has no Docker engine.)
#   docker build -f docker/worker.Dockerfile -t distill-worker .
#   docker run --rm -v $PWD/data:/data distill-worker train --spec /data/job.yaml
FROM debian:12
COPY scripts/setup.sh scripts/fetch_jinja.sh /src/scripts/
COPY requirements.txt requirements.lock /src/
RUN bash /src/scripts/setup.sh && rm -rf /var/lib/apt/lists/* /root/.cache/pip
COPY . /src
RUN cd /src && cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DDISTILL_BUILD_TESTS=OFF \
      -DDISTILL_BUILD_BENCH=OFF && cmake --build build --target distill-worker \
    && install -m 755 build/worker/distill-worker /usr/local/bin/ && rm -rf /src/build
ENTRYPOINT ["distill-worker"]
