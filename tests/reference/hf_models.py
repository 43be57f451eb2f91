#!/usr/bin/env python3
"""Tiny random Llama-family models made by transformers itself, with goldens.

For each case: a model built from its transformers config class with a fixed
seed and saved by save_pretrained (safetensors, float32) into OUT/<case>, and
OUT/<case>/golden.safetensors with
  input_ids   [B, T] int64
  logits      [B, T, V] float32   transformers' forward
  loss        []                  transformers' loss with labels = input_ids
                                  (it shifts them itself)
  grad.<name> the gradient of every parameter after loss.backward()
  hidden_states.<i>  [B, T, D]    transformers' output_hidden_states: 0 the
                                  embeddings, i + 1 decoder layer i's output,
                                  except the last entry, which has the final
                                  norm applied
Every case is written twice: OUT/<case> with the config.json transformers 5
writes (rope_parameters), and OUT/<case>_v4 with the same weights and the
config.json rewritten as transformers 4.x writes it (rope_theta and
rope_scaling at the top level, no layer_types). Before writing, the script
checks that transformers reads the 4.x variant back to the same logits, so
both files mean the same model to transformers.

Cases cover plain RoPE, every supported rope scaling (linear, dynamic past
max_position_embeddings, yarn, llama3) and the sliding windows of Mistral and
Qwen2/Qwen3, each with a sequence long enough for the feature to change the
result (the script checks that it does).

Usage: python hf_models.py --out DIR. Prints nothing on success; exits
non-zero on failure.
"""

import argparse
import json
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

BATCH = 2

# Shared tiny sizes: head_dim 16 gives 8 rotary frequencies, enough for every
# branch of llama3 and yarn to be taken by some of them.
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
)


def llama(rope=None, mpe=64, **extra):
    kw = dict(BASE, max_position_embeddings=mpe, **extra)
    if rope is not None:
        kw["rope_parameters"] = rope
    return transformers.LlamaConfig(**kw)


# name -> (config factory, sequence length T, the same config without the
# feature under test, or None: used to check that the feature matters at T)
CASES = {
    "llama_plain": (lambda: llama(), 20, None),
    "llama_linear": (
        lambda: llama({"rope_type": "linear", "factor": 2.5, "rope_theta": 10000.0}),
        20,
        lambda: llama(),
    ),
    # dynamic NTK changes the base only for T > max_position_embeddings.
    "llama_dynamic": (
        lambda: llama({"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}, mpe=16),
        24,
        lambda: llama(mpe=16),
    ),
    # yarn ramp over frequency dims 0..4 (beta_fast 32, beta_slow 1 with
    # original_max_position_embeddings 256), cos/sin scaled by 0.1 ln(4) + 1.
    "llama_yarn": (
        lambda: llama(
            {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256,
             "rope_theta": 10000.0},
            mpe=1024,
        ),
        20,
        lambda: llama(mpe=1024),
    ),
    # yarn with every optional field: attention factor from mscale /
    # mscale_all_dim, own betas, untruncated correction range.
    "llama_yarn_mscale": (
        lambda: llama(
            {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 128,
             "rope_theta": 500.0, "beta_fast": 16.0, "beta_slow": 2.0, "mscale": 1.0,
             "mscale_all_dim": 0.5, "truncate": False},
            mpe=1024,
        ),
        20,
        lambda: llama({"rope_type": "default", "rope_theta": 500.0}, mpe=1024),
    ),
    # llama3 with original context 64: wavelengths 2 pi 10^(i/2) fall in the
    # high (i = 0), medium (i = 1, 2) and low (i >= 3) bands.
    "llama3": (
        lambda: llama(
            {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
             "high_freq_factor": 4.0, "original_max_position_embeddings": 64,
             "rope_theta": 10000.0},
            mpe=512,
        ),
        20,
        lambda: llama(mpe=512),
    ),
    "llama_tied_bias": (
        lambda: llama(tie_word_embeddings=True, attention_bias=True, mlp_bias=True), 12, None),
    "qwen2": (
        lambda: transformers.Qwen2Config(**dict(BASE, max_position_embeddings=64)), 12, None),
    "qwen3": (
        lambda: transformers.Qwen3Config(**dict(BASE, max_position_embeddings=64)), 12, None),
    "mistral_window": (
        lambda: transformers.MistralConfig(
            **dict(BASE, max_position_embeddings=64, sliding_window=5)),
        16,
        lambda: transformers.MistralConfig(
            **dict(BASE, max_position_embeddings=64, sliding_window=None)),
    ),
    # Layers >= max_window_layers (1 and 2) slide, layer 0 attends fully.
    "qwen2_window": (
        lambda: transformers.Qwen2Config(**dict(
            BASE, max_position_embeddings=64, use_sliding_window=True, sliding_window=4,
            max_window_layers=1)),
        16,
        lambda: transformers.Qwen2Config(**dict(BASE, max_position_embeddings=64)),
    ),
    "qwen3_window": (
        lambda: transformers.Qwen3Config(**dict(
            BASE, max_position_embeddings=64, use_sliding_window=True, sliding_window=6,
            max_window_layers=2)),
        16,
        lambda: transformers.Qwen3Config(**dict(BASE, max_position_embeddings=64)),
    ),
    # layer_types as transformers 5 writes it, not derivable from
    # max_window_layers: layers 0 and 2 slide.
    "qwen3_layer_types": (
        lambda: transformers.Qwen3Config(**dict(
            BASE, max_position_embeddings=64, use_sliding_window=True, sliding_window=3,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"])),
        16,
        lambda: transformers.Qwen3Config(**dict(BASE, max_position_embeddings=64)),
    ),
}


def build(config, seed):
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.float().eval()


def run(model, ids):
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, labels=ids, output_hidden_states=True)
    out.loss.backward()
    grads = {
        "grad." + n: p.grad.detach().clone() for n, p in model.named_parameters()
    }
    hidden = {"hidden_states.%d" % i: h.detach().clone() for i, h in enumerate(out.hidden_states)}
    return out.logits.detach().clone(), out.loss.detach().clone(), grads, hidden


def v4_config(config_path, out_path):
    """config.json as transformers 4.x writes it: rope_theta and rope_scaling."""
    with open(config_path) as f:
        c = json.load(f)
    rope = dict(c.pop("rope_parameters", None) or {})
    c["rope_theta"] = rope.pop("rope_theta", 10000.0)
    c["rope_scaling"] = None if rope.get("rope_type", "default") == "default" else rope
    # 4.x derives the layer types from use_sliding_window / max_window_layers
    # (4.53 and later also read layer_types: kept where it says more).
    types = c.get("layer_types")
    if types is not None:
        derived = [
            "sliding_attention"
            if c.get("use_sliding_window") and c.get("sliding_window") is not None
            and i >= c.get("max_window_layers", 28) else "full_attention"
            for i in range(c["num_hidden_layers"])
        ]
        if types == derived:
            del c["layer_types"]
    c["transformers_version"] = "4.51.3"
    if "dtype" in c:
        c["torch_dtype"] = c.pop("dtype")
    with open(out_path, "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)


def reload_logits(path, ids):
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits


def make_case(out, name, factory, seq, without, seed):
    config = factory()
    model = build(config, seed)
    gen = torch.Generator().manual_seed(seed + 1000)
    ids = torch.randint(0, config.vocab_size, (BATCH, seq), generator=gen)
    logits, loss, grads, hidden = run(model, ids)

    if without is not None:
        # The feature must change the logits at this length, or the case
        # would not test it.
        other = build(without(), seed)
        other.load_state_dict(model.state_dict())
        with torch.no_grad():
            plain = other(input_ids=ids).logits
        if torch.allclose(plain, logits, rtol=1e-4, atol=1e-4):
            raise SystemExit(f"{name}: the feature does not change the logits at T={seq}")

    path = os.path.join(out, name)
    model.save_pretrained(path, safe_serialization=True)
    golden = {"input_ids": ids, "logits": logits, "loss": loss, **grads, **hidden}
    save_file({k: v.contiguous() for k, v in golden.items()},
              os.path.join(path, "golden.safetensors"))

    path4 = path + "_v4"
    shutil.copytree(path, path4)
    v4_config(os.path.join(path, "config.json"), os.path.join(path4, "config.json"))
    for p in (path, path4):
        again = reload_logits(p, ids)
        if not torch.equal(again, logits):
            diff = (again - logits).abs().max().item()
            raise SystemExit(f"{p}: transformers reads back different logits ({diff})")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if os.path.isdir(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    for i, (name, (factory, seq, without)) in enumerate(sorted(CASES.items())):
        make_case(args.out, name, factory, seq, without, seed=i)
    return 0


if __name__ == "__main__":
    sys.exit(main())
