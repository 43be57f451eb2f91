#!/usr/bin/env python3
"""Golden numbers for the worker tests, from an independent reference.

Writes tiny Hugging Face model directories (config.json + model.safetensors,
as transformers' save_pretrained lays them out) with random weights, and for
each a golden.safetensors: a batch, the logits and loss of the Hugging Face
forward, the gradient of every parameter, and the parameters after one and
two torch.optim.AdamW steps. Also a clip_grad_norm_ case (the learning-rate
schedule's reference is transformers itself: hf_schedule.py). The model math is written out here from Hugging Face's
modeling_llama / modeling_qwen2 / modeling_qwen3 (float64, so the goldens are
the exact answer for the float32 weights); it shares no code with the C++.

Usage: .venv/bin/python make_reference.py --out DIR   (the project venv: pip torch)
Prints nothing unless it fails; exits non-zero on failure.
"""

import argparse
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

BATCH, SEQ = 2, 7
INIT_STD = 0.2  # large enough that logits and grads are not tiny

ADAMW = {
    "lr": 1e-2,
    "betas": [0.9, 0.999],
    "eps": 1e-8,
    # Applied to parameters with 2 or more dims; 1-d ones (norms, biases) get 0.
    "weight_decay": 0.1,
}

# --------------------------------------------------------------------------
# safetensors writer (the format by hand: u64 LE header size, JSON header
# padded with spaces to a multiple of 8, then little-endian raw data).

_DTYPES = {
    torch.float32: ("F32", "<f4"),
    torch.float64: ("F64", "<f8"),
    torch.int64: ("I64", "<i8"),
}


def write_safetensors(path, tensors, metadata=None):
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        tag, np_dtype = _DTYPES[t.dtype]
        data = t.numpy().astype(np_dtype).tobytes()
        header[name] = {
            "dtype": tag,
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# Configs, as transformers' save_pretrained writes config.json (to_diff_dict
# keeps every model-specific key, so e.g. "rope_scaling": null appears).

def llama_config(**kw):
    c = {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 32,
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.46.0",
        "use_cache": True,
        "vocab_size": 50,
    }
    c.update(kw)
    return dict(sorted(c.items()))


def qwen2_config(**kw):
    # Qwen2Config has no attention_bias: q/k/v always carry a bias, o never.
    c = {
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "hidden_act": "silu",
        "hidden_size": 32,
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
        "max_window_layers": 2,
        "model_type": "qwen2",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 128,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "transformers_version": "4.46.0",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": 50,
    }
    c.update(kw)
    return dict(sorted(c.items()))


def qwen3_config(**kw):
    c = {
        "architectures": ["Qwen3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "head_dim": 16,
        "hidden_act": "silu",
        "hidden_size": 32,
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
        "max_window_layers": 2,
        "model_type": "qwen3",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000,  # an integer, as Qwen3's own config.json has it
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.51.0",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": 50,
    }
    c.update(kw)
    return dict(sorted(c.items()))


CONFIGS = {
    # (a) grouped-query attention, untied, no head_dim key (older transformers).
    "llama_gqa": llama_config(),
    # (b) tied embeddings, num_kv_heads == heads, Llama-3 rope_theta.
    "llama_tied": llama_config(num_key_value_heads=4, tie_word_embeddings=True,
                               rope_theta=500000.0, head_dim=8),
    # (c) q/k/v bias, no o bias; tied as Qwen2.5-0.5B.
    "qwen2": qwen2_config(),
    # (d) q/k RMSNorm per head before RoPE; head_dim 16 != hidden / heads.
    "qwen3": qwen3_config(),
    # (e) Llama's attention_bias (q/k/v/o) and mlp_bias.
    "llama_bias": llama_config(attention_bias=True, mlp_bias=True, num_hidden_layers=1),
}


def shape_info(c):
    heads = c["num_attention_heads"]
    kv = c.get("num_key_value_heads", heads)
    hd = c.get("head_dim", c["hidden_size"] // heads)
    mt = c["model_type"]
    if mt == "qwen2":
        qkv_bias, o_bias = True, False
    else:
        qkv_bias = o_bias = bool(c.get("attention_bias", False))
    return {
        "heads": heads, "kv": kv, "hd": hd, "qkv_bias": qkv_bias, "o_bias": o_bias,
        "mlp_bias": bool(c.get("mlp_bias", False)), "qk_norm": mt == "qwen3",
    }


def make_weights(c, gen):
    """Random float32 weights under Hugging Face names."""
    s = shape_info(c)
    d, inter, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    hd, heads, kv = s["hd"], s["heads"], s["kv"]

    def mat(o, i):
        return torch.randn(o, i, generator=gen) * INIT_STD

    def vec(n):  # biases
        return torch.randn(n, generator=gen) * 0.1

    def norm(n):  # norm weights around 1
        return 1.0 + torch.randn(n, generator=gen) * 0.1

    w = {"model.embed_tokens.weight": torch.randn(v, d, generator=gen) * INIT_STD}
    for i in range(c["num_hidden_layers"]):
        p = "model.layers.%d." % i
        w[p + "input_layernorm.weight"] = norm(d)
        for proj, out in (("q", heads * hd), ("k", kv * hd), ("v", kv * hd)):
            w[p + "self_attn.%s_proj.weight" % proj] = mat(out, d)
            if s["qkv_bias"]:
                w[p + "self_attn.%s_proj.bias" % proj] = vec(out)
        w[p + "self_attn.o_proj.weight"] = mat(d, heads * hd)
        if s["o_bias"]:
            w[p + "self_attn.o_proj.bias"] = vec(d)
        if s["qk_norm"]:
            w[p + "self_attn.q_norm.weight"] = norm(hd)
            w[p + "self_attn.k_norm.weight"] = norm(hd)
        w[p + "post_attention_layernorm.weight"] = norm(d)
        for proj, o, i_ in (("gate", inter, d), ("up", inter, d), ("down", d, inter)):
            w[p + "mlp.%s_proj.weight" % proj] = mat(o, i_)
            if s["mlp_bias"]:
                w[p + "mlp.%s_proj.bias" % proj] = vec(o)
    w["model.norm.weight"] = norm(d)
    if not c["tie_word_embeddings"]:
        w["lm_head.weight"] = mat(v, d)
    return w


# --------------------------------------------------------------------------
# The Hugging Face forward, written out.

def rms_norm(x, weight, eps):
    # LlamaRMSNorm: x * rsqrt(mean(x^2) + eps), then * weight.
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def linear(x, w, name):
    y = x @ w[name + ".weight"].t()
    b = w.get(name + ".bias")
    return y + b if b is not None else y


def rope_tables(hd, theta, seq, dtype):
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=dtype) / hd))
    pos = torch.arange(seq, dtype=dtype)
    freqs = torch.outer(pos, inv_freq)  # [T, hd/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [T, hd]
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def attention(x, w, p, c, s, cos, sin):
    b, t, _ = x.shape
    heads, kv, hd = s["heads"], s["kv"], s["hd"]
    eps = c["rms_norm_eps"]
    q = linear(x, w, p + "q_proj").view(b, t, heads, hd)
    k = linear(x, w, p + "k_proj").view(b, t, kv, hd)
    v = linear(x, w, p + "v_proj").view(b, t, kv, hd)
    if s["qk_norm"]:  # Qwen3: RMSNorm over head_dim, per head, before RoPE
        q = rms_norm(q, w[p + "q_norm.weight"], eps)
        k = rms_norm(k, w[p + "k_norm.weight"], eps)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, hd]
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    n_rep = heads // kv  # repeat_kv: kv head j serves q heads j*n_rep .. j*n_rep+n_rep-1
    k = k.repeat_interleave(n_rep, dim=1)
    v = v.repeat_interleave(n_rep, dim=1)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
    causal = torch.ones(t, t, dtype=torch.bool).triu(1)
    scores = scores.masked_fill(causal, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    out = (probs @ v).transpose(1, 2).reshape(b, t, heads * hd)
    return linear(out, w, p + "o_proj")


def forward(w, c, input_ids):
    s = shape_info(c)
    eps = c["rms_norm_eps"]
    emb = w["model.embed_tokens.weight"]
    h = emb[input_ids]
    cos, sin = rope_tables(s["hd"], float(c["rope_theta"]), input_ids.shape[1], emb.dtype)
    for i in range(c["num_hidden_layers"]):
        p = "model.layers.%d." % i
        a = rms_norm(h, w[p + "input_layernorm.weight"], eps)
        h = h + attention(a, w, p + "self_attn.", c, s, cos, sin)
        m = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        gate = linear(m, w, p + "mlp.gate_proj")
        up = linear(m, w, p + "mlp.up_proj")
        h = h + linear(F.silu(gate) * up, w, p + "mlp.down_proj")
    h = rms_norm(h, w["model.norm.weight"], eps)
    head = emb if c["tie_word_embeddings"] else w["lm_head.weight"]
    return h @ head.t()


# --------------------------------------------------------------------------

def adamw_after(params32, grads32, steps):
    """Parameters after `steps` torch.optim.AdamW steps, each with the same grads."""
    ps = {n: t.clone().requires_grad_(True) for n, t in params32.items()}
    for n, p in ps.items():
        p.grad = grads32[n].clone()
    decay = [ps[n] for n in sorted(ps) if ps[n].dim() >= 2]
    no_decay = [ps[n] for n in sorted(ps) if ps[n].dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": ADAMW["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=ADAMW["lr"], betas=tuple(ADAMW["betas"]), eps=ADAMW["eps"])
    for _ in range(steps):
        opt.step()
    return {n: p.detach().clone() for n, p in ps.items()}


def make_model_case(out, name, c, seed):
    gen = torch.Generator().manual_seed(seed)
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    w32 = make_weights(c, gen)
    write_json(os.path.join(d, "config.json"), c)
    write_safetensors(os.path.join(d, "model.safetensors"), w32, {"format": "pt"})

    v = c["vocab_size"]
    input_ids = torch.randint(0, v, (BATCH, SEQ), generator=gen, dtype=torch.int64)
    targets = torch.randint(0, v, (BATCH, SEQ), generator=gen, dtype=torch.int64)

    w64 = {n: t.double().requires_grad_(True) for n, t in w32.items()}
    logits = forward(w64, c, input_ids)
    loss = F.cross_entropy(logits.reshape(-1, v), targets.reshape(-1))
    loss.backward()
    grads32 = {n: t.grad.float() for n, t in w64.items()}

    golden = {
        "input_ids": input_ids,
        "targets": targets,
        "logits": logits.detach().float(),
        "loss": loss.detach().float(),  # 0-d
    }
    for n, g in grads32.items():
        golden["grad." + n] = g
    for n, t in adamw_after(w32, grads32, 1).items():
        golden["after." + n] = t
    for n, t in adamw_after(w32, grads32, 2).items():
        golden["after2." + n] = t
    write_safetensors(os.path.join(d, "golden.safetensors"), golden)
    write_json(os.path.join(d, "adamw.json"), ADAMW)


def make_eval_case(out, name, c, seed):
    """The `distill-worker eval` contract on the model of case `name`: N random
    tokens, and for several L the mean cross-entropy over the non-overlapping
    windows inputs t[i*L : i*L+L], targets t[i*L+1 : i*L+L+1], i < (N-1)//L."""
    gen = torch.Generator().manual_seed(seed)
    d = os.path.join(out, name)
    w = {n: t.double() for n, t in read_safetensors_f32(os.path.join(d, "model.safetensors")).items()}
    n_tokens = 203
    tokens = torch.randint(0, c["vocab_size"], (n_tokens,), generator=gen, dtype=torch.int64)
    with open(os.path.join(d, "eval_tokens.bin"), "wb") as f:
        f.write(struct.pack("<%dI" % n_tokens, *tokens.tolist()))
    cases = []
    for seq_len in (16, 50):
        windows = (n_tokens - 1) // seq_len
        total, count = 0.0, 0
        for i in range(windows):
            x = tokens[i * seq_len:i * seq_len + seq_len].unsqueeze(0)
            y = tokens[i * seq_len + 1:i * seq_len + seq_len + 1]
            logits = forward(w, c, x)[0]
            total += F.cross_entropy(logits, y, reduction="sum").item()
            count += seq_len
        loss = total / count
        cases.append({"seq_len": seq_len, "loss": loss, "ppl": math.exp(loss), "tokens": count})
    write_json(os.path.join(d, "eval.json"), {"tokens_file": "eval_tokens.bin", "cases": cases})


def read_safetensors_f32(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info
        b, e = info["data_offsets"]
        count = (e - b) // 4
        vals = struct.unpack("<%df" % count, data[8 + n + b:8 + n + e])
        out[name] = torch.tensor(vals, dtype=torch.float32).reshape(info["shape"])
    return out


def make_clip(out):
    gen = torch.Generator().manual_seed(1234)
    shapes = [(5, 3), (7,), (2, 3, 4)]
    grads = [torch.randn(*sh, generator=gen) for sh in shapes]
    max_norm = 1.5
    params = []
    for g in grads:
        p = torch.zeros_like(g, requires_grad=True)
        p.grad = g.clone()
        params.append(p)
    total = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=2.0)
    t = {"max_norm": torch.tensor(max_norm, dtype=torch.float32),
         "total_norm": total.detach().float().reshape(())}
    for i, (g, p) in enumerate(zip(grads, params)):
        t["grad.%d" % i] = g
        t["clipped.%d" % i] = p.grad.detach().clone()
    if not float(total) > max_norm:
        raise RuntimeError("clip case does not clip: total norm %g" % float(total))
    write_safetensors(os.path.join(out, "clip.safetensors"), t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created)")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    for i, (name, c) in enumerate(CONFIGS.items()):
        make_model_case(args.out, name, c, seed=1000 + i)
    make_eval_case(args.out, "llama_gqa", CONFIGS["llama_gqa"], seed=77)
    make_clip(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
