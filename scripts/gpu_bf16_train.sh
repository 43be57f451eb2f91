#!/usr/bin/env bash
# A CUDA fine-tune with bf16 weights, fp32 master weights (ShardedAdamW over
# one rank) and activation checkpointing, stopped at step 4 and resumed: the
# GPU side of issue 16, for scripts/gpu_check.sh (step bf16_train). Fails
# unless the job reports bf16 weights, resumes, ends with a finite loss below
# its first and writes a bf16 model.
#   bash scripts/gpu_bf16_train.sh WORKER DIR      (DEVICE=cpu rehearses it here)
set -euo pipefail
W=$1 D=$2
mkdir -p "$D"
cat >"$D/config.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 256, "hidden_size": 256,
 "intermediate_size": 704, "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 4,
 "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false,
 "hidden_act": "silu", "initializer_range": 0.02, "torch_dtype": "float32"}
JSON
python3 - "$D/train.bin" <<'PY'
import struct, sys
text = ("the quick brown fox jumps over the lazy dog. " * 4000).encode()
open(sys.argv[1], "wb").write(struct.pack("<%dI" % len(text), *text))
PY
cat >"$D/spec.yaml" <<YAML
type: finetune
init: config.json
data: {train: train.bin, seq_len: 256}
train: {steps: 8, micro_batch: 4, lr: 0.003, log_every: 1, device: ${DEVICE:-cuda}, precision: bf16,
        activation_checkpointing: true}
checkpoint: {every: 4}
output: out
YAML
"$W" train --spec "$D/spec.yaml" --max-steps-this-run 4 | tee "$D/first.log"
"$W" train --spec "$D/spec.yaml" | tee "$D/second.log"
grep -q "bf16 weights with fp32 master weights" "$D/first.log"
grep -q "resumed from checkpoint at step 4" "$D/second.log"
python3 - "$D/out" <<'PY'
import json, math, struct, sys
d = sys.argv[1]
losses = [json.loads(l)["loss"] for l in open(d + "/metrics.jsonl") if '"train"' in l]
assert len(losses) == 8 and all(math.isfinite(x) for x in losses) and losses[-1] < losses[0], losses
raw = open(d + "/model/model.safetensors", "rb").read()
h = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
assert {v["dtype"] for k, v in h.items() if k != "__metadata__"} == {"BF16"}
print("bf16_train ok: loss", losses[0], "->", losses[-1])
PY
