#!/usr/bin/env bash
# End to end in Docker, with no registry: builds the coordinator, CPU worker
# and Prometheus images on a Debian 12 base made by debootstrap (docker
# import), runs deploy/compose/compose.yml without Grafana (its image needs a
# registry), submits a tiny job with distillctl inside the coordinator
# container, waits for it to succeed, then asks Prometheus' HTTP API for
# distill_job_submissions_total and the job's distill_tokens_total.
#   sudo scripts/docker_e2e.sh            (root: dockerd, debootstrap)
# Env: KEEP=1 leaves the stack up; DISTILL_BASE_IMAGE names a base to use
# instead of debootstrapping one; DISTILL_EXTRA_CA_DIR, CA certificates to
# trust in the worker image (behind an HTTPS-intercepting proxy). Building the worker image compiles the
# LibTorch code and downloads the torch wheel: see docs/deploy.md for times.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
BASE=${DISTILL_BASE_IMAGE:-distill-base:bookworm}
PROJECT=distill-e2e
log() { echo "docker_e2e: $*" >&2; }
die() { log "FAIL: $*"; exit 1; }
t0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - t0 ))s"; }

# 1. The engine: start dockerd when none answers, then prove a container runs.
command -v docker >/dev/null || die "no docker client (Debian: apt-get install docker.io)"
if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || die "no Docker engine (Debian: apt-get install docker.io)"
  log "starting dockerd"
  (dockerd >/tmp/docker_e2e.dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || die "dockerd did not start: $(tail -5 /tmp/docker_e2e.dockerd.log)"
fi
if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null; then COMPOSE=(docker-compose)
else die "neither 'docker compose' nor docker-compose (Debian: apt-get install docker-compose)"; fi

# 2. The base image: debootstrap bookworm, imported.
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || die "no debootstrap (apt-get install debootstrap)"
  root=$(mktemp -d)
  log "debootstrap bookworm into $root"
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null \
    || die "debootstrap failed"
  tar -C "$root" -c . | docker import - "$BASE" >/dev/null
  rm -rf "$root"
fi
out=$(docker run --rm "$BASE" echo container-ok 2>&1) || true
[ "$out" = container-ok ] || die "this engine cannot run a container: $out"
log "engine and base image ok ($(elapsed))"

# 3. Images (the worker's compile dominates; docker's cache makes reruns quick).
# DISTILL_EXTRA_CA_DIR: CA certificates (*.crt) of an HTTPS-intercepting proxy
# for the worker's PyPI downloads (docker/ca-certificates/README.md).
export DISTILL_BASE_IMAGE=$BASE DISTILL_TAG=e2e
extra_ca=()
if [ -n "${DISTILL_EXTRA_CA_DIR:-}" ]; then
  for c in "$DISTILL_EXTRA_CA_DIR"/*.crt; do
    [ -f "$c" ] || continue
    cp "$c" docker/ca-certificates/ && extra_ca+=("docker/ca-certificates/$(basename "$c")")
  done
  log "trusting ${#extra_ca[@]} extra CA certificate(s) from $DISTILL_EXTRA_CA_DIR in the worker image"
fi
remove_extra_ca() { [ ${#extra_ca[@]} = 0 ] || rm -f "${extra_ca[@]}"; }
trap remove_extra_ca EXIT
for img in coordinator worker prometheus; do
  s=$(date +%s)
  nice docker build -q -f "docker/$img.Dockerfile" --build-arg "BASE=$BASE" \
    -t "distill-$img:e2e" . >"/tmp/docker_e2e.$img.log" 2>&1 \
    || die "building $img: $(tail -20 "/tmp/docker_e2e.$img.log")"
  log "image distill-$img:e2e built in $(( $(date +%s) - s ))s"
done
remove_extra_ca

# 4. The stack, without Grafana, on free host ports.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export DISTILL_GRPC_PORT=$(free_port) DISTILL_METRICS_PORT=$(free_port) DISTILL_PROMETHEUS_PORT=$(free_port)
dc() { "${COMPOSE[@]}" -p "$PROJECT" -f "$SRC/deploy/compose/compose.yml" "$@"; }
cleanup() {
  rc=$?
  if [ $rc != 0 ]; then
    dc logs --no-color --tail 40 >&2 || true
  fi
  if [ "${KEEP:-0}" != 1 ]; then dc down -v >/dev/null 2>&1 || true; fi
  log "done in $(elapsed), exit $rc"
}
trap cleanup EXIT
dc up -d --no-build coordinator worker prometheus
PROM=http://127.0.0.1:$DISTILL_PROMETHEUS_PORT
ctl() { dc exec -T coordinator distillctl --coordinator 127.0.0.1:50051 "$@"; }
for _ in $(seq 1 60); do ctl list >/dev/null 2>&1 && break; sleep 1; done
ctl list >/dev/null || die "the coordinator does not answer"

# 5. A tiny job (as tests/integration/coordinator_test.sh): byte tokens of a
# pangram text, a 2-layer model, 2 ranks on the worker container; 2000 steps
# so that it runs across several of Prometheus' 5 s scrapes.
dc exec -T worker sh -c '
  set -e
  mkdir -p /data/e2e
  cat >/data/e2e/config.json <<JSON
{"architectures": ["LlamaForCausalLM"], "vocab_size": 256, "hidden_size": 32, "intermediate_size": 64,
 "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
 "tie_word_embeddings": true}
JSON
  for i in $(seq 1 200); do
    echo "The quick brown fox $i jumps over the lazy dog; pack my box with five dozen liquor jugs."
  done >/data/e2e/text.txt
  distill-worker tokenize --tokenizer bytes --input /data/e2e/text.txt --output /data/e2e/train.bin >/dev/null
  cat >/data/e2e/job.json <<JSON
{"type": "FINETUNE", "name": "e2e", "init": "/data/e2e/config.json", "ranks": 2,
 "data": {"train": ["/data/e2e/train.bin"], "seq_len": 16},
 "train": {"steps": 2000, "micro_batch": 2, "lr": 0.01, "log_every": 1, "threads": 1},
 "output": "/data/e2e/out"}
JSON' || die "writing the job's data"
ID=$(ctl submit /data/e2e/job.json) || die "submit"
log "submitted job $ID ($(elapsed))"

# 6. While it runs, its worker series reach Prometheus through the coordinator.
query() {  # query PROMQL: the number of series in the result
  curl -fsS --get "$PROM/api/v1/query" --data-urlencode "query=$1" |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]["result"]))'
}
tokens=0
for _ in $(seq 1 120); do
  tokens=$(query "distill_tokens_total{job_id=\"$ID\"}" 2>/dev/null || echo 0)
  state=$(ctl get "$ID" 2>/dev/null | tr '\n' ' ' || true)
  [ "$tokens" -gt 0 ] && break
  case "$state" in *SUCCEEDED*|*FAILED*|*CANCELLED*) break ;; esac
  sleep 2
done
ctl watch "$ID" >/tmp/docker_e2e.watch.log 2>&1 \
  || die "job $ID did not succeed: $(tail -5 /tmp/docker_e2e.watch.log); $(ctl logs "$ID" 2>&1 | tail -20)"
log "job $ID succeeded ($(elapsed)): $(ctl get "$ID" | grep -E '^ended:' || true)"
for _ in $(seq 1 20); do
  [ "$(query 'distill_job_submissions_total' 2>/dev/null || echo 0)" -gt 0 ] && break
  sleep 2
done
[ "$(query 'distill_job_submissions_total > 0')" -gt 0 ] || die "Prometheus has no distill_job_submissions_total > 0"
log "Prometheus: distill_job_submissions_total > 0"
# Every dashboard query, with $job = this job and $rank = all, must evaluate
# (an empty result is fine here; an error is not).
python3 - "$PROM" "$ID" "$SRC/deploy/grafana/dashboards/distill.json" <<'PY' || die "dashboard queries"
import json, sys, urllib.parse, urllib.request
prom, job, path = sys.argv[1:]
n = with_data = 0
for p in json.load(open(path))["panels"]:
    for t in p.get("targets", []):
        e = t["expr"].replace("$job", job).replace("$rank", ".*")
        r = json.load(urllib.request.urlopen(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": e})))
        if r.get("status") != "success":
            sys.exit(f"{p['title']}: {e}: {r}")
        n += 1
        with_data += bool(r["data"]["result"])
print(f"docker_e2e: Prometheus evaluates all {n} dashboard queries ({with_data} with data now)", file=sys.stderr)
PY
# The worker series leave /metrics when the job ends; the scrape while it ran
# stays in Prometheus (last_over_time over the job's life).
seen=$(query "last_over_time(distill_tokens_total{job_id=\"$ID\"}[30m]) > 0")
[ "$seen" -gt 0 ] || die "Prometheus never saw distill_tokens_total{job_id=\"$ID\"} (docs/metrics.md's worker series)"
log "Prometheus: distill_tokens_total{job_id=\"$ID\"} from $seen rank(s)"
echo "docker_e2e: PASS in $(elapsed)"
