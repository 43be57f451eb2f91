"""transformers and TRL as the references for worker/data/instruction_*.cc and packing.cc.

Writes under OUT (= --out):
  tokenizer/tokenizer.json, tokenizer/tokenizer_config.json
      the real Qwen3 tokenizer and chat template (scripts/qwen3_tokenizer.sh)
  prompt_completion.jsonl   TRL-format examples {"prompt", "completion"}
  prompt_completion.json    [{"line", "ids", "response"}] per example, from
      transformers' AutoTokenizer on tokenizer/: ids =
      encode(prompt, add_special_tokens=False) + encode(completion, ...) +
      [eos_token_id]; response 0 for the prompt's ids, 1 for the rest
  chat.jsonl   conversations {"messages": [{"role", "content"}]}
  chat.json    [{"line", "text", "ids", "response"}] per conversation: text =
      apply_chat_template(messages, tokenize=False), ids = its encoding
      without special tokens (checked equal to apply_chat_template's own
      tokenize=True ids), response 1 for the tokens whose characters lie in
      an assistant span: from the end of apply_chat_template(messages[:i],
      add_generation_prompt=True) through the "<|im_end|>" after message i's
      content (Note [Response spans] in worker/data/chat_template.h)
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


CHAT = [
    [{"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "Paris."}],
    [{"role": "system", "content": "You answer in one word."},
     {"role": "user", "content": "Colour of the sky?"},
     {"role": "assistant", "content": "Blue."},
     {"role": "user", "content": "And grass?"},
     {"role": "assistant", "content": "Green."}],
    [{"role": "user", "content": "\u00c9t\u00e9 en chinois ?\n"},
     {"role": "assistant", "content": "\u590f\u5929 \U0001F31E  \n"}],
]
IM_END = "<|im_end|>"


def assistant_spans(tok, messages, text):
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = tok.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        if not text.startswith(prefix):
            raise RuntimeError("the rendering of messages[:%d] is not a prefix" % i)
        content_end = text.index(m["content"].strip(), len(prefix)) + len(m["content"].strip())
        spans.append((len(prefix), text.index(IM_END, content_end) + len(IM_END)))
    return spans


def write_chat(out, tok):
    lines, golden = [], []
    for messages in CHAT:
        lines.append(json.dumps({"messages": messages}))
        text = tok.apply_chat_template(messages, tokenize=False)
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        templated = tok.apply_chat_template(messages, tokenize=True)
        if not isinstance(templated, list):  # transformers 5 returns a BatchEncoding
            templated = templated["input_ids"]
        if enc["input_ids"] != templated:
            raise RuntimeError("apply_chat_template(tokenize=True) differs from encoding its text")
        spans = assistant_spans(tok, messages, text)
        response = [int(any(b <= s and e <= end for b, end in spans)) for s, e in enc["offset_mapping"]]
        golden.append({"line": len(lines), "text": text, "ids": enc["input_ids"], "response": response})
    with open(os.path.join(out, "chat.jsonl"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "chat.json"), "w") as f:
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
    write_chat(args.out, tok)
    write_bfd(args.out)


if __name__ == "__main__":
    main()
