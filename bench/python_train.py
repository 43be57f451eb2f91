#!/usr/bin/env python3
"""Training throughput of the Python stacks: the other side of train_bench.

--impl transformers (what a user would pick instead): transformers'
LlamaForCausalLM built from the same config.json (SDPA attention, use_cache off),
and for --lora peft's get_peft_model with the same LoRA (r=8, alpha 16, q/v).
--impl python: a plain PyTorch Llama written as Hugging Face's modeling_llama does
it (nn.Linear projections, RMSNorm in fp32, half-split RoPE, GQA through
repeat_kv, SwiGLU, F.scaled_dot_product_attention with is_causal as the C++).
The loop is what a competent user writes: zero_grad(set_to_none=True), forward,
cross-entropy, backward, clip_grad_norm_, torch.optim.AdamW (its default
implementation), loss.item() for logging. It shares no code with the C++.

Usage: .venv/bin/python python_train.py --config CONFIG.json --seq-len L --batch B
         --steps N --warmup W --threads T [--lora] [--impl python|transformers]
Prints one JSON line: {"impl":"python","params":..,"tokens_per_s":..,"step_ms":..,"gflops":..}
"""

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

LR = 1e-4
WEIGHT_DECAY = 0.1
CLIP = 1.0
SEED = 1234


class LlamaRMSNorm(nn.Module):
    def __init__(self, hidden_size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class LoraLinear(nn.Module):
    """nn.Linear plus PEFT's LoRA path: base(x) + scaling * B(A(dropout(x)))."""

    def __init__(self, base, rank, alpha, dropout):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.scaling = alpha / rank

    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(self.dropout(x))) * self.scaling


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(hidden_states, n_rep):
    batch, num_kv_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_kv_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, num_kv_heads * n_rep, slen, head_dim)


class LlamaAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.num_heads = c["num_attention_heads"]
        self.num_kv_heads = c.get("num_key_value_heads", self.num_heads)
        self.head_dim = c.get("head_dim", c["hidden_size"] // self.num_heads)
        d = c["hidden_size"]
        bias = c.get("attention_bias", False)
        self.q_proj = nn.Linear(d, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(d, self.num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(d, self.num_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, d, bias=bias)

    def forward(self, x, cos, sin):
        bsz, q_len, _ = x.shape
        q = self.q_proj(x).view(bsz, q_len, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(bsz, q_len, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(bsz, q_len, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        n_rep = self.num_heads // self.num_kv_heads
        k = repeat_kv(k, n_rep)
        v = repeat_kv(v, n_rep)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out = out.transpose(1, 2).reshape(bsz, q_len, -1)
        return self.o_proj(out)


class LlamaMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, i = c["hidden_size"], c["intermediate_size"]
        bias = c.get("mlp_bias", False)
        self.gate_proj = nn.Linear(d, i, bias=bias)
        self.up_proj = nn.Linear(d, i, bias=bias)
        self.down_proj = nn.Linear(i, d, bias=bias)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = LlamaAttention(c)
        self.mlp = LlamaMLP(c)
        self.input_layernorm = LlamaRMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.post_attention_layernorm = LlamaRMSNorm(c["hidden_size"], c["rms_norm_eps"])

    def forward(self, x, cos, sin):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return h + self.mlp(self.post_attention_layernorm(h))


class LlamaModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(LlamaDecoderLayer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = LlamaRMSNorm(c["hidden_size"], c["rms_norm_eps"])


class LlamaForCausalLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.model = LlamaModel(c)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        if c.get("tie_word_embeddings", False):
            self.lm_head.weight = self.model.embed_tokens.weight
        # RoPE tables, built once (as the C++ caches them).
        n = c.get("max_position_embeddings", 2048)
        head_dim = c.get("head_dim", c["hidden_size"] // c["num_attention_heads"])
        inv_freq = 1.0 / (c.get("rope_theta", 10000.0) ** (torch.arange(0, head_dim, 2).float() / head_dim))
        freqs = torch.outer(torch.arange(n).float(), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos_cached", emb.cos(), persistent=False)
        self.register_buffer("sin_cached", emb.sin(), persistent=False)
        self.apply(self._init_weights)

    def _init_weights(self, module):
        # Hugging Face's LlamaPreTrainedModel._init_weights.
        std = self.config["initializer_range"]
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                module.bias.data.zero_()

    def forward(self, input_ids):
        t = input_ids.shape[1]
        cos, sin = self.cos_cached[:t], self.sin_cached[:t]
        h = self.model.embed_tokens(input_ids)
        for layer in self.model.layers:
            h = layer(h, cos, sin)
        return self.lm_head(self.model.norm(h)).float()


def apply_lora(model, rank=8, alpha=16.0, dropout=0.0, targets=("q_proj", "v_proj")):
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.model.layers:
        attn = layer.self_attn
        for name in targets:
            setattr(attn, name, LoraLinear(getattr(attn, name), rank, alpha, dropout))


class TransformersLlama(nn.Module):
    """transformers' LlamaForCausalLM (and peft's LoRA), logits as fp32."""

    def __init__(self, c, lora):
        super().__init__()
        import transformers

        config = transformers.LlamaConfig(**{k: v for k, v in c.items() if k != "transformers_version"})
        config.use_cache = False
        self.model = transformers.LlamaForCausalLM._from_config(config, attn_implementation="sdpa")
        if lora:
            import peft

            self.model = peft.get_peft_model(self.model, peft.LoraConfig(
                r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))

    def forward(self, input_ids):
        return self.model(input_ids=input_ids).logits.float()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--impl", choices=("python", "transformers"), default="python")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    with open(args.config) as f:
        config = json.load(f)
    if args.impl == "transformers":
        model = TransformersLlama(config, args.lora)
        params = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    else:
        model = LlamaForCausalLM(config)
        params = sum(p.numel() for p in model.parameters())
        if args.lora:
            apply_lora(model)
    model.train()

    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in trainable if p.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=LR, betas=(0.9, 0.999), eps=1e-8)

    vocab = config["vocab_size"]
    gen = torch.Generator().manual_seed(SEED)

    phases = [0.0, 0.0, 0.0]  # zero grad + forward + loss, backward, clip + update

    def train_step():
        batch = torch.randint(0, vocab, (args.batch, args.seq_len + 1), generator=gen)
        inputs, targets = batch[:, :-1].contiguous(), batch[:, 1:].contiguous()
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        logits = model(inputs)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(trainable, CLIP)
        optimizer.step()
        value = loss.item()
        t3 = time.perf_counter()
        for i, dt in enumerate((t1 - t0, t2 - t1, t3 - t2)):
            phases[i] += dt
        return value

    for _ in range(args.warmup):
        train_step()
    phases[:] = [0.0, 0.0, 0.0]
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        loss = train_step()
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    if not math.isfinite(loss):
        raise SystemExit(f"loss is {loss}")

    tokens_per_s = args.steps * args.batch * args.seq_len / seconds
    print(json.dumps({
        "impl": args.impl,
        "params": params,
        "trainable": sum(p.numel() for p in trainable),
        "seq_len": args.seq_len,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "tokens_per_s": round(tokens_per_s, 1),
        "step_ms": round(1000.0 * seconds / args.steps, 3),
        "cpu_ms": round(1000.0 * cpu_seconds / args.steps, 3),
        "fwd_ms": round(1000.0 * phases[0] / args.steps, 3),
        "bwd_ms": round(1000.0 * phases[1] / args.steps, 3),
        "opt_ms": round(1000.0 * phases[2] / args.steps, 3),
        "gflops": round(6.0 * params * tokens_per_s / 1e9, 2),
        "loss": round(loss, 4),
    }))


if __name__ == "__main__":
    main()
