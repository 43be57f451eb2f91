# The shared harness of the integration scripts (tests/integration/*_test.sh).
# Each script starts with
#   source "$(dirname "$0")/lib.sh"
#   lib_init NAME          # $T: a fresh temp dir, removed (after the hooks) on exit
# then counts its checks with `ok` / `fail MESSAGE`, and ends with
#   finish NAME            # prints "NAME: P passed, F failed"; exit status 0 iff F = 0
# Environment (ctest sets it, tests/CMakeLists.txt): DISTILL_WORKER_BIN, and
# where used DISTILL_COORDINATOR_BIN, DISTILL_CTL_BIN, DISTILL_SOURCE_DIR,
# DISTILL_REFERENCE_DIR, DISTILL_PYTHON.
set -uo pipefail
W="${DISTILL_WORKER_BIN:?}"
PY="${DISTILL_PYTHON:-python3}"
# mpirun for ranks on this host, one OpenMP thread each.
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -x OMP_WAIT_POLICY=PASSIVE)

failures=0
pass=0
ok() { pass=$((pass + 1)); }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# die MESSAGE: a setup step failed; nothing after it can run.
die() { echo "FAIL: $*"; exit 1; }

LIB_EXIT_HOOKS=()
# on_exit COMMAND: run COMMAND (with eval) on exit, before $T is removed.
on_exit() { LIB_EXIT_HOOKS+=("$1"); }
lib_cleanup() {
  local hook
  for hook in "${LIB_EXIT_HOOKS[@]+"${LIB_EXIT_HOOKS[@]}"}"; do eval "$hook"; done
  rm -rf "$T"
}
# lib_init NAME: T=/tmp/distill_NAME.XXXXXX, removed on exit.
lib_init() {
  T=$(mktemp -d "/tmp/distill_$1.XXXXXX")
  trap lib_cleanup EXIT
}

# finish NAME: the summary line; the exit status says whether all passed.
finish() {
  echo "$1: $pass passed, $failures failed"
  [ "$failures" -eq 0 ]
}

# expect_error NAME EXPECTED_SUBSTRING CMD...: non-zero exit, one stderr line
# containing the substring, no LibTorch backtrace or abort. With
# DISTILL_SHOW_ERRORS set, each error line is printed (to read them all).
expect_error() {
  local name=$1 want=$2
  shift 2
  "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  local lines
  lines=$(wc -l <"$T/err")
  if [ "$rc" -eq 0 ]; then fail "$name: exit 0"; return; fi
  if [ "$rc" -ge 128 ]; then fail "$name: crashed (exit $rc): $(cat "$T/err")"; return; fi
  if [ "$lines" -ne 1 ]; then fail "$name: $lines stderr lines: $(cat "$T/err")"; return; fi
  [ -n "${DISTILL_SHOW_ERRORS:-}" ] && echo "$name: $(cat "$T/err")"
  if ! grep -qF -- "$want" "$T/err"; then fail "$name: stderr lacks '$want': $(cat "$T/err")"; return; fi
  ok
}

# wait_log FILE PATTERN SECONDS: until FILE has a line matching PATTERN (grep);
# non-zero after SECONDS.
wait_log() {
  local _
  for _ in $(seq 1 $(($3 * 10))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

# free_ports N: N free loopback TCP ports, on one line.
free_ports() {
  $PY -c '
import socket, sys
s = [socket.socket() for _ in range(int(sys.argv[1]))]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])' "$1"
}

# write_tiny_config PATH [VOCAB] [TIED]: config.json of a tiny Llama (width
# 32, 2 layers, 4 heads, 2 KV heads); vocabulary 256 (bytes) and tied
# embeddings unless given.
write_tiny_config() {
  cat >"$1" <<JSON
{"architectures": ["LlamaForCausalLM"], "vocab_size": ${2:-256}, "hidden_size": 32, "intermediate_size": 64,
 "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
 "tie_word_embeddings": ${3:-true}}
JSON
}

# write_text PATH LINES: LINES numbered pangram lines (training text).
write_text() {
  local i
  for i in $(seq 1 "$2"); do
    echo "The quick brown fox $i jumps over the lazy dog; pack my box with five dozen liquor jugs."
  done >"$1"
}

# tokenize_bytes TEXT OUT: OUT.bin of TEXT's bytes (the worker's byte tokenizer).
tokenize_bytes() {
  "$W" tokenize --tokenizer bytes --input "$1" --output "$2" >/dev/null
}

# python_stubs: the coordinator API's Python stubs under $T/py (grpcio-tools of
# $PY, so generated code and runtime are one release), on PYTHONPATH.
python_stubs() {
  mkdir -p "$T/py"
  $PY -m grpc_tools.protoc -I "${DISTILL_SOURCE_DIR:?}/proto" --python_out="$T/py" --grpc_python_out="$T/py" \
    distill/v1/job.proto distill/v1/coordinator.proto || die "protoc failed"
  export PYTHONPATH="$T/py"
}

# start_coordinator_at PORT [FLAGS...]: the real coordinator ($DISTILL_COORDINATOR_BIN)
# on 127.0.0.1:PORT (0: a free one) with state dir $T/var, the worker $W,
# no metrics listener, FLAGS, output appended to $T/coordinator.log; waits
# for its "serving on port" line and sets COORD_PID and PORT. Returns 1 (the
# log's tail on stdout) when it does not start.
start_coordinator_at() {
  local port=$1 before
  shift
  touch "$T/coordinator.log"
  before=$(grep -c "serving on port" "$T/coordinator.log")
  "${DISTILL_COORDINATOR_BIN:?}" --listen "127.0.0.1:$port" --metrics-listen '' --state-dir "$T/var" \
    --worker-bin "$W" --allow-any-path "$@" >>"$T/coordinator.log" 2>&1 &
  COORD_PID=$!
  for _ in $(seq 1 100); do
    if [ "$(grep -c "serving on port" "$T/coordinator.log")" -gt "$before" ]; then
      PORT=$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$T/coordinator.log" | tail -n 1)
      return 0
    fi
    kill -0 "$COORD_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "coordinator did not start: $(tail -5 "$T/coordinator.log")"
  return 1
}

# field ID NAME: the job's field NAME as `distillctl get ID --json` gives it
# ($CTL; snake_case names), '' when absent.
field() { "${CTL:?}" get "$1" --json | $PY -c "import json,sys; print(json.load(sys.stdin).get('$2', ''))"; }
# wait_state ID STATE SECONDS: until the job is in STATE; non-zero after SECONDS.
wait_state() {
  for _ in $(seq 1 $(($3 * 5))); do
    [ "$(field "$1" state 2>/dev/null)" = "$2" ] && return 0
    sleep 0.2
  done
  return 1
}

# A coordinator started by the script ($COORD_PID) and the jobs it launched
# under $T/var (each attempt runs in a session of its own, led by the pid in
# its pid file) are killed on exit.
COORD_PID=
stop_coordinator_and_jobs() {
  [ -n "$COORD_PID" ] && kill -9 "$COORD_PID" 2>/dev/null
  local p
  for p in "$T"/var/jobs/*/attempt-*/pid; do
    [ -f "$p" ] && { kill -9 -- "-$(cat "$p")"; pkill -9 -s "$(cat "$p")"; } 2>/dev/null
  done
  return 0
}

# compare_runs A B TOL [STEP1_TOL]: metrics.jsonl loss traces and final weights
# of two output dirs agree within TOL relative (0: bit for bit); the first
# logged step's loss and grad_norm within STEP1_TOL (default TOL). Weights
# may be F32 or BF16.
compare_runs() {
  $PY - "$1" "$2" "$3" "${4:-$3}" <<'PY'
import json, struct, sys, os, math
a, b, tol, tol1 = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
def trace(d):
    return [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl")) if '"event":"train"' in l.replace(" ", "")]
ta, tb = trace(a), trace(b)
assert len(ta) == len(tb) and ta, (len(ta), len(tb))
for i, (x, y) in enumerate(zip(ta, tb)):
    assert x["step"] == y["step"], (x, y)
    for k in ("loss", "ce_loss", "kd_loss", "grad_norm"):
        if k in x:
            t = tol1 if i == 0 and k in ("loss", "grad_norm") else tol
            assert abs(x[k] - y[k]) <= t * max(1.0, abs(x[k])), (k, x["step"], x[k], y[k])
    for k, v in x.get("feature_losses", {}).items():
        assert abs(v - y["feature_losses"][k]) <= tol * max(1.0, abs(v)), (k, v, y["feature_losses"][k])
def weights(d):
    for sub, f in (("model", "model.safetensors"), ("adapter", "adapter_model.safetensors")):
        p = os.path.join(d, sub, f)
        if os.path.exists(p):
            data = open(p, "rb").read()
            n = struct.unpack("<Q", data[:8])[0]
            h = json.loads(data[8:8 + n])
            out = {}
            for k, v in h.items():
                if k == "__metadata__":
                    continue
                raw = data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]
                if v["dtype"] == "BF16":  # the high half of a float32
                    out[k] = struct.unpack("<%df" % (len(raw) // 2),
                                           b"".join(b"\0\0" + raw[i:i + 2] for i in range(0, len(raw), 2)))
                else:
                    out[k] = struct.unpack("<%df" % (len(raw) // 4), raw)
            return out
    raise AssertionError("no output weights in " + d)
wa, wb = weights(a), weights(b)
assert wa.keys() == wb.keys()
worst = max(abs(p - q) for k in wa for p, q in zip(wa[k], wb[k]))
assert worst <= tol, worst
print("max weight diff", worst, "steps", len(ta))
PY
}
