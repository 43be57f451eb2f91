#!/usr/bin/env python3
"""The tables at the end of scripts/demo.sh (standard library only).

usage: demo_tables.py TEACHER KD CE BEFORE AFTER GENRE
TEACHER, KD, CE: `distill-worker eval` JSON lines of the teacher, the
distilled student and the student without KD on the same val tokens (the
students' with --teacher: kl, top1_agreement); BEFORE, AFTER: the teacher
without and with its LoRA adapter on the held-out genre's val split.
Reads the jobs' outputs under var/demo.
"""
import json
import os
import struct
import sys

DEMO = "var/demo"


def mean_tokens_per_s(job):
    """Mean training tokens/s of a job's metrics.jsonl, the first report
    (start-up) left out when there are more."""
    rows = [json.loads(line) for line in open(os.path.join(DEMO, job, "metrics.jsonl"))
            if line.strip()]
    tps = [r["tokens_per_s"] for r in rows if r.get("event") == "train" and r.get("tokens_per_s")]
    if len(tps) > 1:
        tps = tps[1:]
    return sum(tps) / len(tps) if tps else float("nan")


def parameters(path):
    """Element count of a safetensors file, from its header."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for d in entry["shape"]:
            count *= d
        total += count
    return total


def print_table(header, rows):
    table = [header] + rows
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("  " + "  ".join(c.ljust(w) if j == 0 else c.rjust(w)
                               for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))


def distill_table(teacher, kd, ce):
    def row(name, job, ev, is_teacher=False):
        weights = os.path.join(DEMO, job, "model", "model.safetensors")
        return [name,
                f"{ev['ppl']:.3f}",
                "0" if is_teacher else f"{ev['kl']:.4f}",
                "1" if is_teacher else f"{ev['top1_agreement']:.3f}",
                f"{parameters(weights) / 1e6:.2f}M",
                f"{os.path.getsize(weights) / 1e6:.2f}",
                f"{mean_tokens_per_s(job):,.0f}"]
    print(f"Distillation, on the first {kd.get('tokens', 0):,} tokens of Brown val "
          "(byte level; KL and agreement against the teacher at T = 1):")
    print()
    print_table(["model", "val ppl", "KL(teacher||model)", "top-1 agreement", "params", "MB",
                 "train tok/s"],
                [row("student, KD + features", "distill", kd),
                 row("student, no KD", "student_ce", ce),
                 row("teacher", "base", teacher, is_teacher=True)])
    gain = (ce["ppl"] - kd["ppl"]) / ce["ppl"] * 100
    verdict = "better" if gain > 0 else "worse"
    print()
    print(f"  KD: val ppl {kd['ppl']:.3f} against {ce['ppl']:.3f} without it "
          f"({abs(gain):.1f}% {verdict}); the KD student's tok/s include the teacher's forward.")


def lora_table(before, after, genre):
    lora = os.path.join(DEMO, "lora", "adapter", "adapter_model.safetensors")
    base = os.path.join(DEMO, "base", "model", "model.safetensors")
    print(f"LoRA on the held-out genre ({genre}), its val split:")
    print()
    print_table(["model", "val ppl", "eval loss", "train tok/s", "trainable params", "saved MB"],
                [["teacher", f"{before['ppl']:.3f}", f"{before['loss']:.4f}",
                  f"{mean_tokens_per_s('base'):,.0f}", f"{parameters(base):,}",
                  f"{os.path.getsize(base) / 1e6:.2f}"],
                 ["teacher + LoRA", f"{after['ppl']:.3f}", f"{after['loss']:.4f}",
                  f"{mean_tokens_per_s('lora'):,.0f}", f"{parameters(lora):,}",
                  f"{os.path.getsize(lora) / 1e6:.3f}"]])
    print()
    text_kb = os.path.getsize(f"data/brown/genre/{genre}/train.txt") / 1e3
    print(f"  The adapter is {parameters(lora) / parameters(base) * 100:.1f}% of the model's "
          f"parameters; the genre's {text_kb:.0f} KB of training text move the ppl little "
          "(examples/brown_lora_holdout.yaml).")


def main(argv):
    if len(argv) != 7:
        sys.exit(__doc__)
    teacher, kd, ce, before, after = (json.loads(a) for a in argv[1:6])
    print()
    distill_table(teacher, kd, ce)
    print()
    lora_table(before, after, argv[6])
    print()


if __name__ == "__main__":
    main(sys.argv)
