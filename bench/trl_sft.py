#!/usr/bin/env python3
"""The other side of chat_sft_bench.sh: TRL's SFTTrainer (what a user would
pick instead) fine-tuning on prompt/completion data with the completion-only
loss, from the same config.json, tokenizer and JSONL file, on the CPU.

Fresh random init from the config (as `distill-worker train` with `init:`),
AdamW at the same lr, no warmup, fp32, one epoch over the file at batch B,
max_length L (longer examples truncated), padding per batch (TRL's default:
packing is off unless a padding-free attention kernel is there, and on the
CPU there is none). Prints one JSON line: examples, seconds, examples_per_s,
real (non-padding) tokens per second.

Usage: .venv/bin/python trl_sft.py --config CONFIG.json --tokenizer DIR --data FILE.jsonl
         --seq-len L --batch B --threads T
"""
import argparse
import json
import os
import tempfile
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers
    import trl

    tok = transformers.AutoTokenizer.from_pretrained(args.tokenizer)
    config = transformers.AutoConfig.from_pretrained(args.config)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    data = datasets.load_dataset("json", data_files=args.data, split="train")
    with tempfile.TemporaryDirectory() as out:
        sft = trl.SFTConfig(output_dir=out, per_device_train_batch_size=args.batch, num_train_epochs=1,
                            learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0,
                            max_length=args.seq_len + 1, packing=False, completion_only_loss=True,
                            logging_steps=1000, save_strategy="no", report_to=[], use_cpu=True,
                            dataloader_num_workers=0, seed=1, bf16=False, fp16=False)
        trainer = trl.SFTTrainer(model=model, args=sft, train_dataset=data, processing_class=tok)
        real = sum(min(len(x), args.seq_len + 1) - 1 for x in trainer.train_dataset["input_ids"])
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    print(json.dumps({"impl": "trl", "examples": len(data), "seconds": seconds,
                      "examples_per_s": len(data) / seconds, "real_tokens_per_s": real / seconds}))


if __name__ == "__main__":
    main()
