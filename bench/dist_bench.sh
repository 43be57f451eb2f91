#!/usr/bin/env bash
# The distributed runtime's step-time split, side by side in one run:
#  (1) distill layouts: colocated (1 rank), 1 student + 2 teacher ranks, and
#      2 students + 2 teacher ranks, each with the same per-student micro-batch;
#      per step: wall time, and its split into student compute, waiting for the
#      teacher (colocated: the teacher forward), all-reduce, and the stream's
#      bytes per token (dense / top-k 64 / hidden);
#  (2) all-reduce time against the bucket size: a 2-rank full fine-tune, per
#      step the all-reduce time not hidden behind backward.
# Numbers are medians over each job's progress records after the first. On a
# 2-core VM 3-4 ranks oversubscribe the cores, so the split is what to read,
# not absolute speed (docs/benchmarks.md).
#
#   bench/dist_bench.sh    (after scripts/build.sh; data from scripts/prepare_brown.sh)
#   WORKER=... DATA=... STEPS=20 DEVICE=cuda PRECISION=bf16 bench/dist_bench.sh   (GPU machine)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
W=${WORKER:-$ROOT/build/worker/distill-worker}
DATA=${DATA:-$ROOT/data/brown/train.bin}
STEPS=${STEPS:-16}
SEQ=${SEQ:-128}
BATCH=${BATCH:-4}
DEVICE=${DEVICE:-cpu}
PRECISION=${PRECISION:-fp32}
# teacher / student widths and depths (VOCAB 256 = byte data)
TEACHER=${TEACHER:-"384 1024 8 6 2"}
STUDENT=${STUDENT:-"192 512 4 4 2"}
BUCKETS=${BUCKETS:-"0.25 1 4 25"}
LAYOUTS=${LAYOUTS:-"1+0 1+2 2+2"}
[ -x "$W" ] || { echo "no distill-worker at $W (set WORKER=...)" >&2; exit 1; }
[ -f "$DATA" ] || { echo "no token shard $DATA (run scripts/prepare_brown.sh or set DATA=...)" >&2; exit 1; }
OUT=${BENCH_DIR:-$(mktemp -d)}
mkdir -p "$OUT"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --bind-to none -x OMP_WAIT_POLICY=PASSIVE)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), device $DEVICE" >&2
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

config() {  # HIDDEN INTER LAYERS HEADS KV
  cat <<JSON
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 256, "hidden_size": $1,
 "intermediate_size": $2, "num_hidden_layers": $3, "num_attention_heads": $4, "num_key_value_heads": $5,
 "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false,
 "hidden_act": "silu", "initializer_range": 0.02, "torch_dtype": "float32"}
JSON
}
config $TEACHER >"$OUT/teacher.json"
config $STUDENT >"$OUT/student.json"
"$W" init --config "$OUT/teacher.json" --out "$OUT/teacher" --seed 1 >/dev/null
"$W" init --config "$OUT/student.json" --out "$OUT/student" --seed 2 >/dev/null

# run NAME RANKS SPEC_TEXT: runs the job (mpirun when RANKS > 1).
run() {
  local name=$1 ranks=$2
  printf '%s\n' "$3" >"$OUT/$name.yaml"
  if [ "$ranks" -gt 1 ]; then
    # Cores split evenly over the ranks (at least one thread each).
    local threads=$(( $(nproc) / ranks )); [ $threads -ge 1 ] || threads=1
    "${MPIRUN[@]}" -x OMP_NUM_THREADS=$threads -np "$ranks" "$W" train --spec "$OUT/$name.yaml" >"$OUT/$name.log" 2>&1
  else
    OMP_NUM_THREADS=$(nproc) "$W" train --spec "$OUT/$name.yaml" >"$OUT/$name.log" 2>&1
  fi || { echo "$name failed:" >&2; tail -5 "$OUT/$name.log" >&2; return 1; }
}

echo "| layout (students+teachers) | logits | step ms | compute | teacher | all-reduce | bytes/token | student tok/s |" >"$OUT/layouts.md"
echo "|---|---|---|---|---|---|---|---|" >>"$OUT/layouts.md"
for logits in dense topk hidden; do
  for layout in $LAYOUTS; do
    s=${layout%+*}; t=${layout#*+}
    name="kd_${logits}_${s}_${t}"
    run "$name" $((s + t)) "type: distill
teacher: {model: $OUT/teacher, ranks: $t}
student: {model: $OUT/student, ranks: $s}
distill: {temperature: 2, alpha: 0.5, logits: $logits, top_k: 64}
data: {train: $DATA, seq_len: $SEQ}
train: {steps: $STEPS, micro_batch: $BATCH, lr: 1e-3, log_every: 2, threads: 0, device: $DEVICE, precision: $PRECISION}
runtime: {prefetch: 2}
output: $OUT/${name}_out"
    /usr/bin/python3 - "$OUT/${name}_out/metrics.jsonl" "$layout" "$logits" "$s" >>"$OUT/layouts.md" <<'PY'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"event":"train"' in l.replace(" ", "")][1:]
med = lambda k: statistics.median(r.get(k, 0.0) for r in recs)
step = med("step_s")
pct = lambda k: "%.0f%%" % (100 * med(k) / step)
print("| %s | %s | %.1f | %s | %s | %s | %.0f | %.0f |" % (sys.argv[2], sys.argv[3], 1000 * step, pct("compute_s"),
      pct("teacher_s"), pct("allreduce_s"), med("stream_bytes_per_token"),
      med("tokens_per_s") / int(sys.argv[4])))
PY
  done
done

echo "| bucket MiB | buckets | step ms | all-reduce ms (not hidden) | all-reduce share |" >"$OUT/buckets.md"
echo "|---|---|---|---|---|" >>"$OUT/buckets.md"
for mb in $BUCKETS; do
  name="ft_bucket_$mb"
  run "$name" 2 "type: finetune
model: $OUT/teacher
ranks: 2
comm: mpi
data: {train: $DATA, seq_len: $SEQ}
train: {steps: $STEPS, micro_batch: $BATCH, lr: 1e-4, log_every: 2, threads: 0, device: $DEVICE, precision: $PRECISION}
runtime: {bucket_mb: $mb}
output: $OUT/${name}_out"
  buckets=$(grep -o '[0-9]* buckets' "$OUT/$name.log" | head -1 | cut -d' ' -f1)
  /usr/bin/python3 - "$OUT/${name}_out/metrics.jsonl" "$mb" "$buckets" >>"$OUT/buckets.md" <<'PY'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"event":"train"' in l.replace(" ", "")][1:]
med = lambda k: statistics.median(r.get(k, 0.0) for r in recs)
print("| %s | %s | %.1f | %.1f | %.0f%% |" % (sys.argv[2], sys.argv[3], 1000 * med("step_s"), 1000 * med("allreduce_s"),
      100 * med("allreduce_s") / med("step_s")))
PY
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
cat "$OUT/layouts.md"; echo; cat "$OUT/buckets.md"
