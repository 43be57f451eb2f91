// Decoders of the Hugging Face tokenizer (ids -> text), as in the Rust
// `tokenizers` crate: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace.
#include <unicode/utf8.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/data/hf_tokenizer_internal.h"

namespace distill::worker::hf {

// ---------------------------------------------------------------- Decoders

namespace {

class ByteLevelDecoder : public Decoder {
 public:
  void Decode(std::vector<std::string>* tokens) const override {
    std::string bytes;
    for (const std::string& token : *tokens) {
      std::string decoded;
      bool ok = true;
      const auto* s = reinterpret_cast<const uint8_t*>(token.data());
      const int32_t n = static_cast<int32_t>(token.size());
      for (int32_t i = 0; i < n && ok;) {
        UChar32 c;
        U8_NEXT(s, i, n, c);
        const int b = c < 0 ? -1 : UnicodeToByte(static_cast<uint32_t>(c));
        if (b < 0) {
          ok = false;
        } else {
          decoded.push_back(static_cast<char>(b));
        }
      }
      bytes += ok ? decoded : token;
    }
    *tokens = {std::move(bytes)};
  }
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void Decode(std::vector<std::string>* tokens) const override {
    for (size_t i = 0; i < tokens->size(); ++i) {
      std::string out;
      const std::string& t = (*tokens)[i];
      for (size_t p = 0; p < t.size();) {
        if (t.compare(p, replacement_.size(), replacement_) == 0) {
          out += ' ';
          p += replacement_.size();
        } else {
          out += t[p++];
        }
      }
      if (i == 0 && strip_first_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
      (*tokens)[i] = std::move(out);
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class ByteFallbackDecoder : public Decoder {
 public:
  void Decode(std::vector<std::string>* tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (FindInvalidUtf8(pending) == std::string_view::npos) {
        out.push_back(pending);
      } else {
        for (size_t i = 0; i < pending.size(); ++i) out.push_back("\xEF\xBF\xBD");
      }
      pending.clear();
    };
    for (std::string& t : *tokens) {
      int byte = -1;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
        // `hex` outlives the parse: `end` points into it (into a destroyed
        // temporary once, an ASan stack-use-after-scope).
        const std::string hex = t.substr(3, 2);
        char* end = nullptr;
        const long v = std::strtol(hex.c_str(), &end, 16);
        if (end == hex.c_str() + hex.size()) byte = static_cast<int>(v);
      }
      if (byte >= 0) {
        pending.push_back(static_cast<char>(byte));
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    *tokens = std::move(out);
  }
};

class FuseDecoder : public Decoder {
 public:
  void Decode(std::vector<std::string>* tokens) const override {
    std::string all;
    for (const std::string& t : *tokens) all += t;
    *tokens = {std::move(all)};
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void Decode(std::vector<std::string>* tokens) const override {
    const size_t n = content_.size();
    for (std::string& t : *tokens) {
      size_t begin = 0, end = t.size();
      for (size_t i = 0; i < start_ && n > 0 && t.compare(begin, n, content_) == 0; ++i) begin += n;
      for (size_t i = 0;
           i < stop_ && n > 0 && end >= begin + n && t.compare(end - n, n, content_) == 0; ++i) {
        end -= n;
      }
      t = t.substr(begin, end - begin);
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::unique_ptr<Regex> regex, std::string content)
      : regex_(std::move(regex)), content_(std::move(content)) {}
  void Decode(std::vector<std::string>* tokens) const override {
    std::vector<std::pair<size_t, size_t>> matches;
    for (std::string& t : *tokens) {
      if (FindInvalidUtf8(t) != std::string_view::npos) continue;
      matches.clear();
      regex_->FindAll(t, &matches);
      std::string out;
      size_t last = 0;
      for (const auto& [begin, end] : matches) {
        out.append(t, last, begin - last);
        out += content_;
        last = end;
      }
      out.append(t, last, std::string::npos);
      t = std::move(out);
    }
  }

 private:
  std::unique_ptr<Regex> regex_;
  std::string content_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps)
      : steps_(std::move(steps)) {}
  void Decode(std::vector<std::string>* tokens) const override {
    for (const auto& step : steps_) step->Decode(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Decoder>> MakeDecoder(const nlohmann::json& j,
                                                     const std::string& where) {
  RETURN_IF_ERROR(RequireType(j, where));
  const std::string type = j["type"].get<std::string>();
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") {
    ASSIGN_OR_RETURN(PrependScheme scheme, ParsePrependScheme(j, where));
    return std::make_unique<MetaspaceDecoder>(MetaspaceReplacement(j),
                                              scheme != PrependScheme::kNever);
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    return std::make_unique<StripDecoder>(j.value("content", std::string(" ")),
                                          j.value("start", size_t{0}), j.value("stop", size_t{0}));
  }
  if (type == "Replace") {
    ASSIGN_OR_RETURN(std::unique_ptr<Regex> regex,
                     MakePattern(j.value("pattern", nlohmann::json()), where + ".pattern"));
    return std::make_unique<ReplaceDecoder>(std::move(regex), j.value("content", std::string()));
  }
  if (type == "Sequence") {
    if (!j.contains("decoders") || !j["decoders"].is_array()) {
      return JsonError(where + ".decoders", "expected an array");
    }
    std::vector<std::unique_ptr<Decoder>> steps;
    for (size_t i = 0; i < j["decoders"].size(); ++i) {
      ASSIGN_OR_RETURN(std::unique_ptr<Decoder> step,
                       MakeDecoder(j["decoders"][i], absl::StrCat(where, ".decoders[", i, "]")));
      steps.push_back(std::move(step));
    }
    return std::make_unique<SequenceDecoder>(std::move(steps));
  }
  return JsonError(where + ".type", absl::StrCat("unsupported decoder type \"", type, "\""));
}

}  // namespace distill::worker::hf
