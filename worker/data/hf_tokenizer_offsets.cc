// HfTokenizer::EncodeWithOffsets: the pipeline of Encode run on text aligned
// to the original (Note [Offsets] in hf_tokenizer_internal.h), whole and on
// the calling thread, apart from Encode's fast paths.
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/utf16.h>
#include <unicode/utf8.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/data/hf_tokenizer.h"
#include "worker/data/hf_tokenizer_internal.h"

namespace distill::worker {
namespace hf {

AlignedText MakeAligned(std::string_view text, size_t base) {
  AlignedText t;
  t.text = std::string(text);
  t.align.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const size_t len = std::min(Utf8Len(static_cast<unsigned char>(text[i])), text.size() - i);
    t.align.insert(t.align.end(), len, Span(base + i, base + i + len));
    i += len;
  }
  return t;
}

AlignedText SubText(const AlignedText& t, size_t begin, size_t end) {
  AlignedText sub;
  sub.text = t.text.substr(begin, end - begin);
  sub.align.assign(t.align.begin() + static_cast<std::ptrdiff_t>(begin),
                   t.align.begin() + static_cast<std::ptrdiff_t>(end));
  return sub;
}

Span OriginalSpan(const AlignedText& t, size_t begin, size_t end) {
  return {t.align[begin].first, t.align[end - 1].second};
}

// As NormalizedString::replace: the content is inserted after the match is
// removed, so it takes the range of the match's last character.
void ReplaceAligned(const Regex& regex, const std::string& content, AlignedText* t) {
  std::vector<std::pair<size_t, size_t>> matches;
  regex.FindAll(t->text, &matches);
  if (matches.empty()) return;
  AlignedText out;
  size_t last = 0;
  for (const auto& [begin, end] : matches) {
    out.text.append(t->text, last, begin - last);
    out.align.insert(out.align.end(), t->align.begin() + static_cast<std::ptrdiff_t>(last),
                     t->align.begin() + static_cast<std::ptrdiff_t>(begin));
    out.text += content;
    out.align.insert(out.align.end(), content.size(), t->align[end - 1]);
    last = end;
  }
  out.text.append(t->text, last, std::string::npos);
  out.align.insert(out.align.end(), t->align.begin() + static_cast<std::ptrdiff_t>(last),
                   t->align.end());
  *t = std::move(out);
}

// As NormalizedString::prepend: the prefix replaces the first character,
// which is then inserted again; both take the first character's range.
void PrependAligned(const std::string& prefix, AlignedText* t) {
  if (t->text.empty()) return;
  t->text.insert(0, prefix);
  t->align.insert(t->align.begin(), prefix.size(), t->align[0]);
}

namespace {

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

std::u16string ToUtf16(std::string_view text) {
  std::u16string out;
  for (size_t i = 0; i < text.size();) {
    const UChar32 c = static_cast<UChar32>(CodePointAt(text, i));
    if (U_IS_BMP(c)) {
      out += static_cast<char16_t>(c);
    } else {
      out += static_cast<char16_t>(U16_LEAD(c));
      out += static_cast<char16_t>(U16_TRAIL(c));
    }
    i += Utf8Len(static_cast<unsigned char>(text[i]));
  }
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

absl::Status Pipeline::EncodeSectionAligned(AlignedText text, bool first_section,
                                            bool is_normalized, std::vector<uint32_t>* ids,
                                            std::vector<Span>* offsets) const {
  if (normalizer != nullptr && !is_normalized) RETURN_IF_ERROR(normalizer->NormalizeAligned(&text));
  if (text.text.empty()) return absl::OkStatus();
  AlignedPieces pieces;
  pieces.push_back(std::move(text));
  if (pre_tokenizer != nullptr) pre_tokenizer->PreTokenizeAligned(&pieces, first_section);
  std::vector<Span> spans;
  for (const AlignedText& piece : pieces) {
    spans.clear();
    model->EncodeWithSpans(piece.text, lazy_byte_level, ids, &spans);
    for (const auto& [begin, end] : spans) offsets->push_back(OriginalSpan(piece, begin, end));
  }
  return absl::OkStatus();
}

namespace {

// The bytes of `text` that added-token section `k` covers: its match and the
// whitespace its lstrip / rstrip removed, which is the gap before it (unless
// the token before took it with rstrip) and the gap after it (Note [Added
// tokens]), as in Hugging Face's offsets.
Span AddedSpan(const Pipeline& p, const std::vector<Pipeline::Section>& sections, size_t k,
               std::string_view text) {
  auto begin_of = [&](size_t i) {
    return static_cast<size_t>(sections[i].text.data() - text.data());
  };
  auto end_of = [&](size_t i) { return begin_of(i) + sections[i].text.size(); };
  const AddedToken& t = p.added[sections[k].added_index];
  Span span(begin_of(k), end_of(k));
  const bool previous_took_gap =
      k > 0 && sections[k - 1].added_index >= 0 && p.added[sections[k - 1].added_index].rstrip;
  if (t.lstrip && !previous_took_gap) span.first = k > 0 ? end_of(k - 1) : 0;
  if (t.rstrip) span.second = k + 1 < sections.size() ? begin_of(k + 1) : text.size();
  return span;
}

}  // namespace

}  // namespace hf

// Note [Added tokens]: the sections of the raw text, then those of each
// normalized text section.
absl::StatusOr<Encoding> HfTokenizer::EncodeWithOffsets(std::string_view text,
                                                        bool add_special_tokens,
                                                        int /*threads*/) const {
  RETURN_IF_ERROR(hf::CheckUtf8(text));
  const hf::Pipeline& p = *pipeline_;
  Encoding enc;
  auto add_post = [&](const std::vector<uint32_t>& ids) {
    enc.ids.insert(enc.ids.end(), ids.begin(), ids.end());
    enc.offsets.insert(enc.offsets.end(), ids.size(), std::pair<size_t, size_t>(0, 0));
  };
  if (add_special_tokens) add_post(p.post_processor.prefix);
  const std::vector<hf::Pipeline::Section> sections = p.SplitAdded(text, /*normalized=*/false);
  for (size_t s = 0; s < sections.size(); ++s) {
    const hf::Pipeline::Section& section = sections[s];
    const size_t base = static_cast<size_t>(section.text.data() - text.data());
    if (section.added_index >= 0) {
      enc.ids.push_back(p.added[section.added_index].id);
      enc.offsets.push_back(hf::AddedSpan(p, sections, s, text));
      continue;
    }
    hf::AlignedText aligned = hf::MakeAligned(section.text, base);
    if (!p.has_normalized_added) {
      RETURN_IF_ERROR(p.EncodeSectionAligned(std::move(aligned), s == 0, /*is_normalized=*/false,
                                             &enc.ids, &enc.offsets));
      continue;
    }
    if (p.normalizer != nullptr) RETURN_IF_ERROR(p.normalizer->NormalizeAligned(&aligned));
    const std::vector<hf::Pipeline::Section> parts = p.SplitAdded(aligned.text, true);
    for (size_t k = 0; k < parts.size(); ++k) {
      const size_t begin = static_cast<size_t>(parts[k].text.data() - aligned.text.data());
      if (parts[k].added_index >= 0) {
        const hf::Span span = hf::AddedSpan(p, parts, k, aligned.text);
        enc.ids.push_back(p.added[parts[k].added_index].id);
        enc.offsets.push_back(hf::OriginalSpan(aligned, span.first, span.second));
      } else {
        RETURN_IF_ERROR(p.EncodeSectionAligned(
            hf::SubText(aligned, begin, begin + parts[k].text.size()), s == 0 && k == 0,
            /*is_normalized=*/true, &enc.ids, &enc.offsets));
      }
    }
  }
  if (add_special_tokens) add_post(p.post_processor.suffix);
  return enc;
}

}  // namespace distill::worker
