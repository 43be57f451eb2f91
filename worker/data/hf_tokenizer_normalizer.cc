// The normalizers of the Hugging Face tokenizer (Unicode forms through ICU,
// Lowercase, Strip, StripAccents, Prepend, Replace, Sequence), each with the
// offsets of its output (Note [Offsets]).
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>
#include <unicode/utf8.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/data/hf_tokenizer_internal.h"

namespace distill::worker::hf {
namespace {

std::u16string ToUtf16(std::string_view text) {
  std::u16string out(text.size(), u'\0');
  int32_t len = 0;
  UErrorCode err = U_ZERO_ERROR;
  u_strFromUTF8(reinterpret_cast<UChar*>(out.data()), static_cast<int32_t>(out.size()), &len,
                text.data(), static_cast<int32_t>(text.size()), &err);
  out.resize(U_SUCCESS(err) ? len : 0);
  return out;
}

std::string ToUtf8(const std::u16string& text) {
  std::string out(text.size() * 3, '\0');
  int32_t len = 0;
  UErrorCode err = U_ZERO_ERROR;
  u_strToUTF8(out.data(), static_cast<int32_t>(out.size()), &len,
              reinterpret_cast<const UChar*>(text.data()), static_cast<int32_t>(text.size()), &err);
  out.resize(U_SUCCESS(err) ? len : 0);
  return out;
}

bool IsAscii(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

class UnicodeForm : public Normalizer {
 public:
  UnicodeForm(const UNormalizer2* form, std::string type) : form_(form), type_(std::move(type)) {}
  bool local() const override { return true; }
  absl::Status NormalizeAligned(AlignedText* text) const override {
    if (IsAscii(text->text)) return absl::OkStatus();
    const std::u16string in = ToUtf16(text->text);
    UErrorCode err = U_ZERO_ERROR;
    if (unorm2_isNormalized(form_, reinterpret_cast<const UChar*>(in.data()),
                            static_cast<int32_t>(in.size()), &err) &&
        U_SUCCESS(err)) {
      return absl::OkStatus();
    }
    return NormalizeFormAligned(type_, text);
  }
  void Normalize(std::string* text) const override {
    if (IsAscii(*text)) return;  // ASCII is invariant under every form
    const std::u16string in = ToUtf16(*text);
    UErrorCode err = U_ZERO_ERROR;
    const auto* src = reinterpret_cast<const UChar*>(in.data());
    const int32_t n = static_cast<int32_t>(in.size());
    if (unorm2_isNormalized(form_, src, n, &err) && U_SUCCESS(err)) return;
    err = U_ZERO_ERROR;
    std::u16string out(in.size() * 4 + 16, u'\0');
    const int32_t len = unorm2_normalize(form_, src, n, reinterpret_cast<UChar*>(out.data()),
                                         static_cast<int32_t>(out.size()), &err);
    if (U_FAILURE(err)) return;
    out.resize(len);
    *text = ToUtf8(out);
  }

 private:
  const UNormalizer2* form_;
  std::string type_;  // NFC, NFD, NFKC or NFKD
};

// As Rust's char::to_lowercase, which Hugging Face applies to each character
// alone: full mappings (U+0130 -> "i\u0307") but no context (no final sigma).
class Lowercase : public Normalizer {
 public:
  bool local() const override { return true; }
  // Every character's lowercase takes its range (Note [Offsets]).
  absl::Status NormalizeAligned(AlignedText* text) const override {
    AlignedText out;
    for (size_t i = 0; i < text->text.size();) {
      const size_t len = Utf8Len(static_cast<unsigned char>(text->text[i]));
      std::string lowered = text->text.substr(i, len);
      Normalize(&lowered);
      out.text += lowered;
      out.align.insert(out.align.end(), lowered.size(), text->align[i]);
      i += len;
    }
    *text = std::move(out);
    return absl::OkStatus();
  }
  void Normalize(std::string* text) const override {
    if (IsAscii(*text)) {
      for (char& c : *text) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      }
      return;
    }
    std::string out;
    out.reserve(text->size());
    for (size_t i = 0; i < text->size();) {
      const auto lead = static_cast<unsigned char>((*text)[i]);
      const size_t len = Utf8Len(lead);
      if (lead < 0x80) {
        out += static_cast<char>(lead >= 'A' && lead <= 'Z' ? lead - 'A' + 'a' : lead);
      } else {
        const std::u16string in = ToUtf16(std::string_view(*text).substr(i, len));
        char16_t lowered[8];
        UErrorCode err = U_ZERO_ERROR;
        const int32_t n = u_strToLower(reinterpret_cast<UChar*>(lowered), 8,
                                       reinterpret_cast<const UChar*>(in.data()),
                                       static_cast<int32_t>(in.size()), "", &err);
        if (U_SUCCESS(err)) {
          out += ToUtf8(std::u16string(lowered, n));
        } else {
          out.append(*text, i, len);
        }
      }
      i += len;
    }
    *text = std::move(out);
  }
};

class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void Normalize(std::string* text) const override {
    const auto [begin, end] = Kept(*text);
    *text = text->substr(begin, end - begin);
  }
  absl::Status NormalizeAligned(AlignedText* text) const override {
    const auto [begin, end] = Kept(text->text);
    *text = SubText(*text, begin, end);
    return absl::OkStatus();
  }

 private:
  // The bytes [begin, end) that stripping keeps.
  std::pair<size_t, size_t> Kept(const std::string& text) const {
    size_t begin = 0, end = text.size();
    if (left_) {
      while (begin < end && IsRustSpace(CodePointAt(text, begin))) {
        begin += Utf8Len(static_cast<unsigned char>(text[begin]));
      }
    }
    if (right_) {
      while (end > begin) {
        const size_t prev = PrevCodePointStart(text, end);
        if (!IsRustSpace(CodePointAt(text, prev))) break;
        end = prev;
      }
    }
    return {begin, end};
  }

  bool left_, right_;
};

// Removes every mark (Mn, Mc, Me), as Hugging Face's StripAccents does.
class StripAccents : public Normalizer {
 public:
  bool local() const override { return true; }
  void Normalize(std::string* text) const override {
    if (IsAscii(*text)) return;
    std::string out;
    for (size_t i = 0; i < text->size();) {
      const size_t len = Utf8Len(static_cast<unsigned char>((*text)[i]));
      if ((U_GET_GC_MASK(CodePointAt(*text, i)) & U_GC_M_MASK) == 0) out.append(*text, i, len);
      i += len;
    }
    *text = std::move(out);
  }
  absl::Status NormalizeAligned(AlignedText* text) const override {
    AlignedText out;
    for (size_t i = 0; i < text->text.size();) {
      const size_t len = Utf8Len(static_cast<unsigned char>(text->text[i]));
      if ((U_GET_GC_MASK(CodePointAt(text->text, i)) & U_GC_M_MASK) == 0) {
        out.text.append(text->text, i, len);
        out.align.insert(out.align.end(), text->align.begin() + static_cast<std::ptrdiff_t>(i),
                         text->align.begin() + static_cast<std::ptrdiff_t>(i + len));
      }
      i += len;
    }
    *text = std::move(out);
    return absl::OkStatus();
  }
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string prefix) : prefix_(std::move(prefix)) {}
  void Normalize(std::string* text) const override {
    if (!text->empty()) text->insert(0, prefix_);
  }
  absl::Status NormalizeAligned(AlignedText* text) const override {
    PrependAligned(prefix_, text);
    return absl::OkStatus();
  }

 private:
  std::string prefix_;
};

class Replace : public Normalizer {
 public:
  Replace(std::unique_ptr<Regex> regex, std::string content)
      : regex_(std::move(regex)), content_(std::move(content)) {}
  void Normalize(std::string* text) const override {
    std::vector<std::pair<size_t, size_t>> matches;
    regex_->FindAll(*text, &matches);
    if (matches.empty()) return;
    std::string out;
    size_t last = 0;
    for (const auto& [begin, end] : matches) {
      out.append(*text, last, begin - last);
      out += content_;
      last = end;
    }
    out.append(*text, last, std::string::npos);
    *text = std::move(out);
  }
  absl::Status NormalizeAligned(AlignedText* text) const override {
    ReplaceAligned(*regex_, content_, text);
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<Regex> regex_;
  std::string content_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps)
      : steps_(std::move(steps)) {}
  void Normalize(std::string* text) const override {
    for (const auto& step : steps_) step->Normalize(text);
  }
  absl::Status NormalizeAligned(AlignedText* text) const override {
    for (const auto& step : steps_) RETURN_IF_ERROR(step->NormalizeAligned(text));
    return absl::OkStatus();
  }
  bool local() const override {
    return std::all_of(steps_.begin(), steps_.end(), [](const auto& s) { return s->local(); });
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

const UNormalizer2* Form(const std::string& type) {
  UErrorCode err = U_ZERO_ERROR;
  if (type == "NFC") return unorm2_getNFCInstance(&err);
  if (type == "NFD") return unorm2_getNFDInstance(&err);
  if (type == "NFKC") return unorm2_getNFKCInstance(&err);
  return unorm2_getNFKDInstance(&err);
}

// One output character of a Unicode normalization and its change, as
// unicode-normalization-alignments gives them to NormalizedString::transform:
// 0 replaces the next input character, -n also removes the n after it, +1 is
// inserted.
struct CharChange {
  UChar32 cp;
  int change;
};

std::u16string Normalized(const UNormalizer2* form, const std::u16string& in) {
  std::u16string out(in.size() * 4 + 16, u'\0');
  UErrorCode err = U_ZERO_ERROR;
  const int32_t len = unorm2_normalize(
      form, reinterpret_cast<const UChar*>(in.data()), static_cast<int32_t>(in.size()),
      reinterpret_cast<UChar*>(out.data()), static_cast<int32_t>(out.size()), &err);
  out.resize(U_SUCCESS(err) ? len : 0);
  return out;
}

std::vector<UChar32> CodePoints(const std::u16string& s) {
  std::vector<UChar32> out;
  for (int32_t i = 0; i < static_cast<int32_t>(s.size());) {
    UChar32 c;
    U16_NEXT(s.data(), i, static_cast<int32_t>(s.size()), c);
    out.push_back(c);
  }
  return out;
}

// Each character decomposed alone (its first character replaces it, the rest
// are inserted), then marks sorted by combining class within each run.
std::vector<CharChange> Decompose(const UNormalizer2* decomposer, std::string_view text) {
  std::vector<CharChange> items;
  for (size_t i = 0; i < text.size();) {
    const size_t len = Utf8Len(static_cast<unsigned char>(text[i]));
    const std::vector<UChar32> d = CodePoints(Normalized(decomposer, ToUtf16(text.substr(i, len))));
    for (size_t k = 0; k < d.size(); ++k) items.push_back({d[k], k == 0 ? 0 : 1});
    i += len;
  }
  for (size_t i = 0; i < items.size();) {
    size_t j = i;
    while (j < items.size() && u_getCombiningClass(items[j].cp) != 0) ++j;
    std::stable_sort(items.begin() + static_cast<std::ptrdiff_t>(i),
                     items.begin() + static_cast<std::ptrdiff_t>(j),
                     [](const CharChange& a, const CharChange& b) {
                       return u_getCombiningClass(a.cp) < u_getCombiningClass(b.cp);
                     });
    i = j == i ? i + 1 : j;
  }
  return items;
}

// Canonical composition (UAX #15); a composite's change absorbs the mark's.
std::vector<CharChange> Compose(const UNormalizer2* composer, std::vector<CharChange> items) {
  if (items.empty()) return items;
  std::vector<CharChange> out = {items[0]};
  size_t starter = 0;
  int last_class = u_getCombiningClass(items[0].cp) == 0 ? 0 : 256;
  for (size_t i = 1; i < items.size(); ++i) {
    const int cls = u_getCombiningClass(items[i].cp);
    const UChar32 composite = unorm2_composePair(composer, out[starter].cp, items[i].cp);
    if (composite >= 0 && (last_class < cls || last_class == 0)) {
      out[starter].cp = composite;
      out[starter].change += items[i].change - 1;
      continue;
    }
    if (cls == 0) starter = out.size();
    last_class = cls;
    out.push_back(items[i]);
  }
  return out;
}

void AppendUtf8(UChar32 cp, std::string* out) {
  char buf[4];
  int32_t len = 0;
  UBool error = false;
  U8_APPEND(buf, len, 4, cp, error);
  if (!error) out->append(buf, static_cast<size_t>(len));
}

}  // namespace

absl::Status NormalizeFormAligned(const std::string& type, AlignedText* t) {
  UErrorCode err = U_ZERO_ERROR;
  const bool compat = type == "NFKC" || type == "NFKD";
  const bool compose = type == "NFC" || type == "NFKC";
  const UNormalizer2* decomposer =
      compat ? unorm2_getNFKDInstance(&err) : unorm2_getNFDInstance(&err);
  const UNormalizer2* composer = unorm2_getNFCInstance(&err);
  std::vector<CharChange> items = Decompose(decomposer, t->text);
  if (compose) items = Compose(composer, std::move(items));
  // NormalizedString::transform, character by character.
  AlignedText out;
  size_t pos = 0;  // byte of t->text that the next replacing character takes
  for (const CharChange& item : items) {
    const size_t before = out.text.size();
    AppendUtf8(item.cp, &out.text);
    Span span;
    if (item.change > 0) {
      span = pos > 0 ? t->align[pos - 1] : Span(t->align[0].first, t->align[0].first);
    } else {
      if (pos >= t->text.size()) break;  // the check below reports it
      span = t->align[pos];
      for (int k = 0; k <= -item.change && pos < t->text.size(); ++k) {
        pos += Utf8Len(static_cast<unsigned char>(t->text[pos]));
      }
    }
    out.align.insert(out.align.end(), out.text.size() - before, span);
  }
  // The simulation must give ICU's text, else its offsets would be guesses.
  const UNormalizer2* form =
      compose ? (compat ? unorm2_getNFKCInstance(&err) : composer) : decomposer;
  std::string expected;
  for (UChar32 c : CodePoints(Normalized(form, ToUtf16(t->text)))) AppendUtf8(c, &expected);
  if (U_FAILURE(err) || out.text != expected || pos != t->text.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("normalizer ", type, " cannot give offsets for this text (its alignment ",
                     "differs from the Unicode normalization)"));
  }
  *t = std::move(out);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Normalizer>> MakeNormalizer(const nlohmann::json& j,
                                                           const std::string& where) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    return JsonError(where, "expected an object with a string \"type\"");
  }
  const std::string type = j["type"].get<std::string>();
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    return std::make_unique<UnicodeForm>(Form(type), type);
  }
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "StripAccents") return std::make_unique<StripAccents>();
  if (type == "Strip") {
    return std::make_unique<Strip>(j.value("strip_left", true), j.value("strip_right", true));
  }
  if (type == "Prepend") {
    if (!j.contains("prepend") || !j["prepend"].is_string()) {
      return JsonError(where + ".prepend", "expected a string");
    }
    return std::make_unique<Prepend>(j["prepend"].get<std::string>());
  }
  if (type == "Replace") {
    ASSIGN_OR_RETURN(std::unique_ptr<Regex> regex,
                     MakePattern(j.value("pattern", nlohmann::json()), where + ".pattern"));
    if (!j.contains("content") || !j["content"].is_string()) {
      return JsonError(where + ".content", "expected a string");
    }
    return std::make_unique<Replace>(std::move(regex), j["content"].get<std::string>());
  }
  if (type == "Sequence") {
    if (!j.contains("normalizers") || !j["normalizers"].is_array()) {
      return JsonError(where + ".normalizers", "expected an array");
    }
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (size_t i = 0; i < j["normalizers"].size(); ++i) {
      ASSIGN_OR_RETURN(
          std::unique_ptr<Normalizer> step,
          MakeNormalizer(j["normalizers"][i], absl::StrCat(where, ".normalizers[", i, "]")));
      steps.push_back(std::move(step));
    }
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  return JsonError(where + ".type", absl::StrCat("unsupported normalizer type \"", type, "\""));
}

}  // namespace distill::worker::hf
