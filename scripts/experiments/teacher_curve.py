#!/usr/bin/env python3
"""The teacher's curve for docs/experiments.md: train loss and val ppl of
examples/brown_bpe_teacher.yaml (steps 1-1000) and teacher_tail.yaml (1001-1300)
as teacher_curve.dat, teacher_curve.md (the eval table) and, through gnuplot,
teacher_curve.png in OUT_DIR. Standard library only.

usage: teacher_curve.py OUT_DIR
"""
import json
import math
import os
import subprocess
import sys

STAGES = [("var/brown_bpe/teacher/metrics.jsonl", 0), ("var/brown_bpe/teacher_tail/metrics.jsonl", 1000)]


def main(out):
    train, evals = [], []
    for path, offset in STAGES:
        for line in open(path):
            r = json.loads(line)
            if r.get("event") == "train":
                train.append((offset + r["step"], r["loss"], r["lr"], r["tokens_per_s"]))
            elif r.get("event") == "eval":
                evals.append((offset + r["step"], r["loss"], r["ppl"]))
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "teacher_curve.dat"), "w") as f:
        f.write("# step train_loss lr tokens_per_s\n")
        f.writelines(f"{s} {l:.6f} {lr:.6g} {t:.1f}\n" for s, l, lr, t in train)
        f.write("\n\n# step val_loss val_ppl\n")
        f.writelines(f"{s} {l:.6f} {p:.4f}\n" for s, l, p in evals)
    rows = ["| step | val loss | val ppl | change in ppl |", "|---:|---:|---:|---:|"]
    prev = None
    for s, l, p in evals:
        change = "" if prev is None else f"{(p - prev) / prev * 100:+.1f}%"
        rows.append(f"| {s} | {l:.4f} | {p:.1f} | {change} |")
        prev = p
    with open(os.path.join(out, "teacher_curve.md"), "w") as f:
        f.write("\n".join(rows) + "\n")
    script = (
        "set terminal pngcairo noenhanced size 960,540\nset output 'teacher_curve.png'\n"
        "set grid\nset xlabel 'step'\nset ylabel 'loss (nats/token)'\n"
        "set title 'Brown BPE teacher (320x5, 7.51M): train loss and val loss'\n"
        "set arrow from 1000, graph 0 to 1000, graph 1 nohead dt 2\n"
        "plot 'teacher_curve.dat' index 0 using 1:2 with lines title 'train loss', "
        "'' index 1 using 1:2 with linespoints title 'val loss'\n")
    with open(os.path.join(out, "teacher_curve.gp"), "w") as f:
        f.write(script)
    subprocess.run(["gnuplot", "teacher_curve.gp"], cwd=out, check=True)
    print(f"teacher: val ppl {evals[-1][2]:.2f} at step {evals[-1][0]} "
          f"(loss {evals[-1][1]:.4f}, {math.exp(evals[-1][1]):.2f})")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
