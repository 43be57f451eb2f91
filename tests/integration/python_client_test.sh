#!/usr/bin/env bash
# The coordinator's gRPC API from Python: stubs generated from proto/ here
# with grpcio-tools (grpc_tools.protoc), a real distill-coordinator (with a bearer
# token) on a free loopback port launching the real worker, and
# python_client.py submitting, watching, cancelling and checking the status
# codes of bad input.
set -uo pipefail
W="${DISTILL_WORKER_BIN:?}"
C="${DISTILL_COORDINATOR_BIN:?}"
SRC="${DISTILL_SOURCE_DIR:?}"
PY="${DISTILL_PYTHON:-python3}"
T=$(mktemp -d /tmp/distill_pyclient.XXXXXX)
COORD_PID=
cleanup() {
  [ -n "$COORD_PID" ] && kill -9 "$COORD_PID" 2>/dev/null
  # Each attempt runs in a session of its own, led by the pid in its pid file.
  for p in "$T"/var/jobs/*/attempt-*/pid; do
    [ -f "$p" ] && kill -9 -- "-$(cat "$p")" 2>/dev/null
  done
  rm -rf "$T"
}
trap cleanup EXIT

# Stubs from the Python's own grpcio-tools (requirements.txt), so generated
# code and runtime (grpcio, protobuf) are one release.
$PY -c 'import grpc, google.protobuf, grpc_tools' 2>/dev/null ||
  { echo "$PY lacks grpcio / protobuf / grpcio-tools (run scripts/setup.sh)"; exit 1; }

mkdir -p "$T/py"
$PY -m grpc_tools.protoc -I "$SRC/proto" --python_out="$T/py" --grpc_python_out="$T/py" \
  distill/v1/job.proto distill/v1/coordinator.proto || { echo "protoc failed"; exit 1; }
export PYTHONPATH="$T/py"

# A tiny model and data (as in cli_test.sh).
cat >"$T/config.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "vocab_size": 256, "hidden_size": 32, "intermediate_size": 64,
 "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
 "tie_word_embeddings": true}
JSON
for i in $(seq 1 40); do echo "The quick brown fox $i jumps over the lazy dog; pack my box with five dozen liquor jugs."; done >"$T/text.txt"
"$W" tokenize --tokenizer bytes --input "$T/text.txt" --output "$T/train.bin" >/dev/null || { echo "tokenize failed"; exit 1; }

TOKEN="py-test-$RANDOM$RANDOM"
echo "$TOKEN" >"$T/token"
# Port 0: the coordinator picks a free port and prints it.
"$C" --listen 127.0.0.1:0 --metrics-listen '' --state-dir "$T/var" --slots 1 --worker-bin "$W" \
  --auth-token-file "$T/token" >"$T/coordinator.log" 2>&1 &
COORD_PID=$!
PORT=
for _ in $(seq 1 100); do
  PORT=$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$T/coordinator.log")
  [ -n "$PORT" ] && break
  kill -0 "$COORD_PID" 2>/dev/null || break
  sleep 0.1
done
[ -n "$PORT" ] || { echo "coordinator did not start: $(cat "$T/coordinator.log")"; exit 1; }

$PY "$SRC/tests/integration/python_client.py" "127.0.0.1:$PORT" "$TOKEN" "$T"
rc=$?
[ "$rc" -eq 0 ] || { echo "--- coordinator log"; tail -30 "$T/coordinator.log"; }
kill -TERM "$COORD_PID" && wait "$COORD_PID"
COORD_PID=
exit "$rc"
