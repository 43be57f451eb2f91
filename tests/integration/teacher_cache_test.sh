#!/usr/bin/env bash
# The teacher cache end to end (docs/architecture.md, Teacher cache):
# `distill-worker capture` then a distill job reading the cache gives the
# online top-k job's loss trace and weights bit for bit (with a feature
# pair); the cache read with another micro-batch, seed and 2 student ranks
# runs; a 2-rank capture writes the same shards; COMPACT runs with close losses; a train job with teacher.model and
# teacher.cache captures first; mismatches and damaged shards are one-line
# errors naming them; a capture killed with -9 and rerun equals an
# uninterrupted one byte for byte.
source "$(dirname "$0")/lib.sh"
lib_init teacher_cache
cd "$T" || die "cd"

write_tiny_config student.json
cat >teacher.json <<'JSON'
{"architectures": ["LlamaForCausalLM"], "vocab_size": 264, "hidden_size": 48, "intermediate_size": 96,
 "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
 "tie_word_embeddings": true}
JSON
write_text text.txt 40
tokenize_bytes text.txt train.bin || die "tokenize"
head -c 1500 text.txt >val.txt
tokenize_bytes val.txt val.bin || die "tokenize val"
head -c 2000 text.txt >other.txt
tokenize_bytes other.txt other.bin || die "tokenize other"
"$W" init --config teacher.json --out teacher0 --seed 1 >/dev/null || die "init teacher"
"$W" init --config student.json --out student0 --seed 2 >/dev/null || die "init student"

# spec NAME TEACHER [DISTILL_EXTRA] [TRAIN_EXTRA] [DATA_EXTRA] [STUDENT_EXTRA]: NAME.yaml, output NAME_out.
spec() {
  cat >"$1.yaml" <<YAML
type: distill
teacher: {$2}
student: {model: student0${6:-}}
distill: {temperature: 2, alpha: 0.9, logits: topk, top_k: 16, features: [{student_layer: 1, teacher_layer: 2}]${3:-}}
data: {train: train.bin, eval: val.bin, seq_len: 32${5:-}}
train: {steps: 6, micro_batch: 4, lr: 0.01, log_every: 1, eval_every: 6, threads: 1${4:-}}
output: $1_out
YAML
}

# --- capture, then the cached job equals the online top-k job -----------------
spec online "model: teacher0"
"$W" train --spec online.yaml >online.log 2>&1 || die "online job: $(tail -3 online.log)"
spec capture "model: teacher0, cache: cache"
"$W" capture --spec capture.yaml >capture.log 2>&1 || die "capture: $(tail -3 capture.log)"
grep -Eq "^capture done: .*cache, [0-9]+ tokens, [0-9]+ bytes on disk, [0-9.]+ B/token \(exact, top-16" capture.log && ok \
  || fail "capture summary: $(tail -2 capture.log)"
spec cached "cache: cache"
"$W" train --spec cached.yaml >cached.log 2>&1 || die "cached job: $(tail -3 cached.log)"
grep -q "teacher: cache .*/cache (exact, top-16, [0-9]* tokens)" cached.log && ok \
  || fail "start line: $(head -3 cached.log)"
compare_runs online_out cached_out 0 && ok || fail "cached job differs from the online top-k job"
grep -Eq "^eval step 6 \| loss .* \| kl [0-9.]+ \| top1 [0-9.]+% \| teacher ppl" cached.log && ok \
  || fail "cached eval line: $(grep '^eval' cached.log)"
# The teacher's own loss comes from its cached target logits: the same as online.
$PY - online_out/metrics.jsonl cached_out/metrics.jsonl <<'PY' && ok || fail "cached eval teacher loss"
import json, sys
def ev(p): return [json.loads(l) for l in open(p) if '"event":"eval"' in l.replace(" ", "")][-1]
a, b = ev(sys.argv[1]), ev(sys.argv[2])
assert abs(a["teacher_loss"] - b["teacher_loss"]) <= 1e-5 * a["teacher_loss"], (a, b)
assert abs(a["loss"] - b["loss"]) <= 1e-6 * a["loss"], (a, b)
assert b["kl"] <= a["kl"] + 1e-6, (a, b)  # top-k + tail: a lower bound
PY

# Two capture ranks (shards 0, 2, ... and 1, 3, ...) write the same shards.
spec capmp "model: teacher0, cache: cache_mp"
"${MPIRUN[@]}" -np 2 "$W" capture --spec capmp.yaml >capmp.log 2>&1 || fail "2-rank capture: $(tail -3 capmp.log)"
same=1
for f in cache/*.shard; do cmp -s "$f" "cache_mp/$(basename "$f")" || same=0; done
[ $same = 1 ] && grep -q '"complete": true' cache_mp/manifest.json && ok || fail "2-rank capture differs"

# --- another micro-batch and seed, 2 student ranks -----------------------------
spec cached2 "cache: cache" "" ", seed: 7" "" ", ranks: 2"
sed -i 's/micro_batch: 4/micro_batch: 2/' cached2.yaml
"${MPIRUN[@]}" -np 2 "$W" train --spec cached2.yaml >cached2.log 2>&1 && ok \
  || fail "2 ranks reading the cache: $(tail -3 cached2.log)"

# --- a train job with teacher.model and teacher.cache captures first ---------
spec both "model: teacher0, cache: cache_both"
"$W" train --spec both.yaml >both.log 2>&1 || fail "model + cache job: $(tail -3 both.log)"
grep -q "^capture done" both.log && ok || fail "model + cache job did not capture: $(head -5 both.log)"
compare_runs online_out both_out 0 && ok || fail "model + cache job differs from the online job"

# --- COMPACT -----------------------------------------------------------------
spec capc "model: teacher0, cache: cache_c, cache_encoding: compact"
"$W" capture --spec capc.yaml >capc.log 2>&1 || fail "compact capture: $(tail -3 capc.log)"
spec compact "cache: cache_c, cache_encoding: compact"
"$W" train --spec compact.yaml >compact.log 2>&1 || fail "compact job: $(tail -3 compact.log)"
$PY - online_out/metrics.jsonl compact_out/metrics.jsonl <<'PY' && ok || fail "compact losses not close"
import json, sys
def tr(p): return [json.loads(l) for l in open(p) if '"event":"train"' in l.replace(" ", "")]
a, b = tr(sys.argv[1]), tr(sys.argv[2])
assert len(a) == len(b) == 6
for x, y in zip(a, b):
    assert abs(x["loss"] - y["loss"]) <= 1e-2 * x["loss"], (x["loss"], y["loss"])
PY

# --- mismatches and damaged shards: one line naming them -------------------------
spec bad_data "cache: cache" "" "" ""
sed -i 's/train: train.bin/train: other.bin/' bad_data.yaml
expect_error "other data file" "data.train differs from the cache's (file" "$W" train --spec bad_data.yaml
spec bad_k "cache: cache"
sed -i 's/top_k: 16/top_k: 8/' bad_k.yaml
expect_error "other k" "distill.top_k is 8 but the cache holds top-16" "$W" train --spec bad_k.yaml
mkdir -p tok && echo '{"model": {}}' >tok/tokenizer.json
spec bad_tok "cache: cache" "" "" ", tokenizer: tok"
expect_error "other tokenizer" "data.tokenizer differs from the cache's" "$W" train --spec bad_tok.yaml
spec bad_t "cache: cache"
sed -i 's/temperature: 2/temperature: 3/' bad_t.yaml
expect_error "uncached temperature" "temperature 3 is not cached" "$W" train --spec bad_t.yaml
spec bad_layer "cache: cache"
sed -i 's/teacher_layer: 2/teacher_layer: 1/' bad_layer.yaml
expect_error "uncached layer" "teacher layer 1 is not cached" "$W" train --spec bad_layer.yaml
# damage COPY_EDIT MESSAGE: a copy of the cache damaged by the command, read by a job.
damage() {
  rm -rf dmg && cp -r cache dmg
  (cd dmg && eval "$1")
  spec dmg "cache: dmg"
  expect_error "damaged shard ($1)" "$2" "$W" train --spec dmg.yaml
}
# (the eval split: every row of it is read at the eval)
damage 'printf "\x55" | dd of=eval-00000.shard bs=1 seek=$(( $(stat -c %s eval-00000.shard) - 9 )) conv=notrunc 2>/dev/null' \
  "eval-00000.shard: row 45"
damage 'printf "\x55" | dd of=train-00000.shard bs=1 seek=40 conv=notrunc 2>/dev/null' "train-00000.shard (rows 0..63): index CRC"
damage 'truncate -s -1 train-00000.shard' "wrong size"
damage 'rm train-00000.shard' "train-00000.shard is missing (row"
# A directory holding another cache is never overwritten.
spec other_key "model: teacher0, cache: cache, cache_temperatures: [4]"
expect_error "capture into another key's cache" "holds a cache of 2 splits, temperatures [1, 2]" "$W" capture --spec other_key.yaml

# --- kill -9 during a capture, rerun: the same bytes as an uninterrupted one ---
write_text big.txt 400
tokenize_bytes big.txt big.bin || die "tokenize big"
spec full "model: teacher0, cache: cache_full"
sed -i 's/train: train.bin/train: big.bin/; s/micro_batch: 4/micro_batch: 1/' full.yaml
sed 's/cache_full/cache_kill/' full.yaml >kill.yaml
"$W" capture --spec full.yaml >full.log 2>&1 || fail "uninterrupted capture: $(tail -3 full.log)"
"$W" capture --spec kill.yaml >kill1.log 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  [ -f cache_kill/train-00001.shard ] && break
  sleep 0.05
done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
grep -q '"complete": false' cache_kill/manifest.json && ok || fail "the kill came after the capture finished"
"$W" capture --spec kill.yaml >kill2.log 2>&1 || fail "resumed capture: $(tail -3 kill2.log)"
grep -Eq "shards written, [1-9][0-9]* kept" kill2.log && ok || fail "resume kept no shard: $(tail -1 kill2.log)"
same=1
for f in cache_full/*.shard; do cmp -s "$f" "cache_kill/$(basename "$f")" || { same=0; echo "differs: $f"; }; done
[ "$(ls cache_full | wc -l)" = "$(ls cache_kill | wc -l)" ] || same=0
[ $same = 1 ] && ok || fail "resumed capture differs from the uninterrupted one"

finish teacher_cache
