// HfTokenizer::EncodeWithOffsets: the pipeline of Encode run on text aligned
// to the original (Note [Offsets] in hf_tokenizer_internal.h), whole and on
// the calling thread, apart from Encode's fast paths.
#include <algorithm>

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
  const int64_t limit_hits = hf::RegexLimitHits();
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
  if (hf::RegexLimitHits() != limit_hits) return hf::RegexLimitError(text.size());
  return enc;
}

}  // namespace distill::worker
