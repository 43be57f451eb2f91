#!/usr/bin/env python3
"""The reference side of instruction_data_test.sh, from transformers itself.

`make --tokenizer DIR --out OUT` writes, with the real Qwen3 tokenizer (DIR:
tokenizer.json + tokenizer_config.json with its chat template):
  OUT/student, OUT/teacher  tiny Qwen3 models (transformers, seeded); the
                            teacher's vocabulary padded past the tokenizer's
  OUT/chat.jsonl            conversations (system, multi-turn, reasoning)
  OUT/pc.jsonl              prompt/completion pairs (TRL's format)
and `reference --out OUT --seq-len L` prints JSON with, for each dataset, the
student's loss over the response targets only (labels -100 elsewhere, as
transformers' loss masks them), KL(teacher || student) and top-1 agreement
at T = 1, and one distillation step's ce / kd / feature losses, all in float64
from the models' own forward passes, example by example (no packing).

The response rule is written here from the issue, independently of the C++:
  prompt_completion: encode(prompt) + encode(completion) + [eos], the response
    is the completion's ids and the EOS;
  chat: render once with apply_chat_template; an assistant message's span
    starts where apply_chat_template(messages[:i], add_generation_prompt=True)
    ends and runs through the "<|im_end|>" that closes it; a token is in the
    response when its characters (tokenizer offsets) lie in a span.
Examples longer than L + 1 tokens keep their first L + 1.
"""
import argparse
import json
import os
import shutil

import torch
import transformers

SYSTEM = "You are a careful assistant who answers in one sentence."
CHATS = [
    [{"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "The capital of France is Paris."}],
    [{"role": "system", "content": SYSTEM},
     {"role": "user", "content": "Name a prime number larger than ten."},
     {"role": "assistant", "content": "Eleven is a prime number larger than ten."}],
    [{"role": "user", "content": "Continue: The jury said it did find that"},
     {"role": "assistant", "content": "the election was conducted fairly."},
     {"role": "user", "content": "And then?"},
     {"role": "assistant", "content": "It praised the city for the manner in which it was run."}],
    [{"role": "user", "content": "Translate 'thank you' to German."},
     {"role": "assistant", "content": "Danke schön — that is 'thank you' in German."}],
    [{"role": "user", "content": "Think first: what is 6 times 7?"},
     {"role": "assistant", "reasoning_content": "6 * 7 = 42.", "content": "It is 42."}],
    [{"role": "system", "content": SYSTEM},
     {"role": "user", "content": "  Why is the sky blue?\n"},
     {"role": "assistant", "content": "Rayleigh scattering favours short wavelengths.\n\nSo blue light dominates."}],
    [{"role": "user", "content": "Say hi."},
     {"role": "assistant", "content": "Hi!"},
     {"role": "user", "content": "Say bye."},
     {"role": "assistant", "content": "Bye!"},
     {"role": "user", "content": "Once more?"},
     {"role": "assistant", "content": "Bye again!"}],
    [{"role": "user", "content": "Write the numbers from one to thirty in words, separated by commas."},
     {"role": "assistant", "content": ", ".join(
         "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen twenty twenty-one twenty-two twenty-three twenty-four "
         "twenty-five twenty-six twenty-seven twenty-eight twenty-nine thirty".split()) + "."}],
]
PAIRS = [
    {"prompt": "The capital of Italy is", "completion": " Rome."},
    {"prompt": "Q: What colour is grass?\nA:", "completion": " Green."},
    {"prompt": "Complete the proverb: A stitch in time", "completion": " saves nine."},
    {"prompt": "2 + 2 =", "completion": " 4"},
    {"prompt": "Über den Wolken", "completion": " muss die Freiheit wohl grenzenlos sein."},
]


def tokenizer_of(path):
    return transformers.AutoTokenizer.from_pretrained(path)


def make(args):
    tok = tokenizer_of(args.tokenizer)
    vocab = len(tok)  # every id the tokenizer can produce
    torch.manual_seed(7)
    common = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_key_value_heads=1,
                  head_dim=16, max_position_embeddings=512, rope_theta=10000.0, rms_norm_eps=1e-6,
                  torch_dtype="float32")
    models = {
        "student": transformers.Qwen3Config(vocab_size=vocab, num_hidden_layers=2, tie_word_embeddings=True,
                                            **common),
        # 3 layers, an untied head, the vocabulary padded to a multiple of 128 (as real checkpoints are).
        "teacher": transformers.Qwen3Config(vocab_size=(vocab + 127) // 128 * 128, num_hidden_layers=3,
                                            tie_word_embeddings=False, **common),
    }
    embed = torch.randn(models["teacher"].vocab_size, 32) * 0.3
    for name, config in models.items():
        model = transformers.Qwen3ForCausalLM(config)
        with torch.no_grad():  # larger weights than the init: peaked, different distributions
            for p in model.parameters():
                if p.dim() >= 2:
                    p.normal_(0.0, 0.3)
            # One embedding (and the teacher's head equal to it), so the two often agree.
            model.model.embed_tokens.weight.copy_(embed[: config.vocab_size])
            if not config.tie_word_embeddings:
                model.lm_head.weight.copy_(embed[: config.vocab_size])
        out = os.path.join(args.out, name)
        model.save_pretrained(out, safe_serialization=True)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(args.tokenizer, f), os.path.join(out, f))
    with open(os.path.join(args.out, "chat.jsonl"), "w", encoding="utf-8") as f:
        for messages in CHATS:
            f.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
            f.write("\n")  # blank lines are skipped
    with open(os.path.join(args.out, "pc.jsonl"), "w", encoding="utf-8") as f:
        for pair in PAIRS:
            f.write(json.dumps(pair, ensure_ascii=False) + "\n")


def chat_example(tok, messages):
    text = tok.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = tok.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        assert text.startswith(prefix), (i, prefix, text)
        end = text.index("<|im_end|>", len(prefix)) + len("<|im_end|>")
        spans.append((len(prefix), end))
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [any(s <= b and e <= t for s, t in spans) for b, e in enc["offset_mapping"]]
    return enc["input_ids"], mask


def pc_example(tok, pair):
    prompt = tok.encode(pair["prompt"], add_special_tokens=False)
    completion = tok.encode(pair["completion"], add_special_tokens=False) + [tok.eos_token_id]
    return prompt + completion, [False] * len(prompt) + [True] * len(completion)


def examples(tok, fmt, seq_len):
    raw = [chat_example(tok, m) for m in CHATS] if fmt == "chat" else [pc_example(tok, p) for p in PAIRS]
    out = []
    for ids, mask in raw:
        ids, mask = ids[: seq_len + 1], mask[: seq_len + 1]
        if any(mask[1:]):
            out.append((ids, mask))
    return out


def load(path):
    model = transformers.AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float64)
    model.eval()
    return model


def example_terms(student, teacher, ids, mask, vocab, args):
    x = torch.tensor([ids[:-1]])
    keep = torch.tensor(mask[1:])
    y = torch.tensor(ids[1:])[keep]
    s_out = student(x, output_hidden_states=True)
    t_out = teacher(x, output_hidden_states=True)
    zs = s_out.logits[0][keep]
    zt = t_out.logits[0][keep][:, :vocab]
    ls, lt = zs.log_softmax(-1), zt.log_softmax(-1)
    T = args.temperature
    lsT, ltT = (zs / T).log_softmax(-1), (zt / T).log_softmax(-1)
    # Layer i's output is hidden_states[i + 1] (hidden_states[0]: the embeddings).
    fs = s_out.hidden_states[args.student_layer + 1][0][keep]
    ft = t_out.hidden_states[args.teacher_layer + 1][0][keep]
    return {
        "n": int(keep.sum()),
        "ce": float(-ls.gather(1, y[:, None]).sum()),
        "teacher_ce": float(-lt.gather(1, y[:, None]).sum()),
        "kl1": float((lt.exp() * (lt - ls)).sum()),
        "agree": float((ls.argmax(1) == lt.argmax(1)).sum()),
        "kdT": float((ltT.exp() * (ltT - lsT)).sum() * T * T),
        "feature_mse": float(((fs - ft) ** 2).mean(-1).sum()),
    }


def reference(args):
    tok = tokenizer_of(os.path.join(args.out, "student"))
    student, teacher = load(os.path.join(args.out, "student")), load(os.path.join(args.out, "teacher"))
    vocab = student.config.vocab_size
    result = {}
    with torch.no_grad():
        for fmt in ("chat", "prompt_completion"):
            sums = {}
            exs = examples(tok, fmt, args.seq_len)
            for ids, mask in exs:
                for k, v in example_terms(student, teacher, ids, mask, vocab, args).items():
                    sums[k] = sums.get(k, 0.0) + v
            n = sums["n"]
            ce, kd = sums["ce"] / n, sums["kdT"] / n
            result[fmt] = {
                "examples": len(exs), "tokens": int(n), "loss": ce, "kl": sums["kl1"] / n,
                "top1_agreement": sums["agree"] / n, "teacher_loss": sums["teacher_ce"] / n,
                "step": {"ce_loss": ce, "kd_loss": kd, "feature": sums["feature_mse"] / n,
                         "loss": args.alpha * kd + (1 - args.alpha) * ce + args.feature_weight * sums["feature_mse"] / n},
            }
    print(json.dumps(result))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["make", "reference"])
    ap.add_argument("--tokenizer")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--student-layer", type=int, default=0)
    ap.add_argument("--teacher-layer", type=int, default=1)
    ap.add_argument("--feature-weight", type=float, default=0.1)
    args = ap.parse_args()
    torch.set_num_threads(2)
    make(args) if args.command == "make" else reference(args)


if __name__ == "__main__":
    main()
