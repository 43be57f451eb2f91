// Pre-tokenizers of the Hugging Face tokenizer, as in the Rust
// `tokenizers` crate (Split behaviors, ByteLevel, Metaspace, Digits...).
#include <unicode/utf8.h>

#include <algorithm>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/data/hf_tokenizer_internal.h"

namespace distill::worker::hf {
namespace {

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// The [begin, end) byte ranges of a piece of `size` bytes that a split at the
// regex matches keeps per `behavior` (tokenizers' SplitDelimiterBehavior);
// some may be empty.
std::vector<std::pair<size_t, size_t>> KeptRanges(
    size_t size, const std::vector<std::pair<size_t, size_t>>& matches, Behavior behavior,
    bool invert) {
  struct Segment {
    size_t begin, end;
    bool is_match;
  };
  std::vector<Segment> segments;
  size_t last = 0;
  for (const auto& [begin, end] : matches) {
    if (begin > last) segments.push_back({last, begin, false});
    segments.push_back({begin, end, true});
    last = end;
  }
  if (last < size) segments.push_back({last, size, false});
  if (invert) {
    for (Segment& seg : segments) seg.is_match = !seg.is_match;
  }
  std::vector<std::pair<size_t, size_t>> kept;
  bool previous_match = false;
  switch (behavior) {
    case Behavior::kIsolated:
      for (const Segment& seg : segments) kept.emplace_back(seg.begin, seg.end);
      break;
    case Behavior::kRemoved:
      for (const Segment& seg : segments) {
        if (!seg.is_match) kept.emplace_back(seg.begin, seg.end);
      }
      break;
    case Behavior::kMergedWithPrevious:
      for (const Segment& seg : segments) {
        if (seg.is_match && !previous_match && !kept.empty()) {
          kept.back().second = seg.end;
        } else {
          kept.emplace_back(seg.begin, seg.end);
        }
        previous_match = seg.is_match;
      }
      break;
    case Behavior::kMergedWithNext:
      for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
        if (it->is_match && !previous_match && !kept.empty()) {
          kept.back().first = it->begin;
        } else {
          kept.emplace_back(it->begin, it->end);
        }
        previous_match = it->is_match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    case Behavior::kContiguous:
      for (size_t i = 0; i < segments.size(); ++i) {
        if (i > 0 && segments[i].is_match == previous_match) {
          kept.back().second = segments[i].end;
        } else {
          kept.emplace_back(segments[i].begin, segments[i].end);
        }
        previous_match = segments[i].is_match;
      }
      break;
  }
  return kept;
}

// Splits `s` at the regex matches per `behavior`.
void SplitByMatches(const std::string& s, const std::vector<std::pair<size_t, size_t>>& matches,
                    Behavior behavior, bool invert, Pieces* out) {
  for (const auto& [begin, end] : KeptRanges(s.size(), matches, behavior, invert)) {
    if (end > begin) out->push_back(s.substr(begin, end - begin));
  }
}

// SplitAll with offsets (Note [Offsets]).
void SplitAllAligned(const Regex& regex, Behavior behavior, bool invert, AlignedPieces* pieces) {
  AlignedPieces out;
  std::vector<std::pair<size_t, size_t>> matches;
  for (const AlignedText& piece : *pieces) {
    matches.clear();
    regex.FindAll(piece.text, &matches);
    for (const auto& [begin, end] : KeptRanges(piece.text.size(), matches, behavior, invert)) {
      if (end > begin) out.push_back(SubText(piece, begin, end));
    }
  }
  *pieces = std::move(out);
}

constexpr size_t kParallelMinBytes = 1 << 20;

// Applies a regex split to every piece.
void SplitAll(const Regex& regex, Behavior behavior, bool invert, Pieces* pieces, int threads = 1) {
  Pieces out;
  size_t bytes = 0;
  for (const std::string& piece : *pieces) bytes += piece.size();
  out.reserve(pieces->size() + bytes / 4);
  std::vector<std::pair<size_t, size_t>> matches;
  for (const std::string& piece : *pieces) {
    if (threads > 1 && piece.size() >= kParallelMinBytes) {
      matches.clear();
      regex.FindAllParallel(piece, threads, &matches);
      if (behavior == Behavior::kIsolated && !invert) {
        size_t last = 0;
        for (const auto& [begin, end] : matches) {
          if (begin > last) out.push_back(piece.substr(last, begin - last));
          out.push_back(piece.substr(begin, end - begin));
          last = end;
        }
        if (last < piece.size()) out.push_back(piece.substr(last));
      } else {
        SplitByMatches(piece, matches, behavior, invert, &out);
      }
      continue;
    }
    if (behavior == Behavior::kIsolated && !invert) {  // the common case, without temporaries
      size_t pos = 0, begin = 0, end = 0, last = 0;
      while (regex.Next(piece, &pos, &begin, &end)) {
        if (begin > last) out.push_back(piece.substr(last, begin - last));
        out.push_back(piece.substr(begin, end - begin));
        last = end;
      }
      if (last < piece.size()) out.push_back(piece.substr(last));
      continue;
    }
    matches.clear();
    regex.FindAll(piece, &matches);
    SplitByMatches(piece, matches, behavior, invert, &out);
  }
  *pieces = std::move(out);
}

// Each byte as its byte-level character, which takes the byte's range.
void ToByteLevelAligned(AlignedText* piece) {
  const auto& table = ByteToUnicode();
  AlignedText out;
  for (size_t i = 0; i < piece->text.size(); ++i) {
    const std::string& ch = table[static_cast<unsigned char>(piece->text[i])];
    out.text += ch;
    out.align.insert(out.align.end(), ch.size(), piece->align[i]);
  }
  *piece = std::move(out);
}

std::string ToByteLevel(const std::string& piece) {
  const auto& table = ByteToUnicode();
  std::string out;
  out.reserve(piece.size() * 2);
  for (unsigned char c : piece) out += table[c];
  return out;
}

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::unique_ptr<Regex> regex, Behavior behavior, bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}
  void PreTokenize(Pieces* pieces, bool, int threads) const override {
    SplitAll(*regex_, behavior_, invert_, pieces, threads);
  }
  void PreTokenizeAligned(AlignedPieces* pieces, bool) const override {
    SplitAllAligned(*regex_, behavior_, invert_, pieces);
  }
  const Regex* LeadingSplit() const override {
    return behavior_ == Behavior::kIsolated && !invert_ ? regex_.get() : nullptr;
  }

 private:
  std::unique_ptr<Regex> regex_;
  Behavior behavior_;
  bool invert_;
};

constexpr char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<Regex> regex, bool lazy)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)), lazy_(lazy) {}
  void PreTokenize(Pieces* pieces, bool, int threads) const override {
    if (add_prefix_space_) {
      for (std::string& piece : *pieces) {
        if (piece.empty() || piece[0] != ' ') piece.insert(0, " ");
      }
    }
    if (regex_ != nullptr) SplitAll(*regex_, Behavior::kIsolated, false, pieces, threads);
    if (!lazy_) {
      for (std::string& piece : *pieces) piece = ToByteLevel(piece);
    }
  }
  // Lazy: the pieces keep their raw bytes, which the model's spans count.
  void PreTokenizeAligned(AlignedPieces* pieces, bool) const override {
    if (add_prefix_space_) {
      for (AlignedText& piece : *pieces) {
        if (!piece.text.empty() && piece.text[0] != ' ') PrependAligned(" ", &piece);
      }
    }
    if (regex_ != nullptr) SplitAllAligned(*regex_, Behavior::kIsolated, false, pieces);
    if (!lazy_) {
      for (AlignedText& piece : *pieces) ToByteLevelAligned(&piece);
    }
  }
  bool is_byte_level() const override { return true; }
  // With add_prefix_space the space goes before the whole text, not each chunk.
  const Regex* LeadingSplit() const override { return add_prefix_space_ ? nullptr : regex_.get(); }
  void PreTokenizeRest(Pieces* pieces) const override {
    if (!lazy_) {
      for (std::string& piece : *pieces) piece = ToByteLevel(piece);
    }
  }
  bool RestIsIdentity() const override { return lazy_; }
  bool IsIdentity() const override { return lazy_ && regex_ == nullptr && !add_prefix_space_; }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;  // null if use_regex is false
  bool lazy_;
};

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split,
                        std::unique_ptr<Regex> replacement_regex, std::unique_ptr<Regex> space)
      : replacement_(std::move(replacement)),
        scheme_(scheme),
        split_(split),
        replacement_regex_(std::move(replacement_regex)),
        space_(std::move(space)) {}
  void PreTokenize(Pieces* pieces, bool first_section, int threads) const override {
    for (size_t i = 0; i < pieces->size(); ++i) {
      std::string& piece = (*pieces)[i];
      std::string replaced;
      for (char c : piece) {
        if (c == ' ') {
          replaced += replacement_;
        } else {
          replaced += c;
        }
      }
      const bool starts = replaced.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (scheme_ == PrependScheme::kAlways ||
                      (scheme_ == PrependScheme::kFirst && first_section && i == 0))) {
        replaced.insert(0, replacement_);
      }
      piece = std::move(replaced);
    }
    if (split_) SplitAll(*replacement_regex_, Behavior::kMergedWithNext, false, pieces, threads);
  }
  void PreTokenizeAligned(AlignedPieces* pieces, bool first_section) const override {
    for (size_t i = 0; i < pieces->size(); ++i) {
      AlignedText& piece = (*pieces)[i];
      ReplaceAligned(*space_, replacement_, &piece);
      const bool starts = piece.text.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (scheme_ == PrependScheme::kAlways ||
                      (scheme_ == PrependScheme::kFirst && first_section && i == 0))) {
        PrependAligned(replacement_, &piece);
      }
    }
    if (split_) SplitAllAligned(*replacement_regex_, Behavior::kMergedWithNext, false, pieces);
  }
  bool PieceLocal() const override { return scheme_ != PrependScheme::kFirst; }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
  std::unique_ptr<Regex> replacement_regex_;
  std::unique_ptr<Regex> space_;  // " ", for PreTokenizeAligned
};

class ReplacePreTokenizer : public PreTokenizer {
 public:
  ReplacePreTokenizer(std::unique_ptr<Regex> regex, std::string content)
      : regex_(std::move(regex)), content_(std::move(content)) {}
  void PreTokenize(Pieces* pieces, bool, int) const override {
    std::vector<std::pair<size_t, size_t>> matches;
    for (std::string& piece : *pieces) {
      matches.clear();
      regex_->FindAll(piece, &matches);
      if (matches.empty()) continue;
      std::string out;
      size_t last = 0;
      for (const auto& [begin, end] : matches) {
        out.append(piece, last, begin - last);
        out += content_;
        last = end;
      }
      out.append(piece, last, std::string::npos);
      piece = std::move(out);
    }
  }
  void PreTokenizeAligned(AlignedPieces* pieces, bool) const override {
    for (AlignedText& piece : *pieces) ReplaceAligned(*regex_, content_, &piece);
  }

 private:
  std::unique_ptr<Regex> regex_;
  std::string content_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  void PreTokenize(Pieces* pieces, bool first_section, int threads) const override {
    for (const auto& step : steps_) step->PreTokenize(pieces, first_section, threads);
  }
  void PreTokenizeAligned(AlignedPieces* pieces, bool first_section) const override {
    for (const auto& step : steps_) step->PreTokenizeAligned(pieces, first_section);
  }
  const Regex* LeadingSplit() const override {
    if (steps_.empty()) return nullptr;
    for (size_t i = 1; i < steps_.size(); ++i) {
      if (!steps_[i]->PieceLocal()) return nullptr;
    }
    return steps_[0]->LeadingSplit();
  }
  void PreTokenizeRest(Pieces* pieces) const override {
    steps_[0]->PreTokenizeRest(pieces);
    for (size_t i = 1; i < steps_.size(); ++i) steps_[i]->PreTokenize(pieces, false, 1);
  }
  bool RestIsIdentity() const override {
    return steps_[0]->RestIsIdentity() &&
           std::all_of(steps_.begin() + 1, steps_.end(),
                       [](const auto& s) { return s->IsIdentity(); });
  }
  bool PieceLocal() const override {
    return std::all_of(steps_.begin(), steps_.end(), [](const auto& s) { return s->PieceLocal(); });
  }
  bool IsIdentity() const override {
    return std::all_of(steps_.begin(), steps_.end(), [](const auto& s) { return s->IsIdentity(); });
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

absl::StatusOr<Behavior> ParseBehavior(const nlohmann::json& j, const std::string& where) {
  const std::string b = j.is_string() ? j.get<std::string>() : "";
  if (b == "Removed") return Behavior::kRemoved;
  if (b == "Isolated") return Behavior::kIsolated;
  if (b == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::kMergedWithNext;
  if (b == "Contiguous") return Behavior::kContiguous;
  return JsonError(where, absl::StrCat("unknown split behavior ", j.dump()));
}

}  // namespace

absl::StatusOr<PrependScheme> ParsePrependScheme(const nlohmann::json& j,
                                                 const std::string& where) {
  if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
    const std::string s = j["prepend_scheme"].get<std::string>();
    if (s == "always") return PrependScheme::kAlways;
    if (s == "first") return PrependScheme::kFirst;
    if (s == "never") return PrependScheme::kNever;
    return JsonError(where + ".prepend_scheme", absl::StrCat("unknown scheme \"", s, "\""));
  }
  return j.value("add_prefix_space", true) ? PrependScheme::kAlways : PrependScheme::kNever;
}

std::string MetaspaceReplacement(const nlohmann::json& j) {
  if (j.contains("replacement") && j["replacement"].is_string()) {
    return j["replacement"].get<std::string>();
  }
  return "\xE2\x96\x81";  // ▁
}

absl::Status RequireType(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    return JsonError(where, "expected an object with a string \"type\"");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> MakePreTokenizer(const nlohmann::json& j,
                                                               const std::string& where, bool last,
                                                               bool* lazy_byte_level) {
  RETURN_IF_ERROR(RequireType(j, where));
  const std::string type = j["type"].get<std::string>();
  if (type == "Split") {
    ASSIGN_OR_RETURN(std::unique_ptr<Regex> regex,
                     MakePattern(j.value("pattern", nlohmann::json()), where + ".pattern"));
    ASSIGN_OR_RETURN(Behavior behavior,
                     ParseBehavior(j.value("behavior", nlohmann::json()), where + ".behavior"));
    return std::make_unique<SplitPreTokenizer>(std::move(regex), behavior,
                                               j.value("invert", false));
  }
  if (type == "ByteLevel") {
    std::unique_ptr<Regex> regex;
    if (j.value("use_regex", true)) {
      ASSIGN_OR_RETURN(regex, Regex::Compile(kGpt2Pattern, /*literal=*/false));
    }
    if (last) *lazy_byte_level = true;
    return std::make_unique<ByteLevelPreTokenizer>(j.value("add_prefix_space", true),
                                                   std::move(regex), last);
  }
  if (type == "Metaspace") {
    ASSIGN_OR_RETURN(PrependScheme scheme, ParsePrependScheme(j, where));
    const std::string replacement = MetaspaceReplacement(j);
    ASSIGN_OR_RETURN(std::unique_ptr<Regex> regex, Regex::Compile(replacement, /*literal=*/true));
    ASSIGN_OR_RETURN(std::unique_ptr<Regex> space, Regex::Compile(" ", /*literal=*/true));
    return std::make_unique<MetaspacePreTokenizer>(replacement, scheme, j.value("split", true),
                                                   std::move(regex), std::move(space));
  }
  if (type == "Digits") {
    const bool individual = j.value("individual_digits", false);
    ASSIGN_OR_RETURN(std::unique_ptr<Regex> regex,
                     Regex::Compile(individual ? R"(\p{N})" : R"(\p{N}+)", /*literal=*/false));
    return std::make_unique<SplitPreTokenizer>(std::move(regex), Behavior::kIsolated, false);
  }
  if (type == "Whitespace" || type == "WhitespaceSplit") {
    // WhitespaceSplit splits at char::is_whitespace: \S+ (Note [Rust regex classes]).
    ASSIGN_OR_RETURN(std::unique_ptr<Regex> regex,
                     Regex::Compile(type == "Whitespace" ? R"(\w+|[^\w\s]+)" : R"(\S+)", false));
    return std::make_unique<SplitPreTokenizer>(std::move(regex), Behavior::kRemoved,
                                               /*invert=*/true);
  }
  if (type == "Replace") {
    ASSIGN_OR_RETURN(std::unique_ptr<Regex> regex,
                     MakePattern(j.value("pattern", nlohmann::json()), where + ".pattern"));
    if (!j.contains("content") || !j["content"].is_string()) {
      return JsonError(where + ".content", "expected a string");
    }
    return std::make_unique<ReplacePreTokenizer>(std::move(regex), j["content"].get<std::string>());
  }
  if (type == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array()) {
      return JsonError(where + ".pretokenizers", "expected an array");
    }
    const nlohmann::json& list = j["pretokenizers"];
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (size_t i = 0; i < list.size(); ++i) {
      ASSIGN_OR_RETURN(std::unique_ptr<PreTokenizer> step,
                       MakePreTokenizer(list[i], absl::StrCat(where, ".pretokenizers[", i, "]"),
                                        last && i + 1 == list.size(), lazy_byte_level));
      steps.push_back(std::move(step));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  return JsonError(where + ".type", absl::StrCat("unsupported pre-tokenizer type \"", type, "\""));
}

}  // namespace distill::worker::hf
