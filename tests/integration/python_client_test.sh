#!/usr/bin/env bash
# The coordinator's gRPC API from Python: stubs generated from proto/ here
# with grpcio-tools (grpc_tools.protoc), a real distill-coordinator (with a bearer
# token) on a free loopback port launching the real worker, and
# python_client.py submitting, watching, cancelling and checking the status
# codes of bad input.
source "$(dirname "$0")/lib.sh"
C="${DISTILL_COORDINATOR_BIN:?}"
SRC="${DISTILL_SOURCE_DIR:?}"
lib_init pyclient
on_exit stop_coordinator_and_jobs

# Stubs from the Python's own grpcio-tools (requirements.txt), so generated
# code and runtime (grpcio, protobuf) are one release.
$PY -c 'import grpc, google.protobuf, grpc_tools' 2>/dev/null ||
  { echo "$PY lacks grpcio / protobuf / grpcio-tools (run scripts/setup.sh)"; exit 1; }

python_stubs

# A tiny model and data (as in cli_test.sh).
write_tiny_config "$T/config.json"
write_text "$T/text.txt" 40
tokenize_bytes "$T/text.txt" "$T/train.bin" || die "tokenize failed"

TOKEN="py-test-$RANDOM$RANDOM"
echo "$TOKEN" >"$T/token"
chmod 600 "$T/token"  # a token others can read is refused
# Port 0: the coordinator picks a free port and prints it.
start_coordinator_at 0 --slots 1 --auth-token-file "$T/token" || die "coordinator"

$PY "$SRC/tests/integration/python_client.py" "127.0.0.1:$PORT" "$TOKEN" "$T"
rc=$?
[ "$rc" -eq 0 ] || { echo "--- coordinator log"; tail -30 "$T/coordinator.log"; }
kill -TERM "$COORD_PID" && wait "$COORD_PID"
COORD_PID=
exit "$rc"
