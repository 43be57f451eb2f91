"""Trains the Brown BPE tokenizer with Hugging Face tokenizers' BpeTrainer.

Writes OUT_DIR/tokenizer.json and OUT_DIR/tokenizer_config.json for
scripts/prepare_brown.sh --bpe VOCAB (which tokenizes the splits with
distill-worker). The layout is Qwen2/3's byte-level BPE, which
worker/data/hf_tokenizer*.cc loads and encodes in parallel chunks: NFC, an
Isolated regex split (contractions, letters, single digits, punctuation,
whitespace runs), ByteLevel without its own regex, the ByteLevel decoder. A
byte-level model has no unknown token: any UTF-8 text encodes. One special
token, <|endoftext|> (id 0), ends every document: it is EOS, the document
separator of the .bin shards, and the padding token.

Deterministic: the same training text and vocabulary give the same bytes
(one trainer thread, lines in file order). Idempotent: OUT_DIR/tokenizer.stamp
records what the files were made from (vocabulary, sha256 of the text and of
this script); when it matches, nothing is done. Files are written to temp
files and renamed; an unchanged file is left as it is (and keeps its mtime).

Usage: python train_bpe.py --train TRAIN.txt --vocab V --out OUT_DIR
Prints one line: what it did.
"""

import argparse
import hashlib
import json
import os
import sys

os.environ["RAYON_NUM_THREADS"] = "1"  # deterministic training (set before import)
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from tokenizers import Regex, Tokenizer  # noqa: E402
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

EOS = "<|endoftext|>"
# Qwen2/3's split: single digits keep numbers out of a small vocabulary.
SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
MIN_VOCAB = 256 + 1  # the byte alphabet and EOS
MAX_LENGTH = 1024  # tokenizer_config.json's model_max_length: the models' context


def build(lines, vocab):
    """An untrained layout trained on `lines` (an iterable of str) to `vocab`
    ids in all, EOS included."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, show_progress=False,
                                  special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer=trainer)
    return tok


def tokenizer_config():
    """For transformers' AutoTokenizer and HfTokenizer's eos_id()."""
    return {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None, "eos_token": EOS,
            "pad_token": EOS, "unk_token": None, "model_max_length": MAX_LENGTH,
            "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False}


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def replace_if_changed(path, data):
    """Writes `data` (bytes) to `path` through a temp file; False if equal."""
    if os.path.exists(path):
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True, help="training text (Brown train.txt)")
    parser.add_argument("--vocab", required=True, type=int, help="ids in all, EOS included")
    parser.add_argument("--out", required=True, help="output directory")
    args = parser.parse_args()
    if args.vocab < MIN_VOCAB:
        sys.exit(f"train_bpe: --vocab {args.vocab} is below {MIN_VOCAB} (bytes + EOS)")
    os.makedirs(args.out, exist_ok=True)
    stamp_path = os.path.join(args.out, "tokenizer.stamp")
    stamp = (f"vocab {args.vocab}\ntrain_sha256 {sha256_file(args.train)}\n"
             f"script_sha256 {sha256_file(os.path.abspath(__file__))}\n")
    files = [os.path.join(args.out, n) for n in ("tokenizer.json", "tokenizer_config.json")]
    if all(os.path.exists(p) for p in files + [stamp_path]):
        with open(stamp_path, encoding="utf-8") as f:
            if f.read() == stamp:
                print(f"bpe: cached {files[0]} (vocab {args.vocab})")
                return
    with open(args.train, encoding="utf-8") as f:
        tok = build(f.read().splitlines(), args.vocab)
    if tok.get_vocab_size() != args.vocab or tok.token_to_id(EOS) != 0:
        sys.exit(f"train_bpe: trained {tok.get_vocab_size()} ids with EOS at "
                 f"{tok.token_to_id(EOS)}; want {args.vocab} with EOS at 0 (too little text?)")
    changed = replace_if_changed(files[0], tok.to_str(pretty=True).encode("utf-8") + b"\n")
    config = json.dumps(tokenizer_config(), indent=2).encode("utf-8") + b"\n"
    changed = replace_if_changed(files[1], config) or changed
    replace_if_changed(stamp_path, stamp.encode("utf-8"))
    print(f"bpe: {'trained' if changed else 'retrained, unchanged'} {files[0]} "
          f"(vocab {args.vocab})")


if __name__ == "__main__":
    main()
