#!/usr/bin/env python3
"""Checks that transformers loads models saved by our C++ and computes our logits.

Run by tests/unit/worker/model/llama_hf_test.cc (not by the reference
fixture: the name does not start with hf_). Arguments: pairs SAVED REFERENCE
of model directories. SAVED was written by our SaveHfModel and holds
ours.safetensors {input_ids, logits} with the logits of our forward;
REFERENCE is the transformers-made model it was loaded from.

For each pair: AutoModelForCausalLM.from_pretrained(SAVED) in float32 must
give our logits to 1e-5 relative (Frobenius norm of the difference over the
norm of ours), and the config transformers reads from SAVED must mean the
same model as the one it reads from REFERENCE (RoPE, windows, sizes).
Prints one line per failure to stderr; exits 1 if any.
"""

import os
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
import transformers  # noqa: E402

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
warnings.filterwarnings("ignore")

REL_TOL = 1e-5
# What the model computes with; the rest (dtype, versions, token ids) does not
# change the logits.
KEYS = [
    "architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size",
    "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
    "max_position_embeddings", "rms_norm_eps", "rope_parameters", "tie_word_embeddings",
    "attention_bias", "mlp_bias", "hidden_act", "sliding_window", "use_sliding_window",
    "layer_types",
]


def semantic_config(path):
    return transformers.AutoConfig.from_pretrained(path).to_dict()


def check(saved, reference):
    errors = []
    ours = load_file(os.path.join(saved, "ours.safetensors"))
    model = transformers.AutoModelForCausalLM.from_pretrained(saved, dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = model(input_ids=ours["input_ids"]).logits
    rel = ((theirs - ours["logits"]).norm() / ours["logits"].norm()).item()
    if not rel <= REL_TOL:
        errors.append(f"{saved}: logits differ from ours: relative error {rel:.3g}")
    a, b = semantic_config(saved), semantic_config(reference)
    # Fields the reference's config class declares (a Qwen2Config has no
    # mlp_bias: our extra one means nothing to it).
    for k in (k for k in KEYS if k in b):
        if a.get(k) != b.get(k):
            errors.append(f"{saved}: config {k} reads as {a.get(k)!r}, reference {b.get(k)!r}")
    return errors


def main(argv):
    if len(argv) < 2 or len(argv) % 2:
        print("usage: check_hf_load.py SAVED REFERENCE [SAVED REFERENCE ...]", file=sys.stderr)
        return 2
    torch.set_num_threads(min(2, torch.get_num_threads()))
    errors = []
    for saved, reference in zip(argv[0::2], argv[1::2]):
        errors += check(saved, reference)
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
