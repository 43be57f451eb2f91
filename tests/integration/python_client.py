#!/usr/bin/env python3
"""A plain Python gRPC client against a real distill-coordinator.

Shows that the API in proto/distill/v1/coordinator.proto is usable from any
language with nothing but the generated stubs (python_client_test.sh
generates them into PYTHONPATH with protoc + grpc_python_plugin).

usage: python_client.py ADDR TOKEN WORKDIR
WORKDIR holds config.json and train.bin (a tiny model and data); outputs go
to WORKDIR/out/. Prints one line per check; exits 1 if any failed.
"""
import sys
import time

import grpc

from distill.v1 import coordinator_pb2 as pb
from distill.v1 import coordinator_pb2_grpc as pb_grpc
from distill.v1 import job_pb2

ADDR, TOKEN, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
AUTH = (("authorization", "Bearer " + TOKEN),)
failures = 0


def check(name, cond, detail=""):
    global failures
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else ": " + str(detail)), flush=True)
    if not cond:
        failures += 1


def spec(name, steps):
    return job_pb2.JobSpec(
        type=job_pb2.FINETUNE,
        name=name,
        init=f"{WORK}/config.json",
        data=job_pb2.DataSpec(train=[f"{WORK}/train.bin"], seq_len=16),
        train=job_pb2.TrainSpec(steps=steps, micro_batch=2, lr=0.01, log_every=1, threads=1),
        output=f"{WORK}/out/{name}",
    )


def code_of(fn):
    """The gRPC status code a call fails with (OK if it does not fail)."""
    try:
        fn()
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def watch(stub, job_id, timeout=120):
    """All events of the job to its terminal state; returns (events, last job)."""
    events = list(stub.WatchJob(pb.WatchJobRequest(id=job_id), metadata=AUTH, timeout=timeout))
    return events, events[-1].job if events else None


def main():
    channel = grpc.insecure_channel(ADDR)
    grpc.channel_ready_future(channel).result(timeout=30)
    stub = pb_grpc.CoordinatorStub(channel)

    # 1. A tiny finetune job runs to SUCCEEDED; the watch stream shows its life.
    job = stub.SubmitJob(pb.SubmitJobRequest(spec=spec("tiny", 6), request_id="py-tiny"), metadata=AUTH)
    check("submit returns a queued job with an id", job.id and job.state in (pb.QUEUED, pb.STARTING), job)
    check("submit echoes the spec", job.spec.name == "tiny" and job.spec.train.steps == 6, job.spec)
    again = stub.SubmitJob(pb.SubmitJobRequest(spec=spec("tiny", 6), request_id="py-tiny"), metadata=AUTH)
    check("same request_id returns the same job", again.id == job.id, (again.id, job.id))
    events, last = watch(stub, job.id)
    states = [e.job.state for e in events if e.kind == pb.JobEvent.STATE_CHANGED]
    check("watch ends in SUCCEEDED", last is not None and last.state == pb.SUCCEEDED, last)
    check("watch shows QUEUED and STARTING first", states[:2] == [pb.QUEUED, pb.STARTING], states)
    seqs = [e.sequence for e in events]
    check("event sequences increase from 1", seqs == list(range(1, len(seqs) + 1)), seqs)
    got = stub.GetJob(pb.GetJobRequest(id=job.id), metadata=AUTH)
    check("get: SUCCEEDED, attempt 1, exit code 0",
          got.state == pb.SUCCEEDED and got.attempt == 1 and got.exit_code == 0, got)
    check("get: create <= start <= end times",
          got.create_time.ToNanoseconds() <= got.start_time.ToNanoseconds() <= got.end_time.ToNanoseconds(), got)
    resumed = list(stub.WatchJob(pb.WatchJobRequest(id=job.id, after_sequence=seqs[-2]), metadata=AUTH, timeout=30))
    check("watch with after_sequence resumes after it", [e.sequence for e in resumed] == seqs[-1:],
          [e.sequence for e in resumed])
    logs = b"".join(c.data for c in stub.StreamLogs(pb.StreamLogsRequest(id=job.id), metadata=AUTH, timeout=30))
    check("logs hold the worker's progress lines", b"step 6/6" in logs, logs[-300:])

    # 2. A long job is cancelled (force: no need to wait for a checkpoint).
    long_job = stub.SubmitJob(pb.SubmitJobRequest(spec=spec("long", 100000)), metadata=AUTH)
    deadline = time.time() + 60
    while time.time() < deadline:
        state = stub.GetJob(pb.GetJobRequest(id=long_job.id), metadata=AUTH).state
        if state in (pb.STARTING, pb.RUNNING):
            break
        time.sleep(0.2)
    stub.CancelJob(pb.CancelJobRequest(id=long_job.id, force=True), metadata=AUTH)
    _, last = watch(stub, long_job.id, timeout=60)
    check("cancelled job ends CANCELLED with CANCEL_REQUESTED",
          last is not None and last.state == pb.CANCELLED and last.failure_reason == pb.CANCEL_REQUESTED, last)

    listed = stub.ListJobs(pb.ListJobsRequest(), metadata=AUTH)
    check("list: both jobs, newest first", [j.id for j in listed.jobs] == [long_job.id, job.id],
          [j.id for j in listed.jobs])
    page1 = stub.ListJobs(pb.ListJobsRequest(page_size=1), metadata=AUTH)
    page2 = stub.ListJobs(pb.ListJobsRequest(page_size=1, page_token=page1.next_page_token), metadata=AUTH)
    check("list pages with page tokens",
          [j.id for j in page1.jobs] == [long_job.id] and [j.id for j in page2.jobs] == [job.id]
          and not page2.next_page_token, (page1, page2))
    only = stub.ListJobs(pb.ListJobsRequest(state=pb.CANCELLED), metadata=AUTH)
    check("list filters by state", [j.id for j in only.jobs] == [long_job.id], [j.id for j in only.jobs])

    # 3. Status codes for bad input.
    def codes(name, want, fn):
        got = code_of(fn)
        check(f"{name}: {want.name}", got == want, got)

    codes("get of an unknown id", grpc.StatusCode.NOT_FOUND,
          lambda: stub.GetJob(pb.GetJobRequest(id="no-such-job"), metadata=AUTH))
    codes("watch of an unknown id", grpc.StatusCode.NOT_FOUND,
          lambda: list(stub.WatchJob(pb.WatchJobRequest(id="no-such-job"), metadata=AUTH, timeout=10)))
    codes("cancel of an unknown id", grpc.StatusCode.NOT_FOUND,
          lambda: stub.CancelJob(pb.CancelJobRequest(id="no-such-job"), metadata=AUTH))
    codes("cancel of a finished job", grpc.StatusCode.FAILED_PRECONDITION,
          lambda: stub.CancelJob(pb.CancelJobRequest(id=job.id), metadata=AUTH))
    bad = spec("bad", 5)
    bad.train.lr = -1
    try:
        stub.SubmitJob(pb.SubmitJobRequest(spec=bad), metadata=AUTH)
        check("bad spec: INVALID_ARGUMENT", False, "accepted")
    except grpc.RpcError as e:
        check("bad spec: INVALID_ARGUMENT naming the field",
              e.code() == grpc.StatusCode.INVALID_ARGUMENT and "train.lr" in e.details(), (e.code(), e.details()))
    relative = spec("rel", 5)
    relative.init = "config.json"
    codes("relative path in spec", grpc.StatusCode.INVALID_ARGUMENT,
          lambda: stub.SubmitJob(pb.SubmitJobRequest(spec=relative), metadata=AUTH))
    codes("submit without a spec", grpc.StatusCode.INVALID_ARGUMENT,
          lambda: stub.SubmitJob(pb.SubmitJobRequest(), metadata=AUTH))
    codes("list with a forged page token", grpc.StatusCode.INVALID_ARGUMENT,
          lambda: stub.ListJobs(pb.ListJobsRequest(page_token="forged"), metadata=AUTH))
    codes("call without the token", grpc.StatusCode.UNAUTHENTICATED,
          lambda: stub.GetJob(pb.GetJobRequest(id=job.id)))
    codes("call with a wrong token", grpc.StatusCode.UNAUTHENTICATED,
          lambda: stub.GetJob(pb.GetJobRequest(id=job.id), metadata=(("authorization", "Bearer nope"),)))
    after = stub.ListJobs(pb.ListJobsRequest(), metadata=AUTH)
    check("rejected submissions queue nothing", len(after.jobs) == 2, [j.id for j in after.jobs])

    print(f"python_client: {failures} failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
