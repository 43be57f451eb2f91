#!/usr/bin/env python3
"""TRL's GKD loss and a torch.nn.functional formulation as references for KdLoss.

Writes, under --out:
  trl.safetensors  float32 inputs and float64 goldens:
    input.h [N, D], input.w [V, D]   student hidden state and lm_head
    input.z [N, V]                   the student logits h w^T (float32)
    input.targets [N]                labels of the kept positions (int64)
    input.t_logits [N, V_PAD]        dense teacher logits, padded past V
    input.t_hidden [N, D_T], input.t_head [V_PAD, D_T]   HIDDEN transport
    golden.SOURCE.CASE.{loss,grad_z,grad_h,grad_w}
        SOURCE "trl": GKDTrainer.generalized_jsd_loss itself; SOURCE "f":
        F.kl_div / F.log_softmax / F.cross_entropy written out here. grad_z
        is d loss / d student logits, grad_h and grad_w the chain through
        z = h w^T (autograd).
  cases.json       {"vocab", "cases": [{"name", "transport", "loss", "beta",
                   "temperature", "t2_scale", "alpha"}]}

The N positions are the unmasked ones of a [B=2, S=9] batch whose labels hold
-100 at padding: TRL gets the whole batch with those labels (its masked
"batchmean" is the mean over kept tokens), KdLoss the kept rows only.

How our options map onto TRL (trl 1.16, trl.experimental.gkd):
  FORWARD_KL = beta 0 (KL(teacher || student)), REVERSE_KL = beta 1
  (KL(student || teacher)), JSD(beta) = beta in (0, 1) with the mixture
  m = beta p_teacher + (1 - beta) q_student (GKD paper, Eq. 1).
  temperature: TRL divides both logits by T and never multiplies by T^2, so
  t2_scale = false is TRL's value, t2_scale = true is T^2 times it.
  alpha: TRL's GKD loss is the divergence alone (alpha = 1); alpha < 1 adds
  (1 - alpha) * F.cross_entropy(z, labels, ignore_index=-100) at T = 1.
  HIDDEN: the teacher logits are t_hidden t_head[:V]^T; TOPK with k = V is
  DENSE (the C++ test builds it with MakeTopK). TOPK with k < V has no
  library counterpart (make_kd_reference.py checks it in float64).
The losses are evaluated in float64 on the float32 inputs (the functions are
dtype-generic), so the goldens carry no float32 rounding of their own.
Prints nothing on success; exits non-zero on failure.
"""

import argparse
import json
import os
import sys
import warnings

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

SEED = 2306
B, S, V, V_PAD, D, D_T = 2, 9, 37, 40, 8, 12
LOSSES = [("forward_kl", 0.0), ("reverse_kl", 1.0), ("jsd", 0.1), ("jsd", 0.5), ("jsd", 0.9)]
TEMPERATURES = [0.5, 1.0, 2.0]
ALPHAS = [1.0, 0.5]


def trl_divergence(zs, zt, labels, beta, temperature):
    from trl.experimental.gkd import GKDTrainer

    return GKDTrainer.generalized_jsd_loss(zs, zt, labels=labels, beta=beta, temperature=temperature,
                                           reduction="batchmean")


def f_divergence(zs, zt, labels, beta, temperature):
    """The same divergence from torch.nn.functional, on the kept rows [N, V]."""
    keep = labels != -100
    log_q = F.log_softmax(zs[keep] / temperature, dim=-1)  # student
    log_p = F.log_softmax(zt[keep] / temperature, dim=-1)  # teacher
    # F.kl_div(input, target) = KL(target || exp(input)), summed / rows.
    if beta == 0.0:
        return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)
    if beta == 1.0:
        return F.kl_div(log_p, log_q, reduction="batchmean", log_target=True)
    log_m = torch.log(beta * log_p.exp() + (1 - beta) * log_q.exp())
    return (beta * F.kl_div(log_m, log_p, reduction="batchmean", log_target=True) +
            (1 - beta) * F.kl_div(log_m, log_q, reduction="batchmean", log_target=True))


def case_goldens(divergence, inputs, teacher_logits, case):
    """Loss and gradients of one case in float64; teacher_logits [B, S, V]."""
    h = inputs["h"].double().requires_grad_()
    w = inputs["w"].double().requires_grad_()
    z = (h @ w.t())
    z.retain_grad()
    labels = inputs["labels"]
    t = case["temperature"]
    kd = divergence(z, teacher_logits.double(), labels, case["beta"], t)
    if case["t2_scale"]:
        kd = kd * t * t
    loss = case["alpha"] * kd
    if case["alpha"] < 1:
        ce = F.cross_entropy(z.reshape(-1, V), labels.reshape(-1), ignore_index=-100)
        loss = loss + (1 - case["alpha"]) * ce
    loss.backward()
    keep = labels != -100
    return {"loss": loss.detach(), "grad_z": z.grad[keep], "grad_h": h.grad[keep], "grad_w": w.grad}


def make_inputs(gen):
    t = {
        "h": torch.randn(B, S, D, generator=gen),
        "w": torch.randn(V, D, generator=gen) * 0.7,
        "labels": torch.randint(0, V, (B, S), generator=gen),
        "t_hidden": torch.randn(B, S, D_T, generator=gen),
        "t_head": torch.randn(V_PAD, D_T, generator=gen) * 0.6,
    }
    t["labels"][0, -2:] = -100  # right padding
    t["labels"][1, 0] = -100    # a masked prompt token
    real = torch.randn(B, S, V, generator=gen) * 2.5
    # Padding columns that would dominate every softmax if they counted.
    t["t_logits"] = torch.cat([real, torch.full((B, S, V_PAD - V), 30.0)], -1)
    return t


def make_cases():
    cases = []
    for loss, beta in LOSSES:
        tag = loss if loss != "jsd" else "jsd%g" % beta
        for temperature in TEMPERATURES:
            for t2_scale in (False, True):
                for alpha in ALPHAS:
                    cases.append({"name": "dense.%s.T%g.t2%d.a%g" % (tag, temperature, t2_scale, alpha),
                                  "transport": "dense", "loss": loss, "beta": beta,
                                  "temperature": temperature, "t2_scale": t2_scale, "alpha": alpha})
        cases.append({"name": "hidden.%s" % tag, "transport": "hidden", "loss": loss, "beta": beta,
                      "temperature": 2.0, "t2_scale": True, "alpha": 0.5})
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    inputs = make_inputs(torch.Generator().manual_seed(SEED))
    teachers = {
        "dense": inputs["t_logits"][..., :V],
        "hidden": inputs["t_hidden"].double() @ inputs["t_head"][:V].double().t(),
    }
    cases = make_cases()
    golden = {}
    for case in cases:
        for source, divergence in (("trl", trl_divergence), ("f", f_divergence)):
            g = case_goldens(divergence, inputs, teachers[case["transport"]], case)
            for key, value in g.items():
                if not torch.isfinite(value).all():
                    raise RuntimeError("non-finite golden %s.%s.%s" % (source, case["name"], key))
                golden["golden.%s.%s.%s" % (source, case["name"], key)] = value.double().contiguous()
        a, b = golden["golden.trl.%s.loss" % case["name"]], golden["golden.f.%s.loss" % case["name"]]
        if abs(a - b) > 1e-12 * abs(b):  # two formulations of one definition
            raise RuntimeError("TRL and F disagree on %s: %r vs %r" % (case["name"], a.item(), b.item()))
    keep = inputs["labels"] != -100
    h, w = inputs["h"][keep], inputs["w"]
    tensors = {
        "input.h": h, "input.w": w, "input.z": h @ w.t(), "input.targets": inputs["labels"][keep],
        "input.t_logits": inputs["t_logits"][keep], "input.t_hidden": inputs["t_hidden"][keep],
        "input.t_head": inputs["t_head"],
    }
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    tensors.update(golden)
    save_file(tensors, os.path.join(args.out, "trl.safetensors"))
    with open(os.path.join(args.out, "cases.json"), "w") as f:
        json.dump({"vocab": V, "cases": cases}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
