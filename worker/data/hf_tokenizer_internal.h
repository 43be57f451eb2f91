// Internals of HfTokenizer (hf_tokenizer.h): the components a tokenizer.json
// names, each built from its JSON object by a Make*() factory that reports
// errors as InvalidArgument "<file>: <json path>: ...". All components are
// immutable after construction and thread-safe.
#ifndef DISTILL_WORKER_DATA_HF_TOKENIZER_INTERNAL_H_
#define DISTILL_WORKER_DATA_HF_TOKENIZER_INTERNAL_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct pcre2_real_code_8;

namespace distill::worker::hf {

// "<file>: <path>: <what>" as InvalidArgument.
absl::Status JsonError(const std::string& where, const std::string& what);

// Note [Tokenizer limits]: token ids (model vocabulary and added tokens) are
// at most kMaxTokenId, the largest vocabulary config.json allows (Note
// [Config size limits] in worker/model/config.cc): a larger id allocated a
// table of that many entries (std::bad_alloc naming nothing) or, above 2^32,
// wrapped onto another token's id. tokenizer.json nests at most
// kMaxJsonDepth levels: the component builders (Sequence normalizers,
// pre-tokenizers, decoders) recurse once per level.
inline constexpr uint32_t kMaxTokenId = (1u << 24) - 1;
inline constexpr int kMaxJsonDepth = 64;

// Offset of the first byte that is not part of valid UTF-8, or npos.
size_t FindInvalidUtf8(std::string_view text);
// InvalidArgument naming the first bad byte and its offset, if `text` is not
// valid UTF-8 (Note [Invalid UTF-8 policy]).
absl::Status CheckUtf8(std::string_view text);
// Replaces invalid UTF-8 sequences with U+FFFD.
std::string Utf8Lossy(std::string_view bytes);
// Rust regex's Unicode \w (Alphabetic, marks, decimal digits, connector
// punctuation, joiners) and \s (White_Space), which Hugging Face uses.
bool IsRustWordChar(uint32_t c);
bool IsRustSpace(uint32_t c);
// The code point at byte `i` / before byte `end` of valid UTF-8 `s`.
uint32_t CodePointAt(std::string_view s, size_t i);
size_t PrevCodePointStart(std::string_view s, size_t end);
// Length in bytes of the UTF-8 character starting with byte `lead` (1..4).
inline size_t Utf8Len(unsigned char lead) {
  return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

// The GPT-2 byte-level alphabet: each byte <-> one printable character.
const std::array<std::string, 256>& ByteToUnicode();
// Reverse map: the code point of a byte-level character -> byte, or -1.
int UnicodeToByte(uint32_t code_point);

// Note [Regex limits]: a match that stops at one of PCRE2's resource limits
// (match, depth, heap, JIT stack) is not "no match": the text after it would
// be split wrongly, and the ids with it. Each such stop counts here
// (process-wide); Encode compares the count before and after and fails the
// text (ResourceExhausted) instead of returning ids that are silently wrong.
int64_t RegexLimitHits();
// The error of a text of `bytes` bytes whose encoding hit a limit.
absl::Status RegexLimitError(size_t bytes);

// A compiled PCRE2 pattern (UTF + UCP, JIT). Thread-safe: scratch memory is
// per thread.
class Regex {
 public:
  // `literal` compiles `pattern` as a plain string.
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(const std::string& pattern, bool literal);
  ~Regex();
  // Appends the [begin, end) byte ranges of all non-overlapping, non-empty
  // matches in `text` (valid UTF-8).
  void FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* matches) const;
  // Same result as FindAll, computed on `threads` threads for long texts
  // (Note [Parallel regex split]).
  void FindAllParallel(std::string_view text, int threads,
                       std::vector<std::pair<size_t, size_t>>* matches) const;
  // The first non-empty match [*begin, *end) at or after *pos; advances *pos
  // past it. False when there is none.
  bool Next(std::string_view text, size_t* pos, size_t* begin, size_t* end) const;
  // True if the pattern can match the empty string.
  bool can_match_empty() const { return can_match_empty_; }

 private:
  Regex() = default;
  pcre2_real_code_8* code_ = nullptr;
  bool can_match_empty_ = false;
};

// A {"String": s} or {"Regex": r} pattern (Split, Replace).
absl::StatusOr<std::unique_ptr<Regex>> MakePattern(const nlohmann::json& j,
                                                   const std::string& where);

// A run of text during pre-tokenization.
using Pieces = std::vector<std::string>;

// Note [Offsets]: HfTokenizer::EncodeWithOffsets runs the pipeline on text
// that carries, for every byte, the original byte range [begin, end) of the
// character it came from (all bytes of a character carry the same range), as
// Hugging Face's NormalizedString does. A rewrite gives its output the range
// that NormalizedString::transform gives: a character that replaces another
// takes the replaced one's range, an inserted character the range of the
// character before it (Prepend and a prefix space: the first character's;
// Replace: the range of the match's last character), a removed character's
// range is lost. A token covers from its first byte's begin to its last
// byte's end, so a token cut inside a multi-byte character (byte-level BPE,
// byte fallback) covers the whole character, as in Hugging Face. Encode()
// never runs this code (hf_tokenizer_offsets.cc).
using Span = std::pair<size_t, size_t>;
struct AlignedText {
  std::string text;
  std::vector<Span> align;  // one per byte of `text`
};
using AlignedPieces = std::vector<AlignedText>;
// `text` (valid UTF-8) whose bytes are at original offset `base` onwards.
AlignedText MakeAligned(std::string_view text, size_t base);
// Bytes [begin, end) of `t`.
AlignedText SubText(const AlignedText& t, size_t begin, size_t end);
// The original range of bytes [begin, end) (begin < end) of `t`.
Span OriginalSpan(const AlignedText& t, size_t begin, size_t end);
// Replaces every match of `regex` in `t` by `content`, aligned as Hugging
// Face's NormalizedString::replace.
void ReplaceAligned(const Regex& regex, const std::string& content, AlignedText* t);
// Inserts `prefix` before non-empty `t` (NormalizedString::prepend).
void PrependAligned(const std::string& prefix, AlignedText* t);
// Normalizes `t` to Unicode form `type` (NFC, NFD, NFKC or NFKD) with the
// alignment of Rust's unicode-normalization-alignments, which Hugging Face
// uses: each character decomposed alone, marks reordered, composed
// (Note [Offsets]). InvalidArgument naming `type` if that simulation does not
// give ICU's text.
absl::Status NormalizeFormAligned(const std::string& type, AlignedText* t);

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void Normalize(std::string* text) const = 0;
  // Same text as Normalize, with offsets (Note [Offsets]). InvalidArgument
  // naming the normalizer when it cannot give them.
  virtual absl::Status NormalizeAligned(AlignedText* text) const = 0;
  // True if normalizing a text cut just before any '\n' part by part gives
  // the whole text's result (Note [Chunked encoding]).
  virtual bool local() const { return false; }
};
absl::StatusOr<std::unique_ptr<Normalizer>> MakeNormalizer(const nlohmann::json& j,
                                                           const std::string& where);

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits/rewrites every piece. `first_section` is true for the text before
  // the first added token (Metaspace prepend_scheme "first"). `threads` > 1
  // may run a regex split of a long piece on that many threads.
  virtual void PreTokenize(Pieces* pieces, bool first_section, int threads) const = 0;
  // Same pieces as PreTokenize, with offsets (Note [Offsets]).
  virtual void PreTokenizeAligned(AlignedPieces* pieces, bool first_section) const = 0;
  // True for ByteLevel: its byte->character mapping may be left to the model
  // (Note [Lazy byte level]).
  virtual bool is_byte_level() const { return false; }

  // Note [Chunked encoding]: when this pre-tokenizer starts with an Isolated
  // split at the matches of one regex (an Isolated Split, or a ByteLevel without
  // add_prefix_space) and everything after that split works on each piece
  // alone, the regex; null otherwise.
  virtual const Regex* LeadingSplit() const { return nullptr; }
  // With LeadingSplit(): the rest of the pre-tokenizer, applied to the one
  // piece in `pieces` (a match or the gap between two).
  virtual void PreTokenizeRest(Pieces* /*pieces*/) const {}
  // With LeadingSplit(): true when PreTokenizeRest leaves a piece as it is.
  virtual bool RestIsIdentity() const { return true; }
  // True when PreTokenize works on each piece alone, whatever the others and
  // first_section (false for Metaspace with prepend_scheme "first").
  virtual bool PieceLocal() const { return true; }
  // True when PreTokenize leaves pieces as they are (a lazy ByteLevel
  // without regex or prefix space).
  virtual bool IsIdentity() const { return false; }
};
// Note [Lazy byte level]: when a ByteLevel pre-tokenizer is the last step, it
// only splits, and the BPE model maps raw bytes to byte-level symbols itself,
// which saves building the byte-level strings.
absl::StatusOr<std::unique_ptr<PreTokenizer>> MakePreTokenizer(const nlohmann::json& j,
                                                               const std::string& where, bool last,
                                                               bool* lazy_byte_level);

// Shared by the Metaspace pre-tokenizer and decoder.
enum class PrependScheme { kAlways, kFirst, kNever };
absl::StatusOr<PrependScheme> ParsePrependScheme(const nlohmann::json& j, const std::string& where);
std::string MetaspaceReplacement(const nlohmann::json& j);  // default "▁"
// InvalidArgument unless `j` is an object with a string "type".
absl::Status RequireType(const nlohmann::json& j, const std::string& where);

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void Decode(std::vector<std::string>* tokens) const = 0;
};
absl::StatusOr<std::unique_ptr<Decoder>> MakeDecoder(const nlohmann::json& j,
                                                     const std::string& where);

// The BPE model. Encode() appends the ids of one pre-tokenized word.
class BpeModel {
 public:
  static absl::StatusOr<std::unique_ptr<BpeModel>> Make(const nlohmann::json& j,
                                                        const std::string& where);
  // `byte_level`: `word` holds raw bytes to map through the byte-level
  // alphabet (Note [Lazy byte level]).
  void Encode(std::string_view word, bool byte_level, std::vector<uint32_t>* ids) const;
  // The ids Encode appends, and for each the bytes [begin, end) of `word` it
  // covers (a fused unk covers its whole run). Uncached: for offsets only.
  void EncodeWithSpans(std::string_view word, bool byte_level, std::vector<uint32_t>* ids,
                       std::vector<Span>* spans) const;
  std::optional<uint32_t> TokenToId(const std::string& token) const;
  const std::vector<std::string>& id_to_token() const { return id_to_token_; }
  std::optional<uint32_t> byte_fallback_id(unsigned char byte) const;

 private:
  struct Symbol {
    uint32_t id;
    int32_t prev, next;
    bool alive;
  };
  void Merge(std::vector<Symbol>* symbols, std::vector<uint32_t>* ids) const;
  void EncodeUncached(std::string_view word, bool byte_level, std::vector<uint32_t>* ids) const;
  // The initial symbols of `word` (one per character or byte, before
  // merges); with `spans`, the bytes of `word` each covers.
  void InitialSymbols(std::string_view word, bool byte_level, std::vector<Symbol>* symbols,
                      std::vector<Span>* spans) const;
  std::optional<uint32_t> CharId(std::string_view ch) const;
  // ignore_merges: the id of the whole word when it is in the vocabulary.
  std::optional<uint32_t> WholeWordId(std::string_view word, bool byte_level) const;

  absl::flat_hash_map<std::string, uint32_t> vocab_;
  std::vector<std::string> id_to_token_;  // "" for unused ids
  // (left id << 32 | right id) -> (rank, merged id)
  absl::flat_hash_map<uint64_t, std::pair<uint32_t, uint32_t>> merges_;
  std::array<int64_t, 256> byte_level_ids_{};     // id of each byte's byte-level char, or -1
  std::array<int64_t, 256> byte_fallback_ids_{};  // id of "<0xXX>", or -1
  std::optional<uint32_t> unk_id_;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;

  // Word caches (word -> ids): a per-thread L1 that needs no lock (a thread's
  // L1 belongs to one model at a time, keyed by instance_id_), backed by a
  // shared L2 sharded under mutexes so that fresh threads warm up quickly.
  static constexpr size_t kCacheCapacity = 1 << 18;  // per L1, and per L2 in total
  static constexpr size_t kCacheMaxWordBytes = 64;
  static constexpr int kL2Shards = 32;
  const uint64_t instance_id_;
  using Ids = absl::InlinedVector<uint32_t, 4>;
  struct L2Shard {
    std::mutex mu;
    absl::flat_hash_map<std::string, Ids> map;  // GUARDED_BY(mu)
  };
  mutable std::array<L2Shard, kL2Shards> l2_;
  BpeModel();
};

// Note [Added tokens]: as in Hugging Face, added tokens with normalized=false
// are matched in the raw text; then each text between them is normalized whole
// and the normalized=true tokens are matched in that, by their content as the
// normalizer rewrites it (`match`), which is also what Decode() gives for them.
// Word boundaries (single_word) and spaces (lstrip/rstrip) are those of Rust's
// regex \w and \s.
struct AddedToken {
  uint32_t id = 0;
  std::string content;
  std::string match;  // content, normalized when `normalized` (Note [Added tokens])
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

// Post-processor for add_special_tokens=true: ids to put before and after.
struct PostProcessor {
  std::vector<uint32_t> prefix;
  std::vector<uint32_t> suffix;
};
absl::StatusOr<PostProcessor> MakePostProcessor(
    const nlohmann::json& j, const std::string& where,
    const std::function<std::optional<uint32_t>(const std::string&)>& token_to_id);

class Pipeline {
 public:
  std::string name;                             // the file, for errors
  std::unique_ptr<Normalizer> normalizer;       // may be null
  std::unique_ptr<PreTokenizer> pre_tokenizer;  // may be null
  bool lazy_byte_level = false;
  std::unique_ptr<BpeModel> model;
  PostProcessor post_processor;
  std::unique_ptr<Decoder> decoder;                  // may be null
  std::vector<AddedToken> added;                     // sorted by match length, longest first
  std::unordered_map<uint32_t, size_t> added_by_id;  // id -> index in `added`
  // Bytes that start the `match` of an added token, [normalized] per kind.
  std::array<std::array<bool, 256>, 2> added_first_byte{};
  bool has_normalized_added = false;  // any added token with normalized=true

  // One section of text or one added token.
  struct Section {
    std::string_view text;
    int64_t added_index = -1;  // index in `added`, or -1 for text
  };
  // Splits at the added tokens with the given `normalized` flag
  // (Note [Added tokens]).
  std::vector<Section> SplitAdded(std::string_view text, bool normalized) const;
  // The pre-tokenized words of a text section (normalized first unless
  // `is_normalized`).
  Pieces PreTokenize(std::string_view text, bool first_section, int threads,
                     bool is_normalized = false) const;
  // Appends the ids of one text section. With a LeadingSplit() pre-tokenizer
  // the section is encoded in chunks of about `chunk_bytes` on up to
  // `threads` threads (Note [Chunked encoding]); otherwise pre-tokenized whole
  // and its words encoded on the threads. `progress` (may be null) is
  // advanced by the bytes done. `is_normalized`: the normalizer already ran.
  void EncodeSection(std::string_view text, bool first_section, int threads, size_t chunk_bytes,
                     std::atomic<uint64_t>* progress, std::vector<uint32_t>* ids,
                     bool is_normalized = false) const;
  // EncodeSection with offsets, whole (Note [Offsets]): the ids are
  // EncodeSection's (chunking never changes them, Note [Chunked encoding]).
  // `text` is aligned to the original; normalized first unless `is_normalized`.
  absl::Status EncodeSectionAligned(AlignedText text, bool first_section, bool is_normalized,
                                    std::vector<uint32_t>* ids, std::vector<Span>* offsets) const;

 private:
  // EncodeSection by chunks; false (and `ids` untouched) when the chunks
  // could not be joined, which the caller then encodes as one chunk.
  bool EncodeChunked(std::string_view text, int threads, size_t chunk_bytes,
                     std::atomic<uint64_t>* progress, std::vector<uint32_t>* ids,
                     bool is_normalized) const;
  void EncodeWhole(std::string_view text, bool first_section, int threads,
                   std::vector<uint32_t>* ids, bool is_normalized) const;
};

}  // namespace distill::worker::hf

#endif  // DISTILL_WORKER_DATA_HF_TOKENIZER_INTERNAL_H_
