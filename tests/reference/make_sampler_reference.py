#!/usr/bin/env python3
"""Golden window orders for WindowSampler (worker/data/sampler.h), in pure Python.

A transcription, sharing no code with the C++, of the sampler's algorithm:
- the stream of N tokens holds W = floor((N - 1) / L) windows (offset w * L);
- epoch e visits all W windows in the order of a Fisher-Yates shuffle
  (i from W - 1 down to 1, swap i with j uniform in [0, i]) driven by
  splitmix64 (Note [Portable shuffle] in sampler.cc) seeded with
  mix64(seed) ^ mix64(e + GOLDEN), where mix64 is splitmix64's finaliser and
  GOLDEN = 0x9E3779B97F4A7C15; uniform draws below a bound reject the raw
  values under 2^64 mod bound (no modulo bias);
- windows are dealt globally: micro-batch k of rank r (of `world`, b windows
  each) takes the epoch-ordered stream positions k*b*world + r*b ... + b - 1.

Writes --out/orders.json: {"cases": [{"name", "num_windows", "seq_len",
"seed", "rank", "world", "b", "draws", "windows"}]}: `windows` are the window
indices of `draws` successive Next(b) calls of that rank (offset / seq_len).
Usage: .venv/bin/python make_sampler_reference.py --out DIR
Prints nothing on success; exits non-zero on failure.
"""

import argparse
import json
import os
import sys

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15

# (name, num_windows, seq_len, seed, world, b, draws): every rank of `world`.
CASES = [
    ("w10.seed42.b2", 10, 4, 42, 1, 2, 10),  # two epochs
    ("w10.seed0.b5", 10, 4, 0, 1, 5, 2),
    ("w37.seed1.b1", 37, 4, 1, 1, 1, 111),  # three epochs, one window at a time
    ("w29.seed11.world2.b3", 29, 4, 11, 2, 3, 25),  # steps straddle epochs
    ("w23.seed3.world3.b2", 23, 5, 3, 3, 2, 20),
    ("w1000.seedmax.b7", 1000, 3, MASK, 1, 7, 300),  # largest seed, three epochs
    ("w1.seed5.b3", 1, 2, 5, 1, 3, 2),  # a single window
]


def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


class SplitMix64:
    def __init__(self, state):
        self.state = state & MASK

    def next(self):
        self.state = (self.state + GOLDEN) & MASK
        return mix64(self.state)

    def below(self, bound):
        threshold = (1 << 64) % bound
        while True:
            r = self.next()
            if r >= threshold:
                return r % bound


def epoch_order(num_windows, seed, epoch):
    perm = list(range(num_windows))
    rng = SplitMix64(mix64(seed) ^ mix64((epoch + GOLDEN) & MASK))
    for i in range(num_windows - 1, 0, -1):
        j = rng.below(i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def draw(num_windows, seed, rank, world, b, draws):
    orders = {}
    windows = []
    position = 0
    for _ in range(draws):
        first = position + rank * b
        for p in range(first, first + b):
            epoch = p // num_windows
            if epoch not in orders:
                orders[epoch] = epoch_order(num_windows, seed, epoch)
            windows.append(orders[epoch][p % num_windows])
        position += b * world
    return windows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    cases = []
    for name, num_windows, seq_len, seed, world, b, draws in CASES:
        for rank in range(world):
            windows = draw(num_windows, seed, rank, world, b, draws)
            cases.append({"name": "%s.rank%d" % (name, rank), "num_windows": num_windows, "seq_len": seq_len,
                          "seed": str(seed), "rank": rank, "world": world, "b": b, "draws": draws,
                          "windows": windows})
    # Every epoch is a permutation (the shuffle is a shuffle).
    for e in range(3):
        if sorted(epoch_order(37, 1, e)) != list(range(37)):
            raise RuntimeError("epoch %d is not a permutation" % e)
    with open(os.path.join(args.out, "orders.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
