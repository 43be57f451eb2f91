#!/usr/bin/env python3
"""Golden numbers for the distillation tests, from an independent reference.

Writes a tiny student and a wider, deeper teacher as Hugging Face model
directories under OUT/distill/ (the teacher's vocabulary padded by 6 rows
beyond the student's 50, its embeddings tied), a batch, and in float64:

- golden.safetensors: one distill micro-batch's loss (dense teacher logits,
  forward KL at T = 2, alpha 0.5, T^2 scaling, plus two feature pairs:
  student layer 0 -> teacher layer 1 (MSE, weight 0.5) and student layer 1 ->
  teacher layer 3 (cosine, weight 2.0), each through a given projection
  [48, 32]), its parts, and the gradient of every student parameter and of
  both projections; the same loss for top-k (k = 8) logits;
- golden.safetensors also holds, under "variant.NAME.", the same dense step
  (features included) with another soft loss from the spec (VARIANTS):
  reverse KL(q||p), the generalised JSD with beta 0.3, and forward KL
  without the T^2 factor: loss, kd and every student gradient;
- eval.json: the teacher-aware evaluation on a token stream: the student's
  and the teacher's mean cross-entropy, mean KL(p_teacher || p_student) at
  T = 1 and top-1 agreement, over the non-overlapping windows of
  `distill-worker eval`.

The loss math is written out here from its definition (kd_loss.h,
feature_loss.h, job.proto); the model forward is make_reference.py's, which
shares no code with the C++.

Usage: .venv/bin/python make_distill_reference.py --out DIR   (the project venv: pip torch)
"""

import argparse
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_reference as ref  # noqa: E402

BATCH, SEQ = 2, 7
VOCAB = 50  # the shared vocabulary; the teacher has 56 rows
KD = {"temperature": 2.0, "alpha": 0.5, "t2_scale": True, "top_k": 8}
FEATURES = [
    {"student_layer": 0, "teacher_layer": 1, "loss": "mse", "weight": 0.5},
    {"student_layer": 1, "teacher_layer": 3, "loss": "cosine", "weight": 2.0},
]

STUDENT = ref.llama_config()  # hidden 32, 2 layers, vocab 50, untied
TEACHER = ref.llama_config(hidden_size=48, intermediate_size=96, num_hidden_layers=4,
                           num_attention_heads=4, num_key_value_heads=2, vocab_size=56,
                           tie_word_embeddings=True)


def forward_capture(w, c, input_ids):
    """make_reference.forward, also returning every decoder layer's output."""
    s = ref.shape_info(c)
    eps = c["rms_norm_eps"]
    emb = w["model.embed_tokens.weight"]
    h = emb[input_ids]
    cos, sin = ref.rope_tables(s["hd"], float(c["rope_theta"]), input_ids.shape[1], emb.dtype)
    layers = []
    for i in range(c["num_hidden_layers"]):
        p = "model.layers.%d." % i
        a = ref.rms_norm(h, w[p + "input_layernorm.weight"], eps)
        h = h + ref.attention(a, w, p + "self_attn.", c, s, cos, sin)
        m = ref.rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        gate = ref.linear(m, w, p + "mlp.gate_proj")
        up = ref.linear(m, w, p + "mlp.up_proj")
        h = h + ref.linear(F.silu(gate) * up, w, p + "mlp.down_proj")
        layers.append(h)
    h = ref.rms_norm(h, w["model.norm.weight"], eps)
    head = emb if c["tie_word_embeddings"] else w["lm_head.weight"]
    return h @ head.t(), layers


# The spec's other soft losses (job.proto DistillLoss, t2_scale): the
# distill: fields each variant sets, and its golden name.
VARIANTS = [
    ("reverse_kl", {"loss": "reverse_kl"}),
    ("jsd_b0.3", {"loss": "jsd", "beta": 0.3}),
    ("no_t2", {"t2_scale": False}),
]


def kl_rows(log_a, log_b):
    """KL(a||b) per row, from log-probabilities."""
    return (log_a.exp() * (log_a - log_b)).sum(-1)


def divergence_dense(zs, zt, t, loss="forward_kl", beta=0.5):
    """Mean over tokens of the soft loss between teacher p and student q at T
    (job.proto): forward KL(p||q), reverse KL(q||p) or
    JSD(beta) = beta KL(p||m) + (1 - beta) KL(q||m), m = beta p + (1 - beta) q."""
    log_p = F.log_softmax(zt / t, dim=-1)
    log_q = F.log_softmax(zs / t, dim=-1)
    if loss == "forward_kl":
        return kl_rows(log_p, log_q).mean()
    if loss == "reverse_kl":
        return kl_rows(log_q, log_p).mean()
    assert loss == "jsd", loss
    log_m = (beta * log_p.exp() + (1 - beta) * log_q.exp()).log()
    return (beta * kl_rows(log_p, log_m) + (1 - beta) * kl_rows(log_q, log_m)).mean()


def forward_kl_dense(zs, zt, t):
    return divergence_dense(zs, zt, t)


def forward_kl_topk(zs, zt, t, k):
    """Both distributions collapsed onto the teacher's k largest ids plus one tail bucket."""
    ids = zt.topk(k, dim=-1).indices
    p = F.softmax(zt / t, dim=-1)
    q = F.softmax(zs / t, dim=-1)
    pk, qk = p.gather(1, ids), q.gather(1, ids)
    p_tail = (1 - pk.sum(-1)).clamp_min(0)
    q_tail = (1 - qk.sum(-1)).clamp_min(0)
    kl = (pk * (pk.log() - qk.log())).sum(-1) + p_tail * (p_tail.log() - q_tail.log())
    return kl.mean()


def feature_loss(hs, ht, proj, kind):
    x = hs @ proj.t()
    if kind == "mse":
        return ((x - ht) ** 2).mean()
    return (1 - F.cosine_similarity(x, ht, dim=-1, eps=1e-8)).mean()


def distill_loss(ws, wt, projs, input_ids, targets, topk=None, variant=None):
    zs, ls = forward_capture(ws, STUDENT, input_ids)
    with torch.no_grad():
        zt, lt = forward_capture(wt, TEACHER, input_ids)
    n = targets.numel()
    zs = zs.reshape(n, -1)
    zt = zt.reshape(n, -1)[:, :VOCAB]  # padding rows dropped
    y = targets.reshape(n)
    t = KD["temperature"]
    ce = F.cross_entropy(zs, y)
    variant = variant or {}
    if topk is None:
        kd = divergence_dense(zs, zt, t, variant.get("loss", "forward_kl"), variant.get("beta", 0.5))
    else:
        kd = forward_kl_topk(zs, zt, t, topk)
    if variant.get("t2_scale", KD["t2_scale"]):
        kd = kd * t * t
    total = KD["alpha"] * kd + (1 - KD["alpha"]) * ce
    feats = []
    for f, proj in zip(FEATURES, projs):
        hs = ls[f["student_layer"]].reshape(n, -1)
        ht = lt[f["teacher_layer"]].reshape(n, -1)
        v = feature_loss(hs, ht, proj, f["loss"])
        feats.append(v)
        total = total + f["weight"] * v
    return total, ce, kd, feats


def make_models(d, gen):
    ws = ref.make_weights(STUDENT, gen)
    wt = ref.make_weights(TEACHER, gen)
    for name, c, w in (("student", STUDENT, ws), ("teacher", TEACHER, wt)):
        os.makedirs(os.path.join(d, name), exist_ok=True)
        ref.write_json(os.path.join(d, name, "config.json"), c)
        ref.write_safetensors(os.path.join(d, name, "model.safetensors"), w, {"format": "pt"})
    return ws, wt


def make_step(d, ws32, wt32, gen):
    input_ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=gen, dtype=torch.int64)
    targets = torch.randint(0, VOCAB, (BATCH, SEQ), generator=gen, dtype=torch.int64)
    # Projections as nn.Linear(32, 48, bias=False) would draw them.
    bound = 1 / math.sqrt(STUDENT["hidden_size"])
    projs32 = [(torch.rand(TEACHER["hidden_size"], STUDENT["hidden_size"], generator=gen) * 2 - 1) * bound
               for _ in FEATURES]
    ws = {n: t.double().requires_grad_(True) for n, t in ws32.items()}
    wt = {n: t.double() for n, t in wt32.items()}
    projs = [p.double().requires_grad_(True) for p in projs32]
    total, ce, kd, feats = distill_loss(ws, wt, projs, input_ids, targets)
    total.backward()
    golden = {
        "input_ids": input_ids,
        "targets": targets,
        "loss": total.detach().float(),
        "ce": ce.detach().float(),
        "kd": kd.detach().float(),
    }
    for f, v, p32, p in zip(FEATURES, feats, projs32, projs):
        name = "s%d_t%d" % (f["student_layer"], f["teacher_layer"])
        golden["feature." + name] = v.detach().float()
        golden["projection." + name] = p32
        golden["grad.projection." + name] = p.grad.float()
    for n, t in ws.items():
        golden["grad." + n] = t.grad.float()
    with torch.no_grad():
        topk_total, _, topk_kd, _ = distill_loss(ws, wt, projs, input_ids, targets, topk=KD["top_k"])
    golden["topk.loss"] = topk_total.float()
    golden["topk.kd"] = topk_kd.float()
    for name, variant in VARIANTS:
        for t in list(ws.values()) + projs:
            t.grad = None
        v_total, _, v_kd, _ = distill_loss(ws, wt, projs, input_ids, targets, variant=variant)
        v_total.backward()
        prefix = "variant.%s." % name
        golden[prefix + "loss"] = v_total.detach().float()
        golden[prefix + "kd"] = v_kd.detach().float()
        for n, t in ws.items():
            golden[prefix + "grad." + n] = t.grad.float()
    ref.write_safetensors(os.path.join(d, "golden.safetensors"), golden)
    ref.write_json(os.path.join(d, "step.json"), {"kd": KD, "features": FEATURES})


def make_eval(d, ws32, wt32, gen):
    ws = {n: t.double() for n, t in ws32.items()}
    wt = {n: t.double() for n, t in wt32.items()}
    n_tokens = 150
    tokens = torch.randint(0, VOCAB, (n_tokens,), generator=gen, dtype=torch.int64)
    with open(os.path.join(d, "eval_tokens.bin"), "wb") as f:
        f.write(struct.pack("<%dI" % n_tokens, *tokens.tolist()))
    cases = []
    for seq_len in (16, 37):
        windows = (n_tokens - 1) // seq_len
        ce_s = ce_t = kl = agree = 0.0
        count = 0
        for i in range(windows):
            x = tokens[i * seq_len:i * seq_len + seq_len].unsqueeze(0)
            y = tokens[i * seq_len + 1:i * seq_len + seq_len + 1]
            zs = ref.forward(ws, STUDENT, x)[0]
            zt = ref.forward(wt, TEACHER, x)[0][:, :VOCAB]
            ls, lt = F.log_softmax(zs, -1), F.log_softmax(zt, -1)
            ce_s += F.nll_loss(ls, y, reduction="sum").item()
            ce_t += F.nll_loss(lt, y, reduction="sum").item()
            kl += (lt.exp() * (lt - ls)).sum().item()
            agree += (zs.argmax(-1) == zt.argmax(-1)).sum().item()
            # fp32 in C++ against float64 here: no argmax may hinge on a near tie.
            for z in (zs, zt):
                top2 = z.topk(2, dim=-1).values
                if float((top2[:, 0] - top2[:, 1]).min()) < 1e-4:
                    raise RuntimeError("eval case has a near tie between the top two logits; change the seed")
            count += seq_len
        cases.append({"seq_len": seq_len, "tokens": count, "loss": ce_s / count, "ppl": math.exp(ce_s / count),
                      "teacher_loss": ce_t / count, "teacher_ppl": math.exp(ce_t / count),
                      "kl": kl / count, "top1_agreement": agree / count})
    ref.write_json(os.path.join(d, "eval.json"), {"tokens_file": "eval_tokens.bin", "cases": cases})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    d = os.path.join(args.out, "distill")
    os.makedirs(d, exist_ok=True)
    gen = torch.Generator().manual_seed(4242)
    ws32, wt32 = make_models(d, gen)
    make_step(d, ws32, wt32, gen)
    make_eval(d, ws32, wt32, gen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
