// Text utilities of the Hugging Face tokenizer: UTF-8 checks, the byte-level
// alphabet, PCRE2 regexes (the normalizers are in hf_tokenizer_normalizer.cc).
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/data/hf_tokenizer_internal.h"

namespace distill::worker::hf {

absl::Status JsonError(const std::string& where, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

size_t FindInvalidUtf8(std::string_view text) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const int32_t n = static_cast<int32_t>(text.size());
  int32_t i = 0;
  while (i < n) {
    if (s[i] < 0x80) {
      ++i;
      continue;
    }
    const int32_t start = i;
    UChar32 c;
    U8_NEXT(s, i, n, c);
    if (c < 0) return static_cast<size_t>(start);
  }
  return std::string_view::npos;
}

absl::Status CheckUtf8(std::string_view text) {
  const size_t bad = FindInvalidUtf8(text);
  if (bad == std::string_view::npos) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "text is not valid UTF-8: bad byte 0x",
      absl::Hex(static_cast<unsigned char>(text[bad]), absl::kZeroPad2), " at byte offset ", bad));
}

std::string Utf8Lossy(std::string_view bytes) {
  if (FindInvalidUtf8(bytes) == std::string_view::npos) return std::string(bytes);
  std::string out;
  const auto* s = reinterpret_cast<const uint8_t*>(bytes.data());
  const int32_t n = static_cast<int32_t>(bytes.size());
  int32_t i = 0;
  while (i < n) {
    const int32_t start = i;
    UChar32 c;
    U8_NEXT(s, i, n, c);
    if (c < 0) {
      out += "\xEF\xBF\xBD";
    } else {
      out.append(bytes.data() + start, i - start);
    }
  }
  return out;
}

bool IsRustWordChar(uint32_t c) {
  const auto cp = static_cast<UChar32>(c);
  return u_hasBinaryProperty(cp, UCHAR_ALPHABETIC) ||
         (U_GET_GC_MASK(cp) & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) != 0 || c == 0x200C ||
         c == 0x200D;
}

bool IsRustSpace(uint32_t c) {
  return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_WHITE_SPACE);
}

uint32_t CodePointAt(std::string_view s, size_t i) {
  int32_t pos = static_cast<int32_t>(i);
  UChar32 c;
  U8_NEXT(reinterpret_cast<const uint8_t*>(s.data()), pos, static_cast<int32_t>(s.size()), c);
  return static_cast<uint32_t>(c);
}

size_t PrevCodePointStart(std::string_view s, size_t end) {
  size_t i = end - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return i;
}

namespace {

void AppendUtf8(uint32_t cp, std::string* out) {
  char buf[4];
  int32_t len = 0;
  UBool error = false;
  U8_APPEND(buf, len, 4, static_cast<UChar32>(cp), error);
  if (!error) out->append(buf, len);
}

struct ByteLevelTables {
  std::array<std::string, 256> to_unicode;
  std::unordered_map<uint32_t, int> to_byte;
  ByteLevelTables() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const uint32_t cp = printable ? b : 256 + n++;
      AppendUtf8(cp, &to_unicode[b]);
      to_byte[cp] = b;
    }
  }
};

const ByteLevelTables& Tables() {
  static const ByteLevelTables* tables = new ByteLevelTables();
  return *tables;
}

}  // namespace

const std::array<std::string, 256>& ByteToUnicode() { return Tables().to_unicode; }

int UnicodeToByte(uint32_t code_point) {
  const auto& map = Tables().to_byte;
  auto it = map.find(code_point);
  return it == map.end() ? -1 : it->second;
}

// ---------------------------------------------------------------- Regex

namespace {

std::atomic<int64_t> g_regex_limit_hits{0};  // Note [Regex limits]

// Per-thread PCRE2 scratch: match data and a JIT stack big enough for long
// whitespace runs.
struct RegexScratch {
  pcre2_match_data* match_data = pcre2_match_data_create(32, nullptr);
  pcre2_jit_stack* jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  RegexScratch() { pcre2_jit_stack_assign(context, nullptr, jit_stack); }
  ~RegexScratch() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_data_free(match_data);
  }
};

}  // namespace

namespace {

// Note [Rust regex classes]: Hugging Face compiles its regexes with Rust's
// regex crate (or onig with the same Unicode classes), whose \w is Alphabetic,
// marks, Nd, Pc and the joiners and whose \s is White_Space; PCRE2's (UCP) are
// L, N and '_', and Z plus \h\v (U+180E). \w, \W, \s and \S are spelled out
// as Rust's (\d is Nd in both); \W inside [...] and \b keep PCRE2's meaning.
constexpr char kRustWord[] = R"(\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D})";

std::string WithRustClasses(const std::string& pattern) {
  std::string out;
  out.reserve(pattern.size() + 32);
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[++i];
      if (e == 'w') {
        absl::StrAppend(&out, in_class ? "" : "[", kRustWord, in_class ? "" : "]");
      } else if (e == 'W' && !in_class) {
        absl::StrAppend(&out, "[^", kRustWord, "]");
      } else if (e == 's' || e == 'S') {
        out += e == 's' ? R"(\p{White_Space})" : R"(\P{White_Space})";
      } else {
        out += c;
        out += e;
      }
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];  // literal ]
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Regex>> Regex::Compile(const std::string& pattern_in, bool literal) {
  const std::string pattern = literal ? pattern_in : WithRustClasses(pattern_in);
  int error = 0;
  PCRE2_SIZE offset = 0;
  // PCRE2_LITERAL does not allow PCRE2_UCP (nor needs it).
  const uint32_t options = PCRE2_UTF | PCRE2_NO_UTF_CHECK | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   options, &error, &offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    // The offset is in the pattern as compiled (Note [Rust regex classes]).
    return absl::InvalidArgumentError(absl::StrCat(
        "regex /", pattern_in, "/: ", reinterpret_cast<char*>(message),
        pattern == pattern_in ? absl::StrCat(" at offset ", offset)
                              : absl::StrCat(" at offset ", offset, " of /", pattern, "/")));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter on failure
  std::unique_ptr<Regex> regex(new Regex());
  regex->code_ = code;
  uint32_t min_length = 0;
  pcre2_pattern_info(code, PCRE2_INFO_MINLENGTH, &min_length);
  regex->can_match_empty_ = min_length == 0;
  return regex;
}

Regex::~Regex() { pcre2_code_free(code_); }

int64_t RegexLimitHits() { return g_regex_limit_hits.load(std::memory_order_relaxed); }

absl::Status RegexLimitError(size_t bytes) {
  return absl::InvalidArgumentError(absl::StrCat(
      "a pre-tokenizer or normalizer regex hit one of PCRE2's resource limits on a text of ",
      bytes, " bytes: its ids would be wrong (Note [Regex limits])"));
}

bool Regex::Next(std::string_view text, size_t* pos, size_t* begin, size_t* end) const {
  thread_local RegexScratch scratch;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  while (*pos <= text.size()) {
    const int rc = pcre2_match(code_, subject, text.size(), *pos, PCRE2_NO_UTF_CHECK,
                               scratch.match_data, scratch.context);
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc < 0) {  // Note [Regex limits]
      g_regex_limit_hits.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(scratch.match_data);
    if (ov[1] > ov[0]) {
      *begin = ov[0];
      *end = *pos = ov[1];
      return true;
    }
    if (ov[0] >= text.size()) return false;
    *pos = ov[0] + Utf8Len(static_cast<unsigned char>(text[ov[0]]));
  }
  return false;
}

void Regex::FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* matches) const {
  size_t pos = 0, begin = 0, end = 0;
  while (Next(text, &pos, &begin, &end)) matches->emplace_back(begin, end);
}

// Note [Parallel regex split]: the matches of a regex over a text form a chain
// of search positions (0, end of match 1, end of match 2, ...), and the next
// match depends only on the search position (lookarounds see the whole text).
// Each thread searches its own slice [c_k, c_k+1) starting at c_k. Splicing in
// order: if the sequential search position `pos` is <= c_k, no match starts in
// [pos, c_k) (slice k-1 found none), so the sequence continues with slice k's
// matches exactly. If the last match crossed c_k, the search goes on
// sequentially from `pos` until it lands on one of slice k's search positions,
// from where slice k's matches are the sequential ones again. Either way the
// result equals FindAll's. (Regexes that match the empty string are searched
// sequentially.)
void Regex::FindAllParallel(std::string_view text, int threads,
                            std::vector<std::pair<size_t, size_t>>* matches) const {
  const size_t k_count = static_cast<size_t>(std::max(1, threads));
  if (k_count == 1 || can_match_empty_ || text.size() < k_count * 4096) {
    FindAll(text, matches);
    return;
  }
  std::vector<size_t> cut(k_count + 1);
  for (size_t k = 0; k <= k_count; ++k) {
    size_t c = text.size() * k / k_count;
    while (c < text.size() && (static_cast<unsigned char>(text[c]) & 0xC0) == 0x80) ++c;
    cut[k] = c;
  }
  std::vector<std::vector<std::pair<size_t, size_t>>> slices(k_count);
  std::vector<std::thread> workers;
  for (size_t k = 0; k < k_count; ++k) {
    workers.emplace_back([&, k] {
      size_t pos = cut[k], begin = 0, end = 0;
      slices[k].reserve((cut[k + 1] - cut[k]) / 3);
      while (pos < cut[k + 1] && Next(text, &pos, &begin, &end)) {
        if (begin >= cut[k + 1]) break;
        slices[k].emplace_back(begin, end);
      }
    });
  }
  for (std::thread& w : workers) w.join();
  size_t total = matches->size();
  for (const auto& slice : slices) total += slice.size();
  matches->reserve(total + 16);
  size_t pos = 0;
  for (size_t k = 0; k < k_count; ++k) {
    const auto& slice = slices[k];
    size_t from = 0;  // index in `slice` where the sequential chain joins it
    if (pos > cut[k]) {
      // Continue sequentially until a search position of slice k is reached.
      from = slice.size();
      size_t begin = 0, end = 0, probe = pos;
      while (Next(text, &probe, &begin, &end) && begin < cut[k + 1]) {
        matches->emplace_back(begin, end);
        pos = end;
        auto it = std::lower_bound(
            slice.begin(), slice.end(), pos,
            [](const std::pair<size_t, size_t>& m, size_t v) { return m.second < v; });
        if (it != slice.end() && it->second == pos) {  // joined slice k's chain
          from = static_cast<size_t>(it - slice.begin()) + 1;
          break;
        }
      }
      if (from == slice.size()) continue;
    }
    for (size_t i = from; i < slice.size(); ++i) matches->push_back(slice[i]);
    if (!slice.empty() && from < slice.size()) pos = slice.back().second;
  }
}

// A {"String": s} or {"Regex": r} pattern of Split, Replace.
absl::StatusOr<std::unique_ptr<Regex>> MakePattern(const nlohmann::json& j,
                                                   const std::string& where) {
  const bool literal = j.is_object() && j.contains("String") && j["String"].is_string();
  if (literal || (j.is_object() && j.contains("Regex") && j["Regex"].is_string())) {
    auto regex = Regex::Compile(j[literal ? "String" : "Regex"].get<std::string>(), literal);
    if (!regex.ok()) return JsonError(where, std::string(regex.status().message()));
    return regex;
  }
  return JsonError(where, "expected {\"String\": ...} or {\"Regex\": ...}");
}

}  // namespace distill::worker::hf
