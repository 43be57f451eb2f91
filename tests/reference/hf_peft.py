#!/usr/bin/env python3
"""PEFT itself as the reference for our LoRA adapters.

Writes, under --out:
  base/               a tiny LlamaForCausalLM (transformers, fp32, save_pretrained)
  tokens.bin          raw little-endian uint32 token ids for `distill-worker eval`
  NAME/adapter/       a peft adapter (get_peft_model + save_pretrained) with
                      random A *and* B (peft inits B to zero, which would hide
                      every mistake in B, the scaling or the key names)
  NAME/golden.safetensors
                      input_ids [2, 9], labels-shifted loss and logits of the
                      PeftModel loaded back with PeftModel.from_pretrained
  NAME/eval.json      {"seq_len", "loss", "tokens"}: the PeftModel's mean
                      next-token loss over the windows `distill-worker eval`
                      uses (worker/train/eval.cc: floor((N-1)/L) non-overlapping
                      windows of L inputs starting at i*L, targets shifted by 1)
  NAME/merged/        merge_and_unload() of that PeftModel, save_pretrained
for NAME in rslora (r=4, alpha=6, use_rslora, all seven projections) and plain
(r=3, alpha=5, alpha/r scaling, four projections).

Also usable as a library by tests/integration/peft_test.sh (peft_eval_loss).
Prints nothing on success; exits non-zero on failure.
"""

import argparse
import json
import os
import sys
import warnings

# Quiet on success: no progress bars, no info logging, and not transformers'
# own deprecation notice that peft trips (is_gradient_checkpointing).
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

import numpy as np
import torch
import torch.nn.functional as F

SEED = 1234
EVAL_SEQ_LEN = 16
NUM_TOKENS = 16 * 12 + 5  # 12 windows of 16, and a tail eval must not read
ADAPTERS = {
    "rslora": dict(
        r=4,
        lora_alpha=6,
        use_rslora=True,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    ),
    "plain": dict(r=3, lora_alpha=5, use_rslora=False, target_modules=["q_proj", "v_proj", "up_proj", "down_proj"]),
}


def quiet_transformers():
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        torch_dtype="float32",
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config).float()
    with torch.no_grad():  # larger than HF's 0.02 init so every path matters
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.2)
    return model.eval()


def load_base(base_dir):
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32).eval()


def read_tokens(path):
    return torch.from_numpy(np.fromfile(path, dtype="<u4").astype(np.int64))


def eval_loss(model, tokens, seq_len):
    """Mean next-token cross entropy over worker/train/eval.cc's windows."""
    windows = (tokens.numel() - 1) // seq_len
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(windows):
            chunk = tokens[i * seq_len : i * seq_len + seq_len + 1]
            logits = model(input_ids=chunk[:-1].unsqueeze(0)).logits[0]
            total += F.cross_entropy(logits.double(), chunk[1:], reduction="sum").item()
            count += seq_len
    return {"seq_len": seq_len, "loss": total / count, "tokens": count}


def peft_eval_loss(base_dir, adapter_dir, tokens_path, seq_len):
    from peft import PeftModel

    quiet_transformers()
    model = PeftModel.from_pretrained(load_base(base_dir), adapter_dir).eval()
    return eval_loss(model, read_tokens(tokens_path), seq_len)


def make_adapter(base_dir, name, kw, out, ids):
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.torch import save_file

    d = os.path.join(out, name)
    cfg = LoraConfig(task_type="CAUSAL_LM", lora_dropout=0.05, bias="none", **kw)
    model = get_peft_model(load_base(base_dir), cfg)
    torch.manual_seed(SEED + len(name))
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if ".lora_A." in pname or ".lora_B." in pname:
                p.normal_(0.0, 0.3)
    model.save_pretrained(os.path.join(d, "adapter"))

    # Everything below is computed from the saved files, as a user would load them.
    loaded = PeftModel.from_pretrained(load_base(base_dir), os.path.join(d, "adapter")).eval()
    with torch.no_grad():
        out_ = loaded(input_ids=ids, labels=ids)
    save_file(
        {"input_ids": ids.contiguous(), "logits": out_.logits.float().contiguous(), "loss": out_.loss.reshape(1)},
        os.path.join(d, "golden.safetensors"),
    )
    with open(os.path.join(d, "eval.json"), "w") as f:
        json.dump(eval_loss(loaded, read_tokens(os.path.join(out, "tokens.bin")), EVAL_SEQ_LEN), f)
    loaded.merge_and_unload().save_pretrained(os.path.join(d, "merged"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    quiet_transformers()
    torch.use_deterministic_algorithms(True)
    base_dir = os.path.join(args.out, "base")
    tiny_llama().save_pretrained(base_dir)
    g = torch.Generator().manual_seed(SEED)
    vocab = 64
    torch.randint(0, vocab, (NUM_TOKENS,), generator=g).numpy().astype("<u4").tofile(
        os.path.join(args.out, "tokens.bin")
    )
    ids = torch.randint(0, vocab, (2, 9), generator=g)
    for name, kw in ADAPTERS.items():
        make_adapter(base_dir, name, kw, args.out, ids)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one line, non-zero exit
        print(f"hf_peft.py: {type(e).__name__}: {e}", file=sys.stderr)
        raise
