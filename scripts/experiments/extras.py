#!/usr/bin/env python3
"""What docs/experiments.md needs beside `distillctl report` (scripts/experiments.sh).

- The teacher's val and held-out-genre perplexity.
- Full-vocabulary KL(teacher || student) at T = 1 and top-1 agreement, from
  `distill-worker eval --teacher` on the first 65,536 val tokens. Measured for
  the cross-entropy baseline (a finetune has no teacher in its own eval) and
  for question (a)'s students at T = 1. The sweeps' own KL comes from
  the top-64 cache and is a lower bound.
- The base of question (c) on the held-out genre's val split.

Standard library only (runs on the system python3).
"""
import argparse
import json
import os
import subprocess
import sys

VAL = "data/brown_bpe/val.bin"
HOLDOUT_VAL = "data/brown_bpe/holdout/val.bin"
TEACHER = "var/brown_bpe/teacher_tail/model"
PREFIX_TOKENS = 65536


def ctl_json(ctl, job_id):
    return json.loads(subprocess.check_output([ctl, "get", job_id, "--json"]))


def children(ctl, sweep_id):
    return [ctl_json(ctl, c) for c in ctl_json(ctl, sweep_id).get("child_ids", [])]


def evaluate(worker, model, tokens, threads, teacher=None, adapter=None):
    cmd = [worker, "eval", "--model", model, "--tokens", tokens, "--seq-len", "256",
           "--threads", str(threads)]
    if teacher:
        cmd += ["--teacher", teacher]
    if adapter:
        cmd += ["--adapter", adapter]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def val_prefix(path):
    """The first PREFIX_TOKENS uint32 ids of val.bin as their own file."""
    if not os.path.exists(path):
        with open(VAL, "rb") as f:
            data = f.read(4 * PREFIX_TOKENS)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
    return path


def kl_rows(args, prefix, sweep_id, keep):
    rows = []
    for child in children(args.ctl, sweep_id):
        values = {k: json.loads(v) for k, v in child.get("sweep_values", {}).items()}
        if not keep(values):
            continue
        model = os.path.join(child["spec"]["output"], "model")
        r = evaluate(args.worker, model, prefix, args.threads, teacher=TEACHER)
        rows.append({"id": child["id"], "values": values, **r})
        print(f"{child['id']} {values}: loss {r['loss']:.4f} kl {r['kl']:.4f} "
              f"top1 {r['top1_agreement']:.4f}", flush=True)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--worker", "--ctl", "--baseline", "--a", "--out"):
        p.add_argument(flag, required=True)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    prefix = val_prefix("var/experiments/val_65k.bin")
    extras = {
        "teacher_val": evaluate(args.worker, TEACHER, VAL, args.threads),
        "teacher_holdout_val": evaluate(args.worker, TEACHER, HOLDOUT_VAL, args.threads),
        "val_prefix_tokens": PREFIX_TOKENS,
        "kl_baseline": kl_rows(args, prefix, args.baseline, lambda v: True),
        "kl_a_t1": kl_rows(args, prefix, args.a, lambda v: v.get("distill.temperature") == 1),
        "c_base_holdout_val": evaluate(args.worker, "var/experiments/c_base", HOLDOUT_VAL,
                                       args.threads),
    }
    with open(args.out, "w") as f:
        json.dump(extras, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
