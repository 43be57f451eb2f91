#!/usr/bin/env python3
"""Golden numbers for the distillation losses, from an independent reference.

Writes OUT/kd.safetensors and OUT/cases.json. The inputs (student hidden
state and lm_head, targets, teacher logits padded beyond the vocabulary,
teacher hidden state and padded lm_head, top-k transports, feature-distillation
tensors and a projection weight) are float32 and drawn here, so the C++ tests
read exactly the same numbers. The goldens are computed the dumb way, in
float64 with plain torch ops on whole [N, V] tensors (no chunking, no closed
forms): the loss value, its cross-entropy and soft parts, and the gradients
(autograd) w.r.t. the student hidden state and lm_head, or for the feature
loss w.r.t. the student feature and the projection weight. It shares no code
with the C++ (worker/distill/kd_loss.cc, feature_loss.cc).

Conventions (kd_loss.h): per token, p = softmax(z_t / T), q = softmax(z_s / T);
forward KL(p||q), reverse KL(q||p), JSD(beta) = beta KL(p||m) +
(1 - beta) KL(q||m) with m = beta p + (1 - beta) q; times T^2 when t2_scale;
total = alpha * kd + (1 - alpha) * CE(z_s, y) (T = 1), means over tokens.
TOPK: p and q collapsed onto the k teacher ids plus one tail bucket
(1 - sum of the k probabilities; the teacher's clamped to >= 1e-12), no tail
bucket when k = V.

Usage: .venv/bin/python make_kd_reference.py --out DIR   (the project venv: pip torch)
Prints nothing unless it fails; exits non-zero on failure.
"""

import argparse
import os
import sys

import torch
import torch.nn.functional as F

from make_reference import write_json, write_safetensors

N, V, V_PAD, D_S, D_T = 13, 37, 40, 8, 12
CHUNK_TOKENS = 4  # the C++ side runs the golden cases in chunks of this many tokens
TEMPERATURES = [0.5, 1.0, 2.0, 4.0]
ALPHAS = [0.0, 0.5, 1.0]
LOSSES = [("forward_kl", None), ("reverse_kl", None), ("jsd", 0.1), ("jsd", 0.5), ("jsd", 0.9)]
TOPK_KS = [5, V]
TOPK_TEMPERATURES = [1.0, 2.0]
MIN_TAIL_PROB = 1e-12


def loss_name(loss, beta):
    return loss if beta is None else "%s%g" % (loss, beta)


def divergence(loss, beta, p, q):
    """Per-row divergence of probability rows p (teacher), q (student)."""
    def kl(a, b):  # sum a log(a / b), with 0 log 0 = 0
        return torch.where(a > 0, a * (torch.log(a) - torch.log(b)), torch.zeros_like(a)).sum(1)

    if loss == "forward_kl":
        return kl(p, q)
    if loss == "reverse_kl":
        return kl(q, p)
    m = beta * p + (1 - beta) * q
    return beta * kl(p, m) + (1 - beta) * kl(q, m)


def collapse_topk(prob, ids):
    """prob [N, V] -> [N, k (+1)]: the k ids' probabilities and the rest."""
    top = prob.gather(1, ids)
    if ids.shape[1] == prob.shape[1]:
        return top
    return torch.cat([top, (1 - top.sum(1, keepdim=True))], 1)


def kd_case(inputs, loss, beta, temperature, t2_scale, alpha, teacher):
    """Returns the goldens of one case; teacher(z_s64) -> (p, q) rows."""
    h = inputs["h"].double().requires_grad_()
    w = inputs["w"].double().requires_grad_()
    z = h @ w.t()
    ce = F.cross_entropy(z, inputs["targets"])
    p, q = teacher(z)
    kd = divergence(loss, beta, p, q).mean()
    if t2_scale:
        kd = kd * temperature ** 2
    total = alpha * kd + (1 - alpha) * ce
    total.backward()
    return {"loss": total.detach(), "ce": ce.detach(), "kd": kd.detach(),
            "grad_h": h.grad, "grad_w": w.grad}


def dense_teacher(zt, temperature):
    def teacher(z):
        return F.softmax(zt.double() / temperature, 1), F.softmax(z / temperature, 1)
    return teacher


def topk_teacher(values, ids, lse, temperature):
    def teacher(z):
        p_top = torch.exp(values.double() / temperature - lse.double().unsqueeze(1))
        q = collapse_topk(F.softmax(z / temperature, 1), ids)
        if ids.shape[1] == V:
            return p_top, q
        tail = (1 - p_top.sum(1, keepdim=True)).clamp(min=MIN_TAIL_PROB)
        return torch.cat([p_top, tail], 1), q
    return teacher


def make_inputs(gen):
    t = {
        "h": torch.randn(N, D_S, generator=gen),
        "w": torch.randn(V, D_S, generator=gen) * 0.7,
        "targets": torch.randint(0, V, (N,), generator=gen),
        "t_hidden": torch.randn(N, D_T, generator=gen),
        "t_head": torch.randn(V_PAD, D_T, generator=gen) * 0.6,
        "feat.s": torch.randn(N, D_S, generator=gen),
        "feat.t_same": torch.randn(N, D_S, generator=gen),
        "feat.t_wide": torch.randn(N, D_T, generator=gen),
        "feat.proj": torch.randn(D_T, D_S, generator=gen) * 0.3,
    }
    # Dense teacher logits: V real columns plus padding columns that would
    # dominate every softmax if they were not dropped.
    real = torch.randn(N, V, generator=gen) * 2.5
    t["t_logits"] = torch.cat([real, torch.full((N, V_PAD - V), 30.0)], 1)
    return t


def make_kd_cases(inputs):
    cases, goldens = [], {}

    def add(name, spec, g):
        spec = dict(spec, name=name)
        cases.append(spec)
        for key, value in g.items():
            goldens["%s.%s" % (name, key)] = value

    zt = inputs["t_logits"][:, :V]
    for loss, beta in LOSSES:
        for temperature in TEMPERATURES:
            for t2_scale in (True, False):
                for alpha in ALPHAS:
                    name = "dense.%s.T%g.t2%d.a%g" % (loss_name(loss, beta), temperature, t2_scale, alpha)
                    spec = {"transport": "dense", "loss": loss, "beta": beta or 0.5, "temperature": temperature,
                            "t2_scale": t2_scale, "alpha": alpha}
                    add(name, spec, kd_case(inputs, loss, beta, temperature, t2_scale, alpha,
                                            dense_teacher(zt, temperature)))

    # Top-k transports, as the teacher side builds them (from the padded
    # logits, first V columns), are inputs of the C++ test too.
    for temperature in TOPK_TEMPERATURES:
        for k in TOPK_KS:
            values, ids = torch.topk(zt, k, dim=1, largest=True, sorted=True)
            lse = torch.logsumexp(zt.double() / temperature, 1)
            tag = "topk.k%d.T%g" % (k, temperature)
            inputs[tag + ".values"] = values.contiguous()
            inputs[tag + ".ids"] = ids.contiguous()
            inputs[tag + ".lse"] = lse.float()
            goldens[tag + ".lse"] = lse
            for loss, beta in [LOSSES[0], LOSSES[1], LOSSES[3]]:
                name = "%s.%s" % (tag, loss_name(loss, beta))
                spec = {"transport": "topk", "k": k, "loss": loss, "beta": beta or 0.5,
                        "temperature": temperature, "t2_scale": True, "alpha": 0.5}
                teacher = topk_teacher(inputs[tag + ".values"], ids, inputs[tag + ".lse"], temperature)
                add(name, spec, kd_case(inputs, loss, beta, temperature, True, 0.5, teacher))

    # Hidden transport: the teacher's logits from its hidden state and the
    # first V rows of its (padded) lm_head.
    zt_hidden = inputs["t_hidden"].double() @ inputs["t_head"][:V].double().t()
    for loss, beta in LOSSES:
        name = "hidden.%s" % loss_name(loss, beta)
        spec = {"transport": "hidden", "loss": loss, "beta": beta or 0.5, "temperature": 2.0,
                "t2_scale": True, "alpha": 0.5}
        add(name, spec, kd_case(inputs, loss, beta, 2.0, True, 0.5, dense_teacher(zt_hidden, 2.0)))
    return cases, goldens


def make_feature_cases(inputs):
    cases, goldens = [], {}
    for kind in ("mse", "cosine"):
        for teacher, proj in (("feat.t_same", False), ("feat.t_wide", True)):
            s = inputs["feat.s"].double().requires_grad_()
            w = inputs["feat.proj"].double().requires_grad_()
            x = s @ w.t() if proj else s
            t = inputs[teacher].double()
            if kind == "mse":
                value = ((x - t) ** 2).mean()
            else:
                value = (1 - F.cosine_similarity(x, t, dim=1, eps=1e-8)).mean()
            value.backward()
            name = "feature.%s.%s" % (kind, "proj" if proj else "same")
            cases.append({"name": name, "kind": kind, "teacher": teacher, "proj": proj})
            goldens[name + ".loss"] = value.detach()
            goldens[name + ".grad_s"] = s.grad
            if proj:
                goldens[name + ".grad_proj"] = w.grad
    return cases, goldens


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    gen = torch.Generator().manual_seed(4242)
    inputs = make_inputs(gen)
    kd_cases, kd_goldens = make_kd_cases(inputs)
    feature_cases, feature_goldens = make_feature_cases(inputs)
    for g in (kd_goldens, feature_goldens):
        for name, value in g.items():
            if not torch.isfinite(value).all():
                raise RuntimeError("non-finite golden %s" % name)
    tensors = {"input." + k: v for k, v in inputs.items()}
    tensors.update({"golden." + k: v.double() for k, v in kd_goldens.items()})
    tensors.update({"golden." + k: v.double() for k, v in feature_goldens.items()})
    write_safetensors(os.path.join(args.out, "kd.safetensors"), tensors)
    write_json(os.path.join(args.out, "cases.json"),
               {"chunk_tokens": CHUNK_TOKENS, "vocab": V, "kd": kd_cases, "feature": feature_cases})
    return 0


if __name__ == "__main__":
    sys.exit(main())
