#!/usr/bin/env bash
# The metrics of docs/metrics.md, scraped for real over HTTP during real jobs
# and linted by `promtool check metrics`:
#   1. workers started by hand (mpirun, no coordinator) with --metrics-listen:
#      each rank serves its own series on PORT + local rank, labelled job_id
#      and rank, never job;
#   2. the coordinator during a 3-rank distill job (2 students, 1 teacher
#      rank): every student rank's counters, the teacher rank's heartbeat,
#      job info, build info, RPC and store timings; the job's series go when
#      it ends and the finished counter counts it.
source "$(dirname "$0")/lib.sh"
CTL="${DISTILL_CTL_BIN:?}"
lib_init metrics
on_exit stop_coordinator_and_jobs
command -v promtool >/dev/null || die "promtool not found (Debian's prometheus package: scripts/setup.sh)"

write_tiny_config "$T/student.json"
write_tiny_config "$T/teacher.json"
write_text "$T/text.txt" 40
tokenize_bytes "$T/text.txt" "$T/train.bin" || die "tokenize failed"
"$W" init --config "$T/teacher.json" --out "$T/teacher" --seed 1 >/dev/null || die "init teacher"

# scrape URL OUT: the exposition into OUT (non-zero when unreachable).
scrape() { curl -sf --max-time 5 "$1" -o "$2"; }
# value FILE SERIES: the sample value of SERIES (its name and labels exactly
# as exposed), or nothing.
value() { awk -v s="$2" '$1 == s { print $2; exit }' "$1"; }
# positive FILE SERIES: the series exists with a value > 0.
positive() { awk -v v="$(value "$1" "$2")" 'BEGIN { exit !(v != "" && v + 0 > 0) }'; }
# wait_series URL OUT SECONDS SERIES...: until every SERIES is positive in a scrape.
wait_series() {
  local url=$1 out=$2 secs=$3 s all
  shift 3
  for _ in $(seq 1 $((secs * 5))); do
    if scrape "$url" "$out"; then
      all=1
      MISSING=
      for s in "$@"; do positive "$out" "$s" || { all=0; MISSING="$MISSING $s"; }; done
      [ "$all" = 1 ] && return 0
    fi
    sleep 0.2
  done
  return 1
}
lint() {  # lint NAME FILE: promtool's linter passes on the exposition
  promtool check metrics <"$2" >"$T/lint.txt" 2>&1 && ok || fail "$1: promtool check metrics: $(head -5 "$T/lint.txt")"
}

# --- 1. workers by hand -------------------------------------------------------
cat >"$T/hand.yaml" <<YAML
type: finetune
name: by-hand
init: student.json
ranks: 2
data: {train: train.bin, seq_len: 16}
train: {steps: 100000, micro_batch: 2, lr: 0.01, log_every: 1, threads: 1}
runtime: {peak_tflops: 0.001}
checkpoint: {every: 0}
output: hand_out
YAML
read -r MP < <(free_ports 1)
"${MPIRUN[@]}" -np 2 "$W" train --spec "$T/hand.yaml" --metrics-listen "127.0.0.1:$MP" --job-id hand-1 \
  >"$T/hand.log" 2>&1 &
HAND=$!
on_exit "kill -9 $HAND 2>/dev/null; pkill -9 -f 'hand.yaml' 2>/dev/null"
for r in 0 1; do
  url="http://127.0.0.1:$((MP + r))/metrics"
  if wait_series "$url" "$T/hand$r.txt" 60 "distill_steps_total{job_id=\"hand-1\",rank=\"$r\"}" \
      "distill_tokens_total{job_id=\"hand-1\",rank=\"$r\"}" \
      "distill_step_phase_seconds_total{job_id=\"hand-1\",phase=\"compute\",rank=\"$r\"}" \
      "distill_step_duration_seconds_count{job_id=\"hand-1\",rank=\"$r\"}" \
      "distill_host_memory_peak_bytes{job_id=\"hand-1\",rank=\"$r\"}" \
      "distill_mfu_ratio{job_id=\"hand-1\",rank=\"$r\"}"; then
    ok
  else
    fail "rank $r's /metrics on port $((MP + r)) lacks$MISSING; $(tail -3 "$T/hand.log")"
  fi
  lint "rank $r" "$T/hand$r.txt"
  ! grep -q '[{,]job="' "$T/hand$r.txt" && ok || fail "rank $r: a 'job' label: $(grep -m1 'job="' "$T/hand$r.txt")"
done
# Job gauges come from rank 0 only (its values are the students' means).
positive "$T/hand0.txt" 'distill_learning_rate{job_id="hand-1"}' && ok || fail "rank 0 lacks the learning rate"
grep -q '^distill_learning_rate{' "$T/hand1.txt" && fail "rank 1 exports the job's learning rate" || ok
# Counters grow between scrapes; the histogram's buckets add up to its count.
s1=$(value "$T/hand0.txt" 'distill_steps_total{job_id="hand-1",rank="0"}')
sleep 1
scrape "http://127.0.0.1:$MP/metrics" "$T/hand0b.txt" || fail "second scrape"
s2=$(value "$T/hand0b.txt" 'distill_steps_total{job_id="hand-1",rank="0"}')
awk -v a="$s1" -v b="$s2" 'BEGIN { exit !(b > a) }' && ok || fail "steps did not grow: $s1 then $s2"
inf=$(value "$T/hand0b.txt" 'distill_step_duration_seconds_bucket{job_id="hand-1",rank="0",le="+Inf"}')
cnt=$(value "$T/hand0b.txt" 'distill_step_duration_seconds_count{job_id="hand-1",rank="0"}')
[ -n "$inf" ] && [ "$inf" = "$cnt" ] && ok || fail "histogram: +Inf bucket $inf, count $cnt"
# A port in use (rank 0's, still running) is an error naming the address.
sed 's/^ranks: 2/ranks: 1/' "$T/hand.yaml" >"$T/one.yaml"
expect_error "busy --metrics-listen" "--metrics-listen: cannot serve /metrics on 127.0.0.1:$MP" \
  "$W" train --spec "$T/one.yaml" --metrics-listen "127.0.0.1:$MP"
kill -TERM $HAND 2>/dev/null
wait $HAND
# A port that cannot be served is an error naming the flag.
expect_error "bad --metrics-listen" "--metrics-listen: not HOST:PORT" \
  "$W" train --spec "$T/one.yaml" --metrics-listen nonsense


# --- 2. the coordinator -------------------------------------------------------
read -r MPORT < <(free_ports 1)
start_coordinator_at 0 --slots 3 --metrics-listen "127.0.0.1:$MPORT" || die "coordinator"
export DISTILL_COORDINATOR="127.0.0.1:$PORT"
cat >"$T/kd.yaml" <<YAML
type: distill
name: kd-metrics
teacher: {model: teacher, ranks: 1}
student: {init: student.json, ranks: 2}
distill: {temperature: 2, alpha: 0.5, logits: topk, top_k: 8}
data: {train: train.bin, eval: [train.bin], seq_len: 16}
train: {steps: 100000, micro_batch: 2, lr: 0.01, log_every: 1, eval_every: 5, eval_batches: 1, threads: 1}
checkpoint: {every: 0}
output: kd_out
YAML
J=$("$CTL" submit "$T/kd.yaml" | head -n 1)
[ -n "$J" ] || die "submit: no job id"
M="http://127.0.0.1:$MPORT/metrics"
if wait_series "$M" "$T/coord.txt" 90 \
    "distill_steps_total{job_id=\"$J\",rank=\"0\"}" "distill_steps_total{job_id=\"$J\",rank=\"1\"}" \
    "distill_tokens_total{job_id=\"$J\",rank=\"1\"}" \
    "distill_teacher_stream_bytes_total{job_id=\"$J\",rank=\"0\"}" \
    "distill_step_phase_seconds_total{job_id=\"$J\",phase=\"teacher_wait\",rank=\"0\"}" \
    "distill_loss{component=\"kd\",job_id=\"$J\"}" "distill_eval_loss{job_id=\"$J\"}" \
    "distill_eval_kl{job_id=\"$J\"}" "distill_job_progress_ratio{job_id=\"$J\"}" \
    "distill_rank_last_report_timestamp_seconds{job_id=\"$J\",rank=\"2\"}" \
    "distill_job_info{job_id=\"$J\",method=\"full\",name=\"kd-metrics\",type=\"distill\"}" \
    'distill_rpc_duration_seconds_count{method="SubmitJob"}' 'distill_store_commit_duration_seconds_count' \
    'distill_jobs_started_total' 'distill_jobs{state="running"}'; then
  ok
else
  fail "coordinator /metrics lacks$MISSING; $("$CTL" get "$J" | head -5)"
fi
lint coordinator "$T/coord.txt"
grep -q '^distill_build_info{.*version=' "$T/coord.txt" && ok || fail "no distill_build_info"
! grep -q '[{,]job="' "$T/coord.txt" && ok || fail "coordinator: a 'job' label"
# A teacher rank has no training series (it heartbeats only).
grep -q "distill_steps_total{job_id=\"$J\",rank=\"2\"}" "$T/coord.txt" && fail "teacher rank 2 has steps" || ok
"$CTL" cancel "$J" >/dev/null || fail "cancel"
for _ in $(seq 1 150); do
  scrape "$M" "$T/after.txt" && positive "$T/after.txt" 'distill_jobs_finished_total{state="cancelled"}' && break
  sleep 0.2
done
positive "$T/after.txt" 'distill_jobs_finished_total{state="cancelled"}' && ok || fail "cancelled job not counted"
grep -q "job_id=\"$J\"" "$T/after.txt" && fail "the ended job's series remain: $(grep -m2 "$J" "$T/after.txt")" || ok
lint "coordinator after" "$T/after.txt"

finish metrics
