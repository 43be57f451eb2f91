#!/usr/bin/env python3
"""Packed rows against transformers: each example run on its own.

For each case (a tiny random Llama, Qwen3 and windowed Qwen3 made by
transformers with a fixed seed, saved by save_pretrained into OUT/<case>),
OUT/<case>/golden.safetensors holds
  example.<e>         [1, n_e] int64     example e's token ids
  logits.<e>          [1, n_e - 1, V]    transformers' logits for example e run
                                         alone, at its first n_e - 1 tokens
                                         (the slots it fills in a packed row)
  packed_ids          [B, T] int64       the examples packed as Note [Packed
  packed_targets      [B, T] int64       rows] (worker/data/sequence_data.h)
  packed_positions    [B, T] int64       says: example e's n_e - 1 slots hold
                                         inputs e[0..n_e-1), targets e[1..n_e),
                                         positions 0..n_e-2; padding slots hold
                                         input 0, target -100, positions 0, 1...
  example_row.<e>, example_start.<e>  []  where example e's slots begin
  packed_logits       [B, T, V]          transformers' forward of the packed
                                         rows with position_ids (it finds the
                                         examples where positions restart and
                                         masks across them: masking_utils'
                                         find_packed_sequence_indices, which
                                         needs use_cache=False)
Before writing, the script checks that transformers' packed forward equals
its per-example forwards on every example slot (so the two goldens agree on
what packing means), and that packing without the positions would change the
logits (so the case tests the mask).

Usage: python hf_packed.py --out DIR. Prints nothing on success; exits
non-zero on failure.
"""

import argparse
import os
import shutil
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
import transformers  # noqa: E402

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
warnings.filterwarnings("ignore")

IGNORE = -100  # kIgnoreTarget
ROW_LEN = 32
# Example lengths (tokens) per row: row 0 holds three examples and 8 padding
# slots, row 1 two examples and 8 padding slots (n tokens fill n - 1 slots).
ROWS = [[8, 13, 6], [16, 10]]

BASE = dict(
    vocab_size=48,
    hidden_size=32,
    intermediate_size=40,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    initializer_range=0.2,  # large enough that attention is not uniform
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    max_position_embeddings=64,
)

CASES = {
    "llama": lambda: transformers.LlamaConfig(**BASE),
    "qwen3": lambda: transformers.Qwen3Config(**BASE),
    # Layers 1 and 2 slide with a window of 4, shorter than every example, so
    # the window matters inside the examples too.
    "qwen3_window": lambda: transformers.Qwen3Config(**dict(
        BASE, use_sliding_window=True, sliding_window=4, max_window_layers=1)),
}


def build(config, seed):
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.float().eval()


def pack(examples):
    """The rows of Note [Packed rows]; returns ids, targets, positions, starts."""
    ids = torch.zeros(len(ROWS), ROW_LEN, dtype=torch.long)
    targets = torch.full((len(ROWS), ROW_LEN), IGNORE, dtype=torch.long)
    positions = torch.zeros(len(ROWS), ROW_LEN, dtype=torch.long)
    starts = []
    e = 0
    for row, lengths in enumerate(ROWS):
        slot = 0
        for n in lengths:
            tokens = examples[e][0]
            ids[row, slot:slot + n - 1] = tokens[:-1]
            targets[row, slot:slot + n - 1] = tokens[1:]
            positions[row, slot:slot + n - 1] = torch.arange(n - 1)
            starts.append((row, slot))
            slot += n - 1
            e += 1
        if slot > ROW_LEN:
            raise SystemExit(f"row {row}: {slot} slots > {ROW_LEN}")
        positions[row, slot:] = torch.arange(ROW_LEN - slot)  # padding: a segment of its own
    return ids, targets, positions, starts


def make_case(out, name, factory, seed):
    config = factory()
    model = build(config, seed)
    gen = torch.Generator().manual_seed(seed + 1000)
    lengths = [n for row in ROWS for n in row]
    examples = [torch.randint(0, config.vocab_size, (1, n), generator=gen) for n in lengths]
    ids, targets, positions, starts = pack(examples)
    golden = {"packed_ids": ids, "packed_targets": targets, "packed_positions": positions}
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=positions, use_cache=False).logits
        unmasked = model(input_ids=ids, use_cache=False).logits
        for e, (example, (row, start)) in enumerate(zip(examples, starts)):
            n = example.size(1)
            alone = model(input_ids=example).logits[:, :n - 1]
            golden[f"example.{e}"] = example
            golden[f"logits.{e}"] = alone
            golden[f"example_row.{e}"] = torch.tensor(row)
            golden[f"example_start.{e}"] = torch.tensor(start)
            slots = packed[row:row + 1, start:start + n - 1]
            err = ((slots - alone).norm() / alone.norm()).item()
            if err > 1e-5:
                raise SystemExit(f"{name}: transformers' packed example {e} differs from "
                                 f"the example alone ({err:.2e})")
    if torch.allclose(unmasked, packed, rtol=1e-3, atol=1e-3):
        raise SystemExit(f"{name}: the positions do not change the packed logits")
    golden["packed_logits"] = packed

    path = os.path.join(out, name)
    model.save_pretrained(path, safe_serialization=True)
    save_file({k: v.contiguous() for k, v in golden.items()},
              os.path.join(path, "golden.safetensors"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if os.path.isdir(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    for i, (name, factory) in enumerate(sorted(CASES.items())):
        make_case(args.out, name, factory, seed=100 + i)
    return 0


if __name__ == "__main__":
    sys.exit(main())
