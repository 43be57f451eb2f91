#!/usr/bin/env python3
"""Makes a small conversation dataset from the Brown corpus (stdlib only).

Reads the text scripts/prepare_brown.sh writes (--text-only is enough): one
sentence per line, paragraphs separated by blank lines, the train split from
BROWN/train.txt and the eval split from BROWN/val.txt, whose documents are
not in train (prepare_brown.sh splits by document). Each example takes one or
two consecutive sentences of a paragraph as a passage: the user gives the
passage and asks how it goes on, the assistant answers with the sentence that
follows it in the paragraph. Some conversations open with a system message;
some have a second turn ("And then?") answered with the sentence after that.

  --format chat               {"messages": [{"role": ..., "content": ...}, ...]}
  --format prompt_completion  {"prompt": ..., "completion": ...}: the first
                              user message (with a newline) and its answer,
                              from the same draws as chat with the same seed

Deterministic: the same corpus, split, N and seed give the same bytes. The
output is written to a temp file beside it and renamed into place, and left
alone (mtime and all) when its content would not change.

Usage: make_brown_chat.py [--brown DIR] [--split train|eval]
         [--format chat|prompt_completion] [--n N] [--seed S] [--out FILE]
"""

import argparse
import json
import os
import random
import re
import sys
import tempfile

SPLIT_FILES = {"train": "train.txt", "eval": "val.txt"}
DEFAULT_N = {"train": 2000, "eval": 200}
MIN_WORDS, MAX_WORDS = 4, 40  # a sentence outside this range is no passage or answer

SYSTEM_PROMPTS = [
    "You are a helpful assistant who knows American prose of the 1960s.",
    "You continue passages of text with one sentence, in the style of the original.",
    "Answer with a single sentence.",
]
USER_TEMPLATES = [
    "Continue this passage with its next sentence:\n\n{passage}",
    "Here is the beginning of a text:\n\n{passage}\n\nWhat comes next?",
    "{passage}\n\nHow does this go on? Give one sentence.",
    "Read this and write the sentence that follows it:\n\n{passage}",
]
FOLLOW_UP = "And then?"
P_TWO_SENTENCES = 0.5  # passage of two sentences (when the paragraph has them)
P_SYSTEM = 0.3
P_TWO_TURNS = 0.25


def detokenize(line):
    """Brown's space-separated tokens as ordinary prose: `` '' -> quotes, no
    space before closing punctuation or after opening brackets."""
    text = " " + line.strip() + " "
    text = text.replace(" `` ", ' "').replace(" '' ", '" ')
    text = re.sub(r" ([,.;:?!)\]])", r"\1", text)
    text = re.sub(r"([(\[]) ", r"\1", text)
    text = re.sub(r"(?<!\.)\.\.(?=\s|\"|$)", ".", text)  # "Jr. ." -> "Jr.", not "..."
    text = re.sub(r"([?!;])\1+", r"\1", text)  # "did ? ?" -> "did?"
    return re.sub(r"\s+", " ", text).strip()


def read_paragraphs(path):
    """The paragraphs of `path` (blank-line separated), each a list of
    sentences, in file order."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    paragraphs = []
    for block in re.split(r"\n[ \t]*\n", text):
        sentences = [s for s in block.split("\n") if s.strip()]
        if sentences:
            paragraphs.append(sentences)
    return paragraphs


def usable(sentence):
    """A whole sentence of MIN_WORDS..MAX_WORDS tokens: it starts with a
    capital (or an opening quote) and ends with . ? or ! (or a closing quote
    after one), so headings and list fragments are left out."""
    words = sentence.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return False
    first = words[1] if words[0] == "``" and len(words) > 1 else words[0]
    last = words[-2] if words[-1] in ("''", ")") else words[-1]
    return first[:1].isupper() and last in (".", "?", "!")


def candidates(paragraphs):
    """(paragraph, i): sentence i follows sentence i - 1 of its paragraph, and
    both are usable, in file order."""
    out = []
    for p, sentences in enumerate(paragraphs):
        for i in range(1, len(sentences)):
            if usable(sentences[i - 1]) and usable(sentences[i]):
                out.append((p, i))
    return out


def conversation(rng, sentences, i):
    """The messages for the passage ending before sentence i; draws from rng
    in a fixed order whatever the outcome, so every format sees one stream."""
    two_sentences = rng.random() < P_TWO_SENTENCES
    system = rng.choice(SYSTEM_PROMPTS) if rng.random() < P_SYSTEM else None
    template = rng.choice(USER_TEMPLATES)
    two_turns = rng.random() < P_TWO_TURNS
    start = i - 2 if two_sentences and i >= 2 and usable(sentences[i - 2]) else i - 1
    passage = " ".join(detokenize(s) for s in sentences[start:i])
    messages = [] if system is None else [{"role": "system", "content": system}]
    messages.append({"role": "user", "content": template.format(passage=passage)})
    messages.append({"role": "assistant", "content": detokenize(sentences[i])})
    if two_turns and i + 1 < len(sentences) and usable(sentences[i + 1]):
        messages.append({"role": "user", "content": FOLLOW_UP})
        messages.append({"role": "assistant", "content": detokenize(sentences[i + 1])})
    return messages


def make_examples(paragraphs, n, seed, fmt):
    pool = candidates(paragraphs)
    if n > len(pool):
        raise ValueError(f"asked for {n} examples, the text has only {len(pool)} passages")
    rng = random.Random(seed)
    lines = []
    for p, i in rng.sample(pool, n):
        messages = conversation(rng, paragraphs[p], i)
        if fmt == "chat":
            record = {"messages": messages}
        else:
            user = next(m for m in messages if m["role"] == "user")
            answer = next(m for m in messages if m["role"] == "assistant")
            record = {"prompt": user["content"] + "\n", "completion": answer["content"]}
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    return "".join(lines)


def write_if_changed(path, content):
    """Writes `content` to `path` atomically; False when it already held it."""
    data = content.encode("utf-8")
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    except FileNotFoundError:
        pass
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp.", suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Conversations (or prompt/completion pairs) from the prepared Brown corpus.")
    parser.add_argument("--brown", default="./data/brown",
                        help="scripts/prepare_brown.sh's output directory (default ./data/brown)")
    parser.add_argument("--split", choices=sorted(SPLIT_FILES), default="train",
                        help="train (from train.txt) or eval (val.txt: other documents)")
    parser.add_argument("--format", choices=["chat", "prompt_completion"], default="chat")
    parser.add_argument("--n", type=int, default=None,
                        help="examples to write (default 2000 for train, 200 for eval)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None,
                        help="output .jsonl (default ./data/brown_chat/SPLIT.jsonl, or "
                             "SPLIT.prompt_completion.jsonl)")
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = DEFAULT_N[args.split]
    if args.n < 1:
        parser.error(f"--n: expected a positive count, got {args.n}")
    if args.out is None:
        suffix = ".jsonl" if args.format == "chat" else ".prompt_completion.jsonl"
        args.out = os.path.join("data", "brown_chat", args.split + suffix)
    return args


def main(argv=None):
    args = parse_args(argv)
    source = os.path.join(args.brown, SPLIT_FILES[args.split])
    if not os.path.isfile(source):
        print(f"make_brown_chat: {source} not found; run scripts/prepare_brown.sh --text-only "
              f"(--out {args.brown})", file=sys.stderr)
        return 1
    try:
        content = make_examples(read_paragraphs(source), args.n, args.seed, args.format)
    except ValueError as e:
        print(f"make_brown_chat: {source}: {e}", file=sys.stderr)
        return 1
    changed = write_if_changed(args.out, content)
    print(f"make_brown_chat: {args.n} {args.format} examples ({args.split}, seed {args.seed}) "
          f"{'written to' if changed else 'unchanged in'} {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
