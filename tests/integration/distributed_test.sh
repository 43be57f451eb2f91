#!/usr/bin/env bash
# The distributed runtime end to end, on real mpirun ranks (CPU, MPI backend):
# - data-parallel students, full and LoRA, many small buckets: 2 ranks equal
#   1 rank accumulating the same micro-batches, bit for bit (see the DP block
#   for why that is exact), and with accumulation on 2 ranks within the fp32
#   rounding of a reordered sum;
# - a teacher on 2 dedicated pipeline ranks equals the colocated teacher (the
#   same loss trace: CE, KD and feature losses) for dense, top-k and hidden;
# - 2 teacher + 2 student ranks train, checkpoint, resume (= uninterrupted);
# - a rank killed with kill -9, or hung (SIGSTOP), ends the job non-zero
#   within the timeout, naming the rank; a wrong -np is a clear error.
source "$(dirname "$0")/lib.sh"
lib_init dist
# Ranks left behind by a failed check: every process of this test names $T.
on_exit 'pkill -KILL -f "$T/" 2>/dev/null'

write_tiny_config "$T/student.json"
cat >"$T/teacher.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "vocab_size": 264, "hidden_size": 48, "intermediate_size": 96,
 "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
 "tie_word_embeddings": false}
JSON
write_text "$T/text.txt" 80
tokenize_bytes "$T/text.txt" "$T/train.bin" || fail "tokenize"
head -c 2000 "$T/text.txt" >"$T/val.txt"
tokenize_bytes "$T/val.txt" "$T/val.bin" || fail "tokenize val"
"$W" init --config "$T/teacher.json" --out "$T/teacher" --seed 1 >/dev/null || fail "init teacher"
"$W" init --config "$T/student.json" --out "$T/student" --seed 2 >/dev/null || fail "init student"

# --- data-parallel students ---------------------------------------------------
# finetune_spec NAME RANKS MICRO ACCUM EXTRA
finetune_spec() {
  cat >"$T/$1.yaml" <<YAML
type: finetune
model: student
ranks: $2
data: {train: train.bin, seq_len: 24}
train: {steps: 6, micro_batch: $3, grad_accum: $4, lr: 0.01, log_every: 1, threads: 1}
runtime: {bucket_mb: 0.01, sync_check_every: 2}
output: $1_out
$5
YAML
}
# Note [Exact data parallelism]: 2 ranks x micro 2 (accum 1) against 1 rank x
# micro 2 x accum 2. Rank r's micro-batch is the 1-rank run's micro-batch r
# (the sampler deals each global micro-batch of micro x ranks windows in rank
# slices): the same windows in the same shapes, so the same gradients g_r bit
# for bit. The 1-rank run accumulates g_0/2 + g_1/2, the all-reduce takes
# (g_0 + g_1)/2: halving is exact and a sum of two floats is the same in
# either order, so the runs must agree exactly (tolerance 0).
# With accumulation on the ranks too (2 x micro 2 x accum 2 against 1 x micro
# 2 x accum 4) four gradients are summed in another order, (g0+g2)+(g1+g3)
# against ((g0+g1)+g2)+g3. At the first step (same weights) that changes each
# component by at most 3u sum|g_i| (u = 2^-24), so loss and grad_norm agree
# within 1e-6 relative (16u, slack for the norm). Later steps have no fp32
# bound: AdamW's m/sqrt(v) turns rounding in a component whose gradient is
# near zero into a change of up to lr; 1e-3 there catches wrong shards or
# scaling (which move the loss by 1e-2 and more), not rounding.
for method in full lora; do
  extra=""
  [ $method = lora ] && extra="method: lora
lora: {rank: 4, alpha: 8, dropout: 0, target_modules: [q_proj, v_proj, down_proj]}"
  finetune_spec "${method}_1" 1 2 2 "$extra"
  finetune_spec "${method}_2" 2 2 1 "$extra"
  finetune_spec "${method}_1acc" 1 2 4 "$extra"
  finetune_spec "${method}_2acc" 2 2 2 "$extra"
  for run in 1 1acc; do
    "$W" train --spec "$T/${method}_$run.yaml" >"$T/${method}_$run.log" 2>&1 \
      || fail "$method $run: $(tail -3 "$T/${method}_$run.log")"
  done
  for run in 2 2acc; do
    "${MPIRUN[@]}" -np 2 "$W" train --spec "$T/${method}_$run.yaml" >"$T/${method}_$run.log" 2>&1 \
      || fail "$method $run: $(tail -5 "$T/${method}_$run.log")"
  done
  out=$(compare_runs "$T/${method}_1_out" "$T/${method}_2_out" 0 2>&1) && ok \
    || fail "$method: 2 ranks x micro 2 != 1 rank x micro 2 x accum 2 (bit for bit): $out"
  out=$(compare_runs "$T/${method}_1acc_out" "$T/${method}_2acc_out" 1e-3 1e-6 2>&1) && ok \
    || fail "$method: 2 ranks x micro 2 x accum 2 != 1 rank x micro 2 x accum 4: $out"
  grep -q "2 data-parallel ranks (mpi all-reduce" "$T/${method}_2.log" && ok \
    || fail "$method: start line: $(grep training "$T/${method}_2.log")"
  grep -Eq "^step 6/6 .*\| compute [0-9]+% allreduce [0-9]+%" "$T/${method}_2.log" && ok \
    || fail "$method: progress line lacks the time split: $(grep '^step 6' "$T/${method}_2.log")"
  [ "$(grep -c '^step ' "$T/${method}_2.log")" -eq 6 ] && ok || fail "$method: progress printed by more than rank 0"
done
"$W" train --spec "$T/full_2.yaml" >"$T/np.log" 2>&1 && fail "ranks 2 without mpirun ran"
grep -q "the spec needs 2 ranks (ranks 2) but 1 was launched: run mpirun -np 2" "$T/np.log" && ok \
  || fail "ranks 2 without mpirun: $(cat "$T/np.log")"
"${MPIRUN[@]}" -np 3 "$W" train --spec "$T/full_2.yaml" >"$T/np3.log" 2>&1 && fail "ranks 2 on -np 3 ran"
grep -q "the spec needs 2 ranks (ranks 2) but 3 were launched" "$T/np3.log" && ok \
  || fail "wrong -np: $(tail -5 "$T/np3.log")"

# --- teacher on dedicated ranks == colocated -----------------------------------
# distill_spec NAME STUDENTS TEACHERS LOGITS STEPS [TIMEOUT_S (default 20)]
distill_spec() {
  cat >"$T/$1.yaml" <<YAML
type: distill
teacher: {model: teacher, ranks: $3}
student: {model: student, ranks: $2}
distill: {temperature: 2, alpha: 0.7, logits: $4, top_k: 16,
          features: [{student_layer: 0, teacher_layer: 0}, {student_layer: 1, teacher_layer: 3, loss: cosine}]}
data: {train: train.bin, eval: val.bin, seq_len: 24}
train: {steps: $5, micro_batch: 2, grad_accum: 2, lr: 0.01, log_every: 1, eval_every: 4, eval_batches: 2, threads: 1}
runtime: {prefetch: 3, timeout_s: ${6:-20}}
checkpoint: {every: 3}
output: $1_out
YAML
}
for logits in dense topk hidden; do
  distill_spec "co_$logits" 1 0 $logits 6
  distill_spec "pp_$logits" 1 2 $logits 6
  "$W" train --spec "$T/co_$logits.yaml" >"$T/co_$logits.log" 2>&1 || fail "colocated $logits: $(tail -3 "$T/co_$logits.log")"
  "${MPIRUN[@]}" -np 3 "$W" train --spec "$T/pp_$logits.yaml" >"$T/pp_$logits.log" 2>&1 \
    || fail "2 teacher stages $logits: $(tail -5 "$T/pp_$logits.log")"
  out=$(compare_runs "$T/co_${logits}_out" "$T/pp_${logits}_out" 1e-5 2>&1) && ok \
    || fail "$logits: 2 teacher stages != colocated: $out"
  grep -q "teacher stage 1 done: 1[0-9] requests" "$T/pp_$logits.log" && ok \
    || fail "$logits: teacher stage summary: $(grep 'teacher stage' "$T/pp_$logits.log")"
done
# Bytes per token on the wire, by hand: top-16 values (4 B) + ids (int32, 4 B)
# + the log-sum-exp (4 B), plus the two 48-wide float features.
$PY - "$T/pp_topk_out/metrics.jsonl" "$T/co_topk_out/metrics.jsonl" <<'PY' && ok || fail "top-k bytes per token"
import json, sys
for f in sys.argv[1:]:
    r = [json.loads(l) for l in open(f) if '"train"' in l][-1]
    assert r["stream_bytes_per_token"] == 16 * 4 + 16 * 4 + 4 + 2 * 48 * 4, (f, r["stream_bytes_per_token"])
PY
grep -Eq "^step 6/6 .*\| compute [0-9]+% teacher [0-9]+% \| [0-9]+ B/tok" "$T/pp_topk.log" && ok \
  || fail "topk progress line: $(grep '^step 6' "$T/pp_topk.log")"

# --- 2 teacher + 2 student ranks: train, checkpoint, resume ---------------------
distill_spec full22 2 2 topk 8
distill_spec half22 2 2 topk 8
"${MPIRUN[@]}" -np 4 "$W" train --spec "$T/full22.yaml" >"$T/full22.log" 2>&1 || fail "2+2: $(tail -5 "$T/full22.log")"
"${MPIRUN[@]}" -np 4 "$W" train --spec "$T/half22.yaml" --max-steps-this-run 3 >"$T/half22a.log" 2>&1 \
  || fail "2+2 first part: $(tail -5 "$T/half22a.log")"
[ -d "$T/half22_out/checkpoints" ] && ok || fail "2+2: no checkpoint"
"${MPIRUN[@]}" -np 4 "$W" train --spec "$T/half22.yaml" >"$T/half22b.log" 2>&1 || fail "2+2 resume: $(tail -5 "$T/half22b.log")"
grep -q "resumed from checkpoint at step 3" "$T/half22b.log" && ok || fail "2+2 resume message: $(head -5 "$T/half22b.log")"
out=$(compare_runs "$T/full22_out" "$T/half22_out" 1e-6 2>&1) && ok || fail "2+2 resumed != uninterrupted: $out"
grep -q "^eval step 8 | loss .* | kl" "$T/full22.log" && ok || fail "2+2 eval line: $(grep '^eval' "$T/full22.log")"

# --- failures: kill -9 and a hung rank -------------------------------------------
# run_and_break NAME SIGNAL RANK: start a long 1+2 job, send SIGNAL to RANK
# once training runs; mpirun must exit non-zero within the timeout.
run_and_break() {
  local name=$1 sig=$2 rank=$3
  distill_spec "$name" 1 2 dense 100000 5
  "${MPIRUN[@]}" -np 3 "$W" train --spec "$T/$name.yaml" >"$T/$name.log" 2>&1 &
  local mpirun_pid=$!
  wait_log "$T/$name.log" '^step 2/' 60
  local victim=""
  for p in $(pgrep -f "train --spec $T/$name.yaml"); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$rank"; then victim=$p; fi
  done
  [ -n "$victim" ] || { fail "$name: rank $rank not found"; kill -KILL $mpirun_pid; return; }
  local start=$SECONDS
  kill "-$sig" "$victim"
  local rc=0
  for _ in $(seq 1 300); do kill -0 $mpirun_pid 2>/dev/null || break; sleep 0.1; done
  if kill -0 $mpirun_pid 2>/dev/null; then
    fail "$name: job still running 30 s after $sig to rank $rank"; kill -KILL $mpirun_pid; kill -CONT "$victim"
    return
  fi
  wait $mpirun_pid; rc=$?
  kill -KILL "$victim" 2>/dev/null
  [ "$rc" -ne 0 ] && ok || fail "$name: exit 0 after $sig to rank $rank"
  echo "$name: mpirun exited $rc $((SECONDS - start)) s after SIG$sig to rank $rank"
  LAST_LOG="$T/$name.log"
}
run_and_break killed KILL 1
grep -Eq "rank 1 .*(exited on signal 9|killed)" "$LAST_LOG" && ok || fail "kill -9: message: $(tail -8 "$LAST_LOG")"
run_and_break hung STOP 2
grep -q "timed out after 5 s waiting for .*rank 2 (teacher stage 1)" "$LAST_LOG" && ok \
  || fail "hung rank: message: $(tail -8 "$LAST_LOG")"

finish distributed_test
