#!/usr/bin/python3
"""A tiny distill.v1.Coordinator client for coordinator_test.sh.

Usage: coordinator_client.py ADDR COMMAND ARGS...
  submit SPEC.json [REQUEST_ID]   prints the job id
  get ID                          prints the job as JSON
  field ID FIELD                  prints one field of the job (state, attempt, ...)
  watch ID                        prints each state change; exit 0 iff the job SUCCEEDED
  wait ID STATE[,STATE] SECONDS   polls until the job is in one of the states; exit 1 on timeout
  cancel ID [force]
The stubs come from protoc + grpc_python_plugin on PYTHONPATH.
"""
import json
import sys
import time

import grpc
from google.protobuf import json_format

from distill.v1 import coordinator_pb2 as pb
from distill.v1 import coordinator_pb2_grpc as rpc
from distill.v1 import job_pb2


def main(argv):
    addr, cmd, args = argv[1], argv[2], argv[3:]
    stub = rpc.CoordinatorStub(grpc.insecure_channel(addr))
    if cmd == "submit":
        spec = json_format.ParseDict(json.load(open(args[0])), job_pb2.JobSpec())
        req = pb.SubmitJobRequest(spec=spec, request_id=args[1] if len(args) > 1 else "")
        print(stub.SubmitJob(req, timeout=30).id)
    elif cmd == "get":
        job = stub.GetJob(pb.GetJobRequest(id=args[0]), timeout=30)
        print(json_format.MessageToJson(job, preserving_proto_field_name=True))
    elif cmd == "field":
        job = stub.GetJob(pb.GetJobRequest(id=args[0]), timeout=30)
        v = getattr(job, args[1])
        if args[1] == "state":
            v = pb.JobState.Name(v)
        elif args[1] == "failure_reason":
            v = pb.FailureReason.Name(v)
        print(v)
    elif cmd == "watch":
        last = None
        for e in stub.WatchJob(pb.WatchJobRequest(id=args[0]), timeout=600):
            if e.kind == pb.JobEvent.STATE_CHANGED:
                last = pb.JobState.Name(e.job.state)
                print(e.sequence, last, e.message, flush=True)
        return 0 if last == "SUCCEEDED" else 1
    elif cmd == "wait":
        want, deadline = args[1].split(","), time.time() + float(args[2])
        while time.time() < deadline:
            try:
                state = pb.JobState.Name(stub.GetJob(pb.GetJobRequest(id=args[0]), timeout=10).state)
                if state in want:
                    print(state)
                    return 0
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        print("timeout waiting for", want, file=sys.stderr)
        return 1
    elif cmd == "cancel":
        job = stub.CancelJob(pb.CancelJobRequest(id=args[0], force=len(args) > 1), timeout=30)
        print(pb.JobState.Name(job.state))
    else:
        print("unknown command", cmd, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except grpc.RpcError as e:
        print(f"rpc error: {e.code().name}: {e.details()}", file=sys.stderr)
        sys.exit(3)
