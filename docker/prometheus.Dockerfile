# Prometheus from Debian 12's package, for deploy/compose/ where no registry
# is at hand (scripts/docker_e2e.sh builds it on a debootstrap base). With a
# registry, prom/prometheus does the same job. Config and rules are mounted
# at /etc/prometheus/ (deploy/compose/compose.yml).
ARG BASE=debian:12
FROM ${BASE}
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/*
# The package's system user (its uid is picked at install time, so by name).
# hadolint ignore=DL3066
USER prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/var/lib/prometheus/metrics2", \
     "--web.listen-address=0.0.0.0:9090"]
