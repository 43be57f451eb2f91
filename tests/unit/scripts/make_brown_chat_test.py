#!/usr/bin/env python3
"""scripts/make_brown_chat.py on a small corpus in prepare_brown.sh's layout
(one tokenized sentence per line, blank lines between paragraphs), whose
sentences say where they are: every answer can be checked to be the sentence
that follows its passage. Run by ctest as scripts.make_brown_chat."""

import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts",
                      "make_brown_chat.py")
PARAGRAPHS = 40
SENTENCES = 6  # per paragraph


def corpus(split):
    """Paragraph p, sentence k: `` Sentence k of paragraph p in SPLIT , said he '' ."""
    paragraphs = []
    for p in range(PARAGRAPHS):
        lines = [f"`` Sentence {k} of paragraph {p} in {split} , said he '' ." for k in
                 range(SENTENCES)]
        if p % 10 == 0:
            lines.insert(0, "A heading")  # never a passage or an answer
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs) + "\n"


WHERE = re.compile(r"Sentence (\d+) of paragraph (\d+) in (\w+)")


def where(text):
    """[(k, p, split)] of the sentences quoted in `text`, in order."""
    return [(int(k), int(p), s) for k, p, s in WHERE.findall(text)]


class MakeBrownChatTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.brown = os.path.join(self.tmp.name, "brown")
        os.makedirs(self.brown)
        for split, name in (("train", "train.txt"), ("val", "val.txt")):
            with open(os.path.join(self.brown, name), "w") as f:
                f.write(corpus(split))

    def tearDown(self):
        self.tmp.cleanup()

    def run_script(self, *args, expect_ok=True):
        proc = subprocess.run([sys.executable, SCRIPT, "--brown", self.brown, *args],
                              capture_output=True, text=True)
        if expect_ok:
            self.assertEqual(proc.returncode, 0, proc.stderr)
        return proc

    def make(self, name, *args):
        out = os.path.join(self.tmp.name, name)
        self.run_script("--out", out, *args)
        with open(out, encoding="utf-8") as f:
            return [json.loads(line) for line in f]

    def test_answers_continue_their_passage(self):
        rows = self.make("train.jsonl", "--n", "150", "--seed", "3")
        self.assertEqual(len(rows), 150)
        systems = two_turns = two_sentences = 0
        for row in rows:
            self.assertEqual(list(row), ["messages"])
            messages = row["messages"]
            roles = [m["role"] for m in messages]
            if roles[0] == "system":
                systems += 1
                roles = roles[1:]
            self.assertIn(roles, (["user", "assistant"], ["user", "assistant"] * 2))
            turn = [m for m in messages if m["role"] != "system"]
            passage = where(turn[0]["content"])
            answer = where(turn[1]["content"])
            self.assertIn(len(passage), (1, 2))
            two_sentences += len(passage) == 2
            self.assertEqual(len(answer), 1)
            k, p, split = passage[-1]
            self.assertEqual(split, "train")
            self.assertEqual(answer[0], (k + 1, p, split))
            for (k0, _, _), (k1, _, _) in zip(passage, passage[1:]):
                self.assertEqual(k1, k0 + 1)
            # Detokenized: quotes and commas attached, no Brown `` '' left.
            self.assertEqual(turn[1]["content"],
                             f'"Sentence {k + 1} of paragraph {p} in train, said he".')
            if len(turn) == 4:
                two_turns += 1
                self.assertEqual(turn[2]["content"], "And then?")
                self.assertEqual(where(turn[3]["content"]), [(k + 2, p, split)])
            self.assertNotIn("heading", json.dumps(row))
        # About 30% system, 25% two turns (of those that can), 50% two sentences.
        self.assertGreater(systems, 20)
        self.assertGreater(two_turns, 15)
        self.assertGreater(two_sentences, 40)

    def test_deterministic_and_idempotent(self):
        out = os.path.join(self.tmp.name, "a.jsonl")
        self.run_script("--out", out, "--n", "50")
        with open(out, "rb") as f:
            first = f.read()
        stat = os.stat(out)
        proc = self.run_script("--out", out, "--n", "50")
        self.assertIn("unchanged", proc.stdout)
        self.assertEqual(os.stat(out).st_mtime_ns, stat.st_mtime_ns)
        self.assertEqual(os.stat(out).st_ino, stat.st_ino)
        other = os.path.join(self.tmp.name, "b.jsonl")
        self.run_script("--out", other, "--n", "50")
        with open(other, "rb") as f:
            self.assertEqual(f.read(), first)
        self.run_script("--out", other, "--n", "50", "--seed", "1")
        with open(other, "rb") as f:
            self.assertNotEqual(f.read(), first)
        # Rewritten in place when the content changes, no temp file left.
        self.assertEqual(sorted(os.listdir(self.tmp.name)), ["a.jsonl", "b.jsonl", "brown"])

    def test_eval_split_uses_other_documents(self):
        rows = self.make("eval.jsonl", "--split", "eval", "--n", "60")
        self.assertEqual(len(rows), 60)
        splits = {s for row in rows for m in row["messages"] for _, _, s in where(m["content"])}
        self.assertEqual(splits, {"val"})

    def test_prompt_completion_follows_the_chat_draws(self):
        chat = self.make("chat.jsonl", "--n", "40", "--seed", "5")
        pairs = self.make("pc.jsonl", "--n", "40", "--seed", "5", "--format", "prompt_completion")
        self.assertEqual(len(pairs), 40)
        for row, pair in zip(chat, pairs):
            self.assertEqual(sorted(pair), ["completion", "prompt"])
            turn = [m for m in row["messages"] if m["role"] != "system"]
            self.assertEqual(pair["prompt"], turn[0]["content"] + "\n")
            self.assertEqual(pair["completion"], turn[1]["content"])

    def test_too_many_examples_is_an_error(self):
        out = os.path.join(self.tmp.name, "x.jsonl")
        proc = self.run_script("--out", out, "--n", "100000", expect_ok=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("asked for 100000 examples", proc.stderr)
        self.assertFalse(os.path.exists(out))
        proc = self.run_script("--brown", os.path.join(self.tmp.name, "none"), "--out", out,
                               expect_ok=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("prepare_brown.sh", proc.stderr)


if __name__ == "__main__":
    unittest.main()
