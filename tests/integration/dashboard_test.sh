#!/usr/bin/env bash
# The Grafana dashboard (deploy/grafana/dashboards/distill.json) against a
# real Prometheus (Debian's) on loopback, scraping a real coordinator every
# second while real jobs run: a 3-rank distill job (2 students, a teacher
# rank) that evaluates, and a job that fails and is retried, so that every
# panel has something to show. Every panel query (variables substituted) must
# return data through Prometheus' HTTP API; the one panel this CPU machine
# cannot feed (GPU memory) must return none. The deploy/prometheus alert
# rules are loaded too: Prometheus must accept them.
source "$(dirname "$0")/lib.sh"
CTL="${DISTILL_CTL_BIN:?}"
SRC="${DISTILL_SOURCE_DIR:?}"
lib_init dashboard
on_exit stop_coordinator_and_jobs
PROMETHEUS=$(command -v prometheus) || die "prometheus not found (Debian's prometheus package: scripts/setup.sh)"
DASHBOARD="$SRC/deploy/grafana/dashboards/distill.json"
[ -f "$DASHBOARD" ] || die "no dashboard at $DASHBOARD"

write_tiny_config "$T/student.json"
write_tiny_config "$T/teacher.json"
write_text "$T/text.txt" 40
tokenize_bytes "$T/text.txt" "$T/train.bin" || die "tokenize failed"
"$W" init --config "$T/teacher.json" --out "$T/teacher" --seed 1 >/dev/null || die "init teacher"
# The failing job: its worker exits 3 (a crash at start), every attempt.
cat >"$T/worker.sh" <<SH
#!/bin/sh
grep -q '"name": "doomed"' "\$3" && exit 3
exec "$W" "\$@"
SH
chmod +x "$T/worker.sh"

read -r MPORT PPORT < <(free_ports 2)
start_coordinator_at 0 --slots 4 --metrics-listen "127.0.0.1:$MPORT" --worker-bin "$T/worker.sh" \
  --max-retries 1 --retry-backoff 0.2s || die "coordinator"
export DISTILL_COORDINATOR="127.0.0.1:$PORT"

rules=()
for f in "$SRC"/deploy/prometheus/*rules*.yml "$SRC"/deploy/prometheus/alerts*.yml; do
  [ -f "$f" ] && case "$f" in *_test.yml) ;; *) rules+=("$f") ;; esac
done
{
  echo "global: {scrape_interval: 1s, evaluation_interval: 1s}"
  echo "rule_files:"
  for f in "${rules[@]+"${rules[@]}"}"; do echo "  - $f"; done
  echo "scrape_configs:"
  echo "  - job_name: distill-coordinator"
  echo "    static_configs: [{targets: ['127.0.0.1:$MPORT']}]"
} >"$T/prometheus.yml"
"$PROMETHEUS" --config.file "$T/prometheus.yml" --storage.tsdb.path "$T/tsdb" \
  --web.listen-address "127.0.0.1:$PPORT" >"$T/prometheus.log" 2>&1 &
PROM_PID=$!
on_exit "kill -9 $PROM_PID 2>/dev/null"
PROM="http://127.0.0.1:$PPORT"
wait_log "$T/prometheus.log" "Server is ready to receive web requests" 30 \
  || die "prometheus did not start: $(tail -5 "$T/prometheus.log")"
[ ${#rules[@]} -gt 0 ] && ok || fail "no alert rules under deploy/prometheus"
curl -sf "$PROM/api/v1/rules" | grep -q '"type":"alerting"' && ok || fail "Prometheus loaded no alerting rule"

cat >"$T/kd.yaml" <<YAML
type: distill
name: kd-dashboard
teacher: {model: teacher, ranks: 1}
student: {init: student.json, ranks: 2}
distill: {temperature: 2, alpha: 0.5, logits: topk, top_k: 8}
data: {train: train.bin, eval: [train.bin], seq_len: 16}
train: {steps: 100000, micro_batch: 2, lr: 0.01, log_every: 1, eval_every: 20, eval_batches: 1, threads: 1}
runtime: {peak_tflops: 0.001}
checkpoint: {every: 0}
output: kd_out
YAML
cat >"$T/doomed.yaml" <<YAML
type: finetune
name: doomed
init: student.json
data: {train: train.bin, seq_len: 16}
train: {steps: 5, micro_batch: 2, threads: 1}
output: doomed_out
YAML
J=$("$CTL" submit "$T/kd.yaml" | head -n 1)
D=$("$CTL" submit "$T/doomed.yaml" | head -n 1)
[ -n "$J" ] && [ -n "$D" ] || die "submit failed"

# promql EXPR: the number of series the instant query returns (-1 on error).
promql() {
  curl -sf "$PROM/api/v1/query" --data-urlencode "query=$1" \
    | $PY -c 'import json,sys; d=json.load(sys.stdin); print(len(d["data"]["result"]) if d["status"]=="success" else -1)' \
    2>/dev/null || echo -1
}
# Enough history for rate() over [1m]: 15 scrapes of the running job, and
# the doomed job's failure recorded.
ready=0
for _ in $(seq 1 120); do
  if [ "$(promql "count_over_time(distill_steps_total{job_id=\"$J\",rank=\"1\"}[1m]) >= 15")" = 1 ] &&
     [ "$(promql "distill_eval_kl{job_id=\"$J\"}")" = 1 ] &&
     [ "$(promql 'distill_job_failures_total')" -ge 1 ]; then
    ready=1
    break
  fi
  sleep 1
done
[ "$ready" = 1 ] && ok || fail "not enough history: steps $(promql "distill_steps_total{job_id=\"$J\"}"), eval $(promql "distill_eval_kl{job_id=\"$J\"}"), failures $(promql distill_job_failures_total); $("$CTL" get "$D" | grep -E 'state|failure')"

"$PY" "$SRC/tests/integration/dashboard_queries.py" "$DASHBOARD" "$PROM" "$J" \
  --empty "GPU memory (peak)=no CUDA device on this machine" >"$T/queries.txt" 2>&1 \
  && ok || fail "dashboard queries: $(grep -v '^ok ' "$T/queries.txt")"
cat "$T/queries.txt"

"$CTL" cancel "$J" >/dev/null || fail "cancel"
finish dashboard
