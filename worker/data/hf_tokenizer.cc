#include "worker/data/hf_tokenizer.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "worker/data/hf_tokenizer_internal.h"

namespace distill::worker {
namespace {

using hf::JsonError;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  RETURN_IF_ERROR(common::CheckInputFile(path));
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read failed"));
  return contents.str();
}

// The type a component's optional field must have where present: the
// builders read these with nlohmann's value(key, default), which throws
// json::type_error for a value of another type (found by tests/fuzz/tokenizer:
// {"special": 1} in an added token ended the process).
const char* FieldTypeError(const std::string& key, const nlohmann::json& v) {
  static const std::set<std::string>* bools = new std::set<std::string>{
      "special", "lstrip", "rstrip", "single_word", "normalized", "byte_fallback", "fuse_unk",
      "ignore_merges", "strip_left", "strip_right", "add_prefix_space", "invert", "use_regex",
      "split", "individual_digits"};
  if (bools->count(key) > 0 && !v.is_boolean()) return "expected true or false";
  if ((key == "start" || key == "stop") && !v.is_number_unsigned()) return "expected a count";
  if (key == "content" && !v.is_string()) return "expected a string";
  return nullptr;
}

// The path of the first value nested deeper than kMaxJsonDepth (Note
// [Tokenizer limits]), or of a field of the wrong type (FieldTypeError), as
// an error; walked with an explicit stack, so depth costs no call stack here.
absl::Status CheckJsonTree(const nlohmann::json& root, const std::string& name) {
  struct Item {
    const nlohmann::json* value;
    std::string path;
    int depth;
  };
  std::vector<Item> stack = {{&root, "", 0}};
  while (!stack.empty()) {
    Item item = std::move(stack.back());
    stack.pop_back();
    if (!item.value->is_structured()) continue;
    if (item.depth >= hf::kMaxJsonDepth) {
      return JsonError(absl::StrCat(name, ": ", item.path),
                       absl::StrCat("nested deeper than ", hf::kMaxJsonDepth, " levels"));
    }
    if (item.value->is_array()) {
      for (size_t i = 0; i < item.value->size(); ++i) {
        stack.push_back({&(*item.value)[i], absl::StrCat(item.path, "[", i, "]"), item.depth + 1});
      }
    } else {
      // A vocabulary's (or special_tokens') keys are tokens, not fields.
      const std::string_view last = std::string_view(item.path).substr(item.path.rfind('.') + 1);
      const bool token_keys = last == "vocab" || last == "special_tokens";
      for (const auto& [key, v] : item.value->items()) {
        std::string path = item.path.empty() ? key : absl::StrCat(item.path, ".", key);
        if (const char* wrong = token_keys ? nullptr : FieldTypeError(key, v)) {
          return JsonError(absl::StrCat(name, ": ", path), absl::StrCat(wrong, ", got ", v.type_name()));
        }
        stack.push_back({&v, std::move(path), item.depth + 1});
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<hf::AddedToken>> ParseAddedTokens(const nlohmann::json& j,
                                                             const std::string& where) {
  std::vector<hf::AddedToken> added;
  if (j.is_null()) return added;
  if (!j.is_array()) return JsonError(where, "expected an array");
  for (size_t i = 0; i < j.size(); ++i) {
    const nlohmann::json& t = j[i];
    const std::string at = absl::StrCat(where, "[", i, "]");
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_unsigned() ||
        !t.contains("content") || !t["content"].is_string() ||
        t["content"].get<std::string>().empty()) {
      return JsonError(at, "expected {\"id\": N, \"content\": \"...\", ...}");
    }
    if (t["id"].get<uint64_t>() > hf::kMaxTokenId) {  // Note [Tokenizer limits]
      return JsonError(at + ".id", absl::StrCat(t["id"].get<uint64_t>(), " exceeds the limit ",
                                                hf::kMaxTokenId));
    }
    hf::AddedToken token;
    token.id = t["id"].get<uint32_t>();
    token.content = t["content"].get<std::string>();
    token.special = t.value("special", false);
    token.lstrip = t.value("lstrip", false);
    token.rstrip = t.value("rstrip", false);
    token.single_word = t.value("single_word", false);
    token.normalized = t.value("normalized", false);
    added.push_back(std::move(token));
  }
  return added;
}

// The content of a tokenizer_config.json token entry: "x" or {"content": "x"}.
std::optional<std::string> ConfigToken(const nlohmann::json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  const nlohmann::json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return std::nullopt;
}

}  // namespace

namespace hf {

absl::StatusOr<PostProcessor> MakePostProcessor(
    const nlohmann::json& j, const std::string& where,
    const std::function<std::optional<uint32_t>(const std::string&)>& token_to_id) {
  PostProcessor post;
  if (j.is_null()) return post;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    return JsonError(where, "expected an object with a string \"type\"");
  }
  const std::string type = j["type"].get<std::string>();
  auto lookup = [&](const std::string& token, const std::string& at) -> absl::StatusOr<uint32_t> {
    std::optional<uint32_t> id = token_to_id(token);
    if (!id.has_value()) return JsonError(at, absl::StrCat("unknown token \"", token, "\""));
    return *id;
  };
  if (type == "ByteLevel") return post;
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    for (const char* key : {"cls", "sep"}) {
      if (!j.contains(key) || !j[key].is_array() || j[key].empty() || !j[key][0].is_string()) {
        return JsonError(absl::StrCat(where, ".", key), "expected [token, id]");
      }
      ASSIGN_OR_RETURN(uint32_t id,
                       lookup(j[key][0].get<std::string>(), absl::StrCat(where, ".", key)));
      (std::string(key) == "cls" ? post.prefix : post.suffix).push_back(id);
    }
    return post;
  }
  if (type == "TemplateProcessing") {
    if (!j.contains("single") || !j["single"].is_array()) {
      return JsonError(where + ".single", "expected an array");
    }
    bool seen_sequence = false;
    for (size_t i = 0; i < j["single"].size(); ++i) {
      const nlohmann::json& item = j["single"][i];
      const std::string at = absl::StrCat(where, ".single[", i, "]");
      if (item.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      if (!item.contains("SpecialToken") || !item["SpecialToken"].contains("id") ||
          !item["SpecialToken"]["id"].is_string()) {
        return JsonError(at, "expected {\"SpecialToken\": {\"id\": ...}} or {\"Sequence\": ...}");
      }
      const std::string name = item["SpecialToken"]["id"].get<std::string>();
      std::vector<uint32_t> ids;
      const nlohmann::json specials = j.value("special_tokens", nlohmann::json::object());
      if (specials.contains(name) && specials[name].contains("ids") &&
          specials[name]["ids"].is_array()) {
        for (const auto& id : specials[name]["ids"]) {
          if (!id.is_number_unsigned()) return JsonError(where + ".special_tokens", "bad id");
          ids.push_back(id.get<uint32_t>());
        }
      } else {
        ASSIGN_OR_RETURN(uint32_t id, lookup(name, at));
        ids.push_back(id);
      }
      auto& dest = seen_sequence ? post.suffix : post.prefix;
      dest.insert(dest.end(), ids.begin(), ids.end());
    }
    return post;
  }
  if (type == "Sequence") {
    if (!j.contains("processors") || !j["processors"].is_array()) {
      return JsonError(where + ".processors", "expected an array");
    }
    for (size_t i = 0; i < j["processors"].size(); ++i) {
      ASSIGN_OR_RETURN(PostProcessor step,
                       MakePostProcessor(j["processors"][i],
                                         absl::StrCat(where, ".processors[", i, "]"), token_to_id));
      post.prefix.insert(post.prefix.end(), step.prefix.begin(), step.prefix.end());
      post.suffix.insert(post.suffix.end(), step.suffix.begin(), step.suffix.end());
    }
    return post;
  }
  return JsonError(where + ".type", absl::StrCat("unsupported post-processor type \"", type, "\""));
}

// Hugging Face's leftmost-longest scan: a match that single_word rejects is
// skipped whole, as its Aho-Corasick iteration does (Note [Added tokens]).
std::vector<Pipeline::Section> Pipeline::SplitAdded(std::string_view text, bool normalized) const {
  std::vector<Section> sections;
  const std::array<bool, 256>& first_byte = added_first_byte[normalized ? 1 : 0];
  size_t section_start = 0;
  for (size_t i = 0; i < text.size();) {
    if (!first_byte[static_cast<unsigned char>(text[i])]) {
      ++i;
      continue;
    }
    int64_t found = -1;
    for (size_t k = 0; k < added.size(); ++k) {  // longest first
      const AddedToken& t = added[k];
      if (t.normalized == normalized && !t.match.empty() &&
          text.compare(i, t.match.size(), t.match) == 0) {
        found = static_cast<int64_t>(k);
        break;
      }
    }
    if (found < 0) {
      ++i;
      continue;
    }
    const AddedToken& t = added[found];
    size_t begin = i, end = i + t.match.size();
    if (t.single_word &&
        ((i > 0 && IsRustWordChar(CodePointAt(text, PrevCodePointStart(text, i)))) ||
         (end < text.size() && IsRustWordChar(CodePointAt(text, end))))) {
      i = end;
      continue;
    }
    if (t.lstrip) {
      while (begin > section_start &&
             IsRustSpace(CodePointAt(text, PrevCodePointStart(text, begin)))) {
        begin = PrevCodePointStart(text, begin);
      }
    }
    if (t.rstrip) {
      while (end < text.size() && IsRustSpace(CodePointAt(text, end))) {
        end += Utf8Len(static_cast<unsigned char>(text[end]));
      }
    }
    if (begin > section_start) {
      sections.push_back({text.substr(section_start, begin - section_start)});
    }
    sections.push_back({text.substr(i, t.match.size()), found});
    section_start = i = end;
  }
  if (section_start < text.size()) sections.push_back({text.substr(section_start)});
  return sections;
}

Pieces Pipeline::PreTokenize(std::string_view text, bool first_section, int threads,
                             bool is_normalized) const {
  std::string s(text);
  if (normalizer != nullptr && !is_normalized) normalizer->Normalize(&s);
  Pieces pieces;
  if (s.empty()) return pieces;
  pieces.push_back(std::move(s));
  if (pre_tokenizer != nullptr) pre_tokenizer->PreTokenize(&pieces, first_section, threads);
  return pieces;
}

}  // namespace hf

HfTokenizer::HfTokenizer() = default;
HfTokenizer::~HfTokenizer() = default;

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::Load(const std::string& path) {
  ASSIGN_OR_RETURN(std::string json, ReadFile(path));
  std::string config;
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  absl::StatusOr<std::string> config_or = ReadFile(dir + "tokenizer_config.json");
  if (config_or.ok()) config = *std::move(config_or);
  return FromJson(json, path, config);
}

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::FromJson(const std::string& json,
                                                                   const std::string& name,
                                                                   const std::string& config_json) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json);
    // parse_error, or out_of_range for a number past a double.
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": invalid JSON: ", e.what()));
  }
  if (!j.is_object()) return JsonError(name, "expected a JSON object");
  RETURN_IF_ERROR(CheckJsonTree(j, name));
  if (!j.contains("model") || j["model"].is_null()) return JsonError(name + ": model", "missing");

  auto tok = std::unique_ptr<HfTokenizer>(new HfTokenizer());
  auto p = std::make_unique<hf::Pipeline>();
  p->name = name;
  ASSIGN_OR_RETURN(p->model, hf::BpeModel::Make(j["model"], name + ": model"));
  if (j.contains("normalizer") && !j["normalizer"].is_null()) {
    ASSIGN_OR_RETURN(p->normalizer, hf::MakeNormalizer(j["normalizer"], name + ": normalizer"));
  }
  if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) {
    ASSIGN_OR_RETURN(p->pre_tokenizer,
                     hf::MakePreTokenizer(j["pre_tokenizer"], name + ": pre_tokenizer",
                                          /*last=*/true, &p->lazy_byte_level));
  }
  if (j.contains("decoder") && !j["decoder"].is_null()) {
    ASSIGN_OR_RETURN(p->decoder, hf::MakeDecoder(j["decoder"], name + ": decoder"));
  }
  ASSIGN_OR_RETURN(p->added, ParseAddedTokens(j.value("added_tokens", nlohmann::json()),
                                              name + ": added_tokens"));
  for (hf::AddedToken& t : p->added) {  // Note [Added tokens]
    t.match = t.content;
    if (t.normalized && p->normalizer != nullptr) p->normalizer->Normalize(&t.match);
    p->has_normalized_added |= t.normalized;
  }
  std::stable_sort(p->added.begin(), p->added.end(),
                   [](const hf::AddedToken& a, const hf::AddedToken& b) {
                     return a.match.size() > b.match.size();
                   });
  int64_t vocab_size = static_cast<int64_t>(p->model->id_to_token().size());
  for (size_t k = 0; k < p->added.size(); ++k) {
    const hf::AddedToken& t = p->added[k];
    p->added_by_id[t.id] = k;
    if (!t.match.empty()) {
      p->added_first_byte[t.normalized ? 1 : 0][static_cast<unsigned char>(t.match[0])] = true;
    }
    vocab_size = std::max<int64_t>(vocab_size, int64_t{t.id} + 1);
  }
  tok->vocab_size_ = vocab_size;
  tok->pipeline_ = std::move(p);
  ASSIGN_OR_RETURN(
      tok->pipeline_->post_processor,
      hf::MakePostProcessor(j.value("post_processor", nlohmann::json()), name + ": post_processor",
                            [&tok](const std::string& t) { return tok->TokenToId(t); }));

  nlohmann::json config;
  if (!config_json.empty()) {
    config = nlohmann::json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  }
  std::vector<std::string> eos_names = {"<|endoftext|>", "</s>", "<|end_of_text|>"};
  if (std::optional<std::string> eos = ConfigToken(config, "eos_token")) {
    eos_names.insert(eos_names.begin(), *eos);
  }
  for (const std::string& eos : eos_names) {
    if ((tok->eos_id_ = tok->TokenToId(eos)).has_value()) break;
  }
  if (std::optional<std::string> bos = ConfigToken(config, "bos_token")) {
    tok->bos_id_ = tok->TokenToId(*bos);
  }
  return tok;
}

std::optional<uint32_t> HfTokenizer::TokenToId(const std::string& token) const {
  for (const hf::AddedToken& t : pipeline_->added) {
    if (t.content == token || t.match == token) return t.id;
  }
  return pipeline_->model->TokenToId(token);
}

std::optional<std::string> HfTokenizer::IdToToken(uint32_t id) const {
  auto it = pipeline_->added_by_id.find(id);
  if (it != pipeline_->added_by_id.end()) return pipeline_->added[it->second].content;
  const auto& tokens = pipeline_->model->id_to_token();
  if (id < tokens.size() && !tokens[id].empty()) return tokens[id];
  return std::nullopt;
}

absl::StatusOr<std::vector<uint32_t>> HfTokenizer::Encode(std::string_view text,
                                                          bool add_special_tokens,
                                                          int threads) const {
  EncodeOptions options;
  options.add_special_tokens = add_special_tokens;
  options.threads = threads;
  return Encode(text, options);
}

absl::StatusOr<std::vector<uint32_t>> HfTokenizer::Encode(std::string_view text,
                                                          const EncodeOptions& options) const {
  RETURN_IF_ERROR(hf::CheckUtf8(text));
  const int64_t limit_hits = hf::RegexLimitHits();
  const hf::Pipeline& p = *pipeline_;
  std::vector<uint32_t> ids;
  if (options.add_special_tokens) ids = p.post_processor.prefix;
  ids.reserve(ids.size() + text.size() / 3 + 16);
  const std::vector<hf::Pipeline::Section> sections = p.SplitAdded(text, /*normalized=*/false);
  for (size_t s = 0; s < sections.size(); ++s) {
    const hf::Pipeline::Section& section = sections[s];
    if (section.added_index >= 0) {
      ids.push_back(p.added[section.added_index].id);
    } else if (!p.has_normalized_added) {
      p.EncodeSection(section.text, s == 0, options.threads, options.chunk_bytes, options.progress,
                      &ids);
      continue;
    } else {  // Note [Added tokens]: normalize, then match the normalized=true tokens
      std::string normalized(section.text);
      if (p.normalizer != nullptr) p.normalizer->Normalize(&normalized);
      const std::vector<hf::Pipeline::Section> parts = p.SplitAdded(normalized, true);
      for (size_t k = 0; k < parts.size(); ++k) {
        if (parts[k].added_index >= 0) {
          ids.push_back(p.added[parts[k].added_index].id);
        } else {
          p.EncodeSection(parts[k].text, s == 0 && k == 0, options.threads, options.chunk_bytes,
                          /*progress=*/nullptr, &ids, /*is_normalized=*/true);
        }
      }
    }
    if (options.progress != nullptr) options.progress->fetch_add(section.text.size());
  }
  if (options.add_special_tokens) {
    ids.insert(ids.end(), p.post_processor.suffix.begin(), p.post_processor.suffix.end());
  }
  if (hf::RegexLimitHits() != limit_hits) return hf::RegexLimitError(text.size());
  return ids;
}

absl::StatusOr<std::string> HfTokenizer::Decode(const std::vector<uint32_t>& ids,
                                                bool skip_special_tokens) const {
  const hf::Pipeline& p = *pipeline_;
  const auto& id_to_token = p.model->id_to_token();
  // As in Hugging Face: every token, added ones included, goes through the
  // decoder chain (the byte-level decoder keeps a token whose characters are
  // not all in its alphabet as is).
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    auto added = p.added_by_id.find(ids[i]);
    if (added != p.added_by_id.end()) {
      const hf::AddedToken& t = p.added[added->second];
      if (!(skip_special_tokens && t.special)) tokens.push_back(t.match);  // Note [Added tokens]
      continue;
    }
    if (ids[i] >= id_to_token.size() || id_to_token[ids[i]].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", ids[i], " at position ", i,
                                                     " is not in the vocabulary of ", p.name));
    }
    tokens.push_back(id_to_token[ids[i]]);
  }
  std::string text;
  if (p.decoder != nullptr) {
    p.decoder->Decode(&tokens);
    for (const std::string& s : tokens) text += s;
  } else {
    for (size_t i = 0; i < tokens.size(); ++i) absl::StrAppend(&text, i > 0 ? " " : "", tokens[i]);
  }
  return hf::Utf8Lossy(text);
}

}  // namespace distill::worker
