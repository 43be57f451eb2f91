# Image of the control plane: distill-coordinator and distillctl, built
# WITHOUT LibTorch (-DDISTILL_BUILD_WORKER=OFF: proto, common, coordinator,
# ctl only). It launches jobs with mpirun: on worker hosts named in
# --hosts-file over ssh (docker/worker.Dockerfile runs sshd), so it carries
# Open MPI's mpirun and an ssh client, not the trainer.
#   docker build -f docker/coordinator.Dockerfile -t distill-coordinator .
#   docker run --rm -p 50051:50051 -p 9464:9464 -v distill-state:/var/lib/distill distill-coordinator
# BASE: any Debian 12 image (scripts/docker_e2e.sh passes one made by debootstrap).
ARG BASE=debian:12

FROM ${BASE} AS build
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      build-essential cmake ninja-build pkg-config \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      libabsl-dev prometheus-cpp-dev libsqlite3-dev libyaml-cpp-dev nlohmann-json3-dev \
      libpcre2-dev libboost-math-dev \
 && rm -rf /var/lib/apt/lists/*
# Only what the build reads, so that edits elsewhere (docs, deploy, tests)
# keep the compile cached.
COPY CMakeLists.txt /src/
COPY cmake /src/cmake
COPY proto /src/proto
COPY common /src/common
COPY coordinator /src/coordinator
# Built into the coordinator (Note [One sbatch script]).
COPY deploy/slurm/distill.sbatch /src/deploy/slurm/distill.sbatch
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DDISTILL_BUILD_WORKER=OFF \
      -DDISTILL_BUILD_TESTS=OFF -DDISTILL_BUILD_BENCH=OFF \
 && cmake --build /build --target distill-coordinator distillctl \
 && install -m 755 /build/coordinator/distill-coordinator /build/coordinator/ctl/distillctl /usr/local/bin/

FROM ${BASE}
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libabsl20220623 libprometheus-cpp-core1.0 \
      libprometheus-cpp-pull1.0 libsqlite3-0 libyaml-cpp0.7 libpcre2-8-0 \
      openmpi-bin openssh-client gnuplot-nox ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && printf 'Host *\n  StrictHostKeyChecking accept-new\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n' \
      > /etc/ssh/ssh_config.d/distill.conf
COPY --from=build /usr/local/bin/distill-coordinator /usr/local/bin/distillctl /usr/local/bin/
VOLUME /var/lib/distill
EXPOSE 50051 9464
ENTRYPOINT ["distill-coordinator"]
CMD ["--listen", "0.0.0.0:50051", "--metrics-listen", "0.0.0.0:9464", "--state-dir", "/var/lib/distill"]
