#!/usr/bin/env python3
"""transformers' learning-rate schedules as the reference for LearningRate().

Writes --out/schedules.json: {"cases": [{"name", "schedule", "lr", "min_lr",
"warmup", "total_steps", "lrs"}]}, where lrs[s] is the learning rate the
optimizer step s (0-based) runs with, for s in [0, total_steps + EXTRA_STEPS):
read from param_groups[0]["lr"] of a real torch.optim.AdamW before each
optimizer.step(), with the transformers scheduler stepped after it (the
Trainer's order). Past total_steps the schedules go on as transformers
defines them.

Our schedule -> transformers function (the one that takes the same
parameters: peak lr, warmup, total steps, floor min_lr):
  cosine   get_cosine_with_min_lr_schedule_with_warmup(min_lr=min_lr)
           (with min_lr = 0 it is get_cosine_schedule_with_warmup; checked)
  linear   get_polynomial_decay_schedule_with_warmup(lr_end=min_lr, power=1)
           (with min_lr = 0 it is get_linear_schedule_with_warmup; checked)
  constant get_constant_schedule_with_warmup (min_lr unused)
Warmup in all three is lr * s / warmup: step 0 runs at lr 0 when warmup > 0.
Prints nothing on success; exits non-zero on failure.
"""

import argparse
import json
import os
import sys

import torch
from transformers import optimization as opt

EXTRA_STEPS = 5  # steps past total_steps

# (schedule, warmup, total_steps, lr, min_lr)
CASES = [
    ("cosine", 0, 10, 3e-4, 3e-5),
    ("cosine", 1, 10, 3e-4, 3e-5),
    ("cosine", 10, 100, 1e-3, 1e-4),
    ("cosine", 3, 7, 1e-2, 0.0),
    ("cosine", 5, 5, 2e-3, 2e-4),  # warmup == total_steps
    ("cosine", 0, 1, 1e-3, 1e-4),
    ("cosine", 2, 6, 1e-3, 1e-3),  # min_lr == lr: flat after warmup
    ("linear", 0, 10, 3e-4, 3e-5),
    ("linear", 1, 10, 3e-4, 3e-5),
    ("linear", 4, 9, 1e-2, 0.0),
    ("constant", 0, 10, 3e-4, 3e-5),
    ("constant", 1, 10, 3e-4, 3e-5),
    ("constant", 4, 9, 1e-2, 0.0),
]


def make_scheduler(optimizer, schedule, warmup, total, min_lr):
    if schedule == "cosine":
        return opt.get_cosine_with_min_lr_schedule_with_warmup(optimizer, warmup, total, min_lr=min_lr)
    if schedule == "cosine0":
        return opt.get_cosine_schedule_with_warmup(optimizer, warmup, total)
    if schedule == "linear":
        return opt.get_polynomial_decay_schedule_with_warmup(optimizer, warmup, total, lr_end=min_lr, power=1.0)
    if schedule == "linear0":
        return opt.get_linear_schedule_with_warmup(optimizer, warmup, total)
    if schedule == "constant":
        return opt.get_constant_schedule_with_warmup(optimizer, warmup)
    raise ValueError(schedule)


def run_schedule(schedule, warmup, total, lr, min_lr):
    """The lr of each optimizer step, from a real optimizer + LambdaLR."""
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.AdamW([param], lr=lr)
    scheduler = make_scheduler(optimizer, schedule, warmup, total, min_lr)
    lrs = []
    for _ in range(total + EXTRA_STEPS):
        lrs.append(float(optimizer.param_groups[0]["lr"]))
        param.grad = torch.ones_like(param)
        optimizer.step()
        scheduler.step()
    return lrs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    cases = []
    for schedule, warmup, total, lr, min_lr in CASES:
        lrs = run_schedule(schedule, warmup, total, lr, min_lr)
        if min_lr == 0.0 and schedule in ("cosine", "linear"):
            plain = run_schedule(schedule + "0", warmup, total, lr, min_lr)
            if any(abs(a - b) > 1e-15 * lr for a, b in zip(lrs, plain)):
                raise RuntimeError("%s with min_lr 0 differs from its plain transformers schedule" % schedule)
        cases.append({"name": "%s.w%d.t%d.lr%g.min%g" % (schedule, warmup, total, lr, min_lr),
                      "schedule": schedule, "lr": lr, "min_lr": min_lr, "warmup": warmup,
                      "total_steps": total, "lrs": lrs})
    with open(os.path.join(args.out, "schedules.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
