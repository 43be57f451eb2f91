#!/usr/bin/env python3
"""Compact Markdown tables for docs/experiments.md from `distillctl report`'s
files (docs/experiments/{a,b,c}): the same numbers, fewer columns, and the
KD-vs-baseline ratio paired by seed; (c)'s saved sizes from the runs' output
directories under var/experiments. Run from the repository root. Standard
library only.

usage: tables.py DOCS_EXPERIMENTS_DIR    (prints the tables)
"""
import csv
import glob
import json
import os
import sys

FEATURE_NAMES = {  # distill.features value -> a name (scripts/experiments/b_features.yaml)
    (): "none",
    ((1, 4, "mse"),): "last, mse",
    ((1, 4, "cosine"),): "last, cosine",
    ((0, 2, "mse"),): "middle, mse",
    ((0, 2, "cosine"),): "middle, cosine",
    ((0, 2, "mse"), (1, 4, "mse")): "uniform, mse",
    ((0, 2, "cosine"), (1, 4, "cosine")): "uniform, cosine",
}


def read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def num(x, digits):
    return f"{float(x):.{digits}f}" if x not in ("", None) else ""


def interval(g, metric, digits):
    mean = g.get(f"{metric}_mean", "")
    if mean == "":
        return ""
    low, high = g.get(f"{metric}_ci_low", ""), g.get(f"{metric}_ci_high", "")
    cell = num(mean, digits)
    if low != "":
        cell += f" [{num(low, digits)}, {num(high, digits)}]"
    return cell


def feature_name(value):
    if value == "":
        return "(cross-entropy only)"
    items = json.loads(value)
    key = tuple((f["student_layer"], f["teacher_layer"], f["loss"].lower()) for f in items)
    return FEATURE_NAMES.get(key, value)


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---"
                                                          for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}  # t(0.975, dof)


def matches(run, group, keys):
    return run["job"] == group["job"] and all(run.get(k, "") == group.get(k, "") for k in keys)


def paired(runs, in_group, in_base):
    """Per seed, the ppl of the group's run over the same seed's baseline run,
    - 1 (same init and batches): mean and 95% interval in %. `runs` are
    children.csv rows; in_group and in_base pick the two sets."""
    base = {r["train.seed"]: float(r["ppl"]) for r in runs if in_base(r) and r["ppl"]}
    diffs = [(float(r["ppl"]) / base[r["train.seed"]] - 1) * 100 for r in runs
             if in_group(r) and r["ppl"] and r["train.seed"] in base]
    if not diffs:
        return ""
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return f"{mean:+.1f}%"
    sd = (sum((x - mean) ** 2 for x in diffs) / (n - 1)) ** 0.5
    half = T975[n - 1] * sd / n ** 0.5
    return f"{mean:+.1f}% [{mean - half:+.1f}, {mean + half:+.1f}]"


def question_a(d):
    groups = read(os.path.join(d, "a", "summary.csv"))
    runs = read(os.path.join(d, "a", "children.csv"))
    keys = ["distill.temperature", "distill.alpha"]
    rows = []
    for g in groups:
        kd = g["job"] != "ce-only"
        rows.append([g["distill.temperature"] or "-", g["distill.alpha"] or "0 (CE only)",
                     g["runs"], interval(g, "ppl", 1),
                     paired(runs, lambda r, g=g: matches(r, g, keys),
                            lambda r: r["job"] == "ce-only") if kd else "", interval(g, "kl", 3), interval(g, "top1_agreement", 3)])
    return table(["T", "alpha", "seeds", "val ppl [95% CI]", "ppl vs CE, paired by seed [95% CI]",
                  "KL, cached (lower bound)", "top-1 agreement"], rows)


def question_b(d):
    groups = read(os.path.join(d, "b", "summary.csv"))
    runs = read(os.path.join(d, "b", "children.csv"))
    keys = ["distill.features"]
    is_none = lambda r: r["job"] != "ce-only" and r.get("distill.features") == "[]"  # noqa: E731
    rows = []
    for g in groups:
        kd = g["job"] != "ce-only"
        rows.append([feature_name(g.get("distill.features", "")), g["runs"],
                     interval(g, "ppl", 1),
                     paired(runs, lambda r, g=g: matches(r, g, keys), is_none)
                     if kd and g.get("distill.features") != "[]" else "",
                     paired(runs, lambda r, g=g: matches(r, g, keys),
                            lambda r: r["job"] == "ce-only") if kd else "",
                     interval(g, "kl", 3), interval(g, "top1_agreement", 3)])
    return table(["features", "seeds", "val ppl [95% CI]", "vs none, paired [95% CI]",
                  "vs CE, paired [95% CI]", "KL, cached (lower bound)", "top-1 agreement"], rows)



def saved_bytes(pattern):
    """Mean size in bytes of the directories matching `pattern` (the runs'
    adapters or models under var/experiments), or None."""
    dirs = glob.glob(pattern)
    sizes = [sum(os.path.getsize(os.path.join(x, f)) for f in os.listdir(x)) for x in dirs]
    return sum(sizes) / len(sizes) if sizes else None


def question_c(d):
    groups = read(os.path.join(d, "c", "summary.csv"))
    rows = []
    for g in groups:
        if g["job"] == "c-full":
            name, saved = "full", saved_bytes("var/experiments/c_full/*/model")
        else:
            name = f"lora r{g['lora.rank']}"
            saved = saved_bytes(f"var/experiments/c_lora/*rank={g['lora.rank']},*/adapter")
        rows.append([name, g["runs"], interval(g, "ppl", 1), interval(g, "tokens_per_s_mean", 0),
                     num(float(g["peak_memory_bytes_mean"]) / 2**20, 0),
                     num(g["trainable_params_mean"], 0),
                     num(saved / 1e6, 3) if saved else ""])
    return table(["method", "seeds", "held-out val ppl [95% CI]", "train tok/s [95% CI]",
                  "peak RSS MiB", "trainable params", "saved MB"], rows)


def main(d):
    for name, make in (("a", question_a), ("b", question_b)):
        if os.path.exists(os.path.join(d, name, "summary.csv")):
            print(f"### ({name})\n\n{make(d)}\n")
    if os.path.exists(os.path.join(d, "c", "summary.csv")):
        print(f"### (c)\n\n{question_c(d)}\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
