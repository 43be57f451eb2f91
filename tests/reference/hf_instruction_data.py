"""transformers and TRL as the references for worker/data/instruction_*.cc and packing.cc.

Writes under OUT (= --out):
  tokenizer/tokenizer.json, tokenizer/tokenizer_config.json
      the real Qwen3 tokenizer and chat template (scripts/qwen3_tokenizer.sh)
  prompt_completion.jsonl   TRL-format examples {"prompt", "completion"}
  prompt_completion.json    [{"line", "ids", "response"}] per example, from
      transformers' AutoTokenizer on tokenizer/: ids =
      encode(prompt, add_special_tokens=False) + encode(completion, ...) +
      [eos_token_id]; response 0 for the prompt's ids, 1 for the rest
  bfd.json   [{"name", "capacity", "sizes", "rows"}]: the rows (item indices
      in placement order) of trl.pack_dataset(strategy="bfd") on sequences
      of those sizes, packed into rows of `capacity`

Usage: python hf_instruction_data.py --out DIR   (prints nothing unless it fails)
"""

import argparse
import json
import os
import random
import subprocess

os.environ["TOKENIZERS_PARALLELISM"] = "false"

import datasets  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402
from trl import pack_dataset  # noqa: E402

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# Plain text, Unicode, an empty prompt, whitespace at the joins, and special
# tokens written as text (matched as tokens by both encoders).
PROMPT_COMPLETION = [
    {"prompt": "What is the capital of France?", "completion": " Paris."},
    {"prompt": "", "completion": "An empty prompt still trains."},
    {"prompt": "Translate: \u00e9t\u00e9 \u2192 summer\n", "completion": "\u590f\u5929 \U0001F31E\n\n"},
    {"prompt": "  leading and trailing  ", "completion": "  spaces  "},
    {"prompt": "Say <|im_end|> please", "completion": "<|im_start|>ok<|im_end|>"},
    {"prompt": "Count:", "completion": " 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20"},
]


def write_prompt_completion(out, tok):
    lines, golden = [], []
    for i, ex in enumerate(PROMPT_COMPLETION):
        if i == 3:
            lines.append("  ")  # blank lines are skipped; numbering goes on
        lines.append(json.dumps(ex, ensure_ascii=(i % 2 == 0)))
        prompt = tok.encode(ex["prompt"], add_special_tokens=False)
        completion = tok.encode(ex["completion"], add_special_tokens=False) + [tok.eos_token_id]
        golden.append({"line": len(lines), "ids": prompt + completion,
                       "response": [0] * len(prompt) + [1] * len(completion)})
    with open(os.path.join(out, "prompt_completion.jsonl"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "prompt_completion.json"), "w") as f:
        json.dump(golden, f)


def trl_bfd_rows(sizes, capacity):
    # Each sequence's tokens are its index, so the packed rows name the items.
    data = Dataset.from_dict({"input_ids": [[i] * s for i, s in enumerate(sizes)]})
    packed = pack_dataset(data, capacity, strategy="bfd", map_kwargs={"batch_size": len(sizes)})
    rows = []
    for ids, lengths in zip(packed["input_ids"], packed["seq_lengths"]):
        row, at = [], 0
        for n in lengths:
            row.append(ids[at])
            at += n
        rows.append(row)
    return rows


def write_bfd(out):
    rng = random.Random(15)
    cases = [
        ("by_hand", 6, [3, 5, 2, 4, 1]),
        ("ties", 3, [2, 1, 2, 1, 1, 2]),
        ("uniform_64", 64, [rng.randint(1, 64) for _ in range(200)]),
        ("few_sizes_256", 256, [rng.choice([1, 17, 64, 100, 128, 200, 255, 256]) for _ in range(500)]),
        ("short_512", 512, [rng.randint(1, 40) for _ in range(300)]),
    ]
    with open(os.path.join(out, "bfd.json"), "w") as f:
        json.dump([{"name": name, "capacity": capacity, "sizes": sizes,
                    "rows": trl_bfd_rows(sizes, capacity)} for name, capacity, sizes in cases], f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    datasets.disable_progress_bars()
    tok_dir = os.path.join(args.out, "tokenizer")
    subprocess.run(["bash", os.path.join(SRC, "scripts/qwen3_tokenizer.sh"), tok_dir],
                   check=True, stdout=subprocess.DEVNULL)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    if tok.eos_token_id is None:
        raise RuntimeError("the Qwen3 tokenizer has no EOS token")
    write_prompt_completion(args.out, tok)
    write_bfd(args.out)


if __name__ == "__main__":
    main()
