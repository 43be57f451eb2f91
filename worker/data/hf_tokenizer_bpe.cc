// The BPE model of the Hugging Face tokenizer: vocabulary, merges (as "a b"
// strings or [a, b] pairs), byte fallback, unk/fuse_unk, ignore_merges, and the
// merge loop over a linked list of symbols with a priority queue of pairs.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <functional>
#include <queue>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "worker/data/hf_tokenizer_internal.h"

namespace distill::worker::hf {
namespace {

uint64_t PairKey(uint32_t a, uint32_t b) { return (static_cast<uint64_t>(a) << 32) | b; }

// Identity of a BpeModel for the per-thread word caches (never reused, unlike
// addresses).
std::atomic<uint64_t> next_instance_id{1};

// The model's type and the options it does not support.
absl::Status CheckModelOptions(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) return JsonError(where, "expected an object");
  if (j.contains("type") && j["type"] != "BPE") {
    return JsonError(where + ".type",
                     absl::StrCat("unsupported model type ", j["type"].dump(), " (only BPE)"));
  }
  if (!j.contains("vocab") || !j["vocab"].is_object()) {
    return JsonError(where + ".vocab", "expected an object of token -> id");
  }
  // Dropout drops merges at random: no fixed ids to give.
  if (j.contains("dropout") && j["dropout"].is_number() && j["dropout"].get<double>() > 0) {
    return JsonError(where + ".dropout", "BPE dropout is not supported (use null)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (j.contains(key) && j[key].is_string() && !j[key].get<std::string>().empty()) {
      return JsonError(absl::StrCat(where, ".", key), "a non-empty value is not supported");
    }
  }
  return absl::OkStatus();
}

// One merge, "a b" or [a, b], as its two tokens.
absl::StatusOr<std::pair<std::string, std::string>> ParseMerge(const nlohmann::json& m,
                                                               const std::string& at) {
  if (m.is_string()) {
    const std::string s = m.get<std::string>();
    const size_t space = s.find(' ');
    if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
      return JsonError(at, absl::StrCat("expected \"a b\", got \"", s, "\""));
    }
    return std::make_pair(s.substr(0, space), s.substr(space + 1));
  }
  if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
    return std::make_pair(m[0].get<std::string>(), m[1].get<std::string>());
  }
  return JsonError(at, absl::StrCat("expected \"a b\" or [a, b], got ", m.dump()));
}

}  // namespace

BpeModel::BpeModel() : instance_id_(next_instance_id.fetch_add(1)) {}

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Make(const nlohmann::json& j,
                                                         const std::string& where) {
  RETURN_IF_ERROR(CheckModelOptions(j, where));
  auto model = std::unique_ptr<BpeModel>(new BpeModel());
  for (const auto& [token, id] : j["vocab"].items()) {
    if (!id.is_number_unsigned() || id.get<uint64_t>() > kMaxTokenId) {
      return JsonError(absl::StrCat(where, ".vocab[\"", token, "\"]"),
                       absl::StrCat("expected an id in [0, ", kMaxTokenId, "]"));
    }
    const uint32_t v = id.get<uint32_t>();
    model->vocab_[token] = v;
    if (model->id_to_token_.size() <= v) model->id_to_token_.resize(v + 1);
    model->id_to_token_[v] = token;
  }
  if (!j.contains("merges") || !j["merges"].is_array()) {
    return JsonError(where + ".merges", "expected an array");
  }
  const nlohmann::json& merges = j["merges"];
  model->merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const nlohmann::json& m = merges[rank];
    const std::string at = absl::StrCat(where, ".merges[", rank, "]");
    ASSIGN_OR_RETURN(const auto merge, ParseMerge(m, at));
    const std::string& a = merge.first;
    const std::string& b = merge.second;
    auto ia = model->vocab_.find(a), ib = model->vocab_.find(b), ab = model->vocab_.find(a + b);
    if (ia == model->vocab_.end() || ib == model->vocab_.end() || ab == model->vocab_.end()) {
      const std::string& missing = ia == model->vocab_.end()   ? a
                                   : ib == model->vocab_.end() ? b
                                                               : a + b;
      return JsonError(at, absl::StrCat("token \"", missing, "\" is not in the vocabulary"));
    }
    model->merges_.emplace(PairKey(ia->second, ib->second),
                           std::make_pair(static_cast<uint32_t>(rank), ab->second));
  }
  if (j.contains("unk_token") && j["unk_token"].is_string()) {
    auto it = model->vocab_.find(j["unk_token"].get<std::string>());
    if (it == model->vocab_.end()) {
      return JsonError(where + ".unk_token", "token is not in the vocabulary");
    }
    model->unk_id_ = it->second;
  }
  model->byte_fallback_ = j.value("byte_fallback", false);
  model->fuse_unk_ = j.value("fuse_unk", false);
  model->ignore_merges_ = j.value("ignore_merges", false);
  const auto& table = ByteToUnicode();
  for (int b = 0; b < 256; ++b) {
    auto it = model->vocab_.find(table[b]);
    model->byte_level_ids_[b] = it == model->vocab_.end() ? -1 : it->second;
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    it = model->vocab_.find(name);
    model->byte_fallback_ids_[b] = it == model->vocab_.end() ? -1 : it->second;
  }
  return model;
}

std::optional<uint32_t> BpeModel::TokenToId(const std::string& token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

std::optional<uint32_t> BpeModel::byte_fallback_id(unsigned char byte) const {
  if (byte_fallback_ids_[byte] < 0) return std::nullopt;
  return static_cast<uint32_t>(byte_fallback_ids_[byte]);
}

void BpeModel::Encode(std::string_view word, bool byte_level, std::vector<uint32_t>* ids) const {
  if (word.size() > kCacheMaxWordBytes) {
    EncodeUncached(word, byte_level, ids);
    return;
  }
  struct ThreadCache {
    uint64_t owner = 0;
    absl::flat_hash_map<std::string, Ids> map;
  };
  thread_local ThreadCache cache;
  if (cache.owner != instance_id_) {
    cache.map.clear();
    cache.owner = instance_id_;
  }
  // Debian's absl::string_view is its own type: heterogeneous lookups take it.
  const absl::string_view key(word.data(), word.size());
  auto it = cache.map.find(key);
  if (it != cache.map.end()) {
    ids->insert(ids->end(), it->second.begin(), it->second.end());
    return;
  }
  const size_t start = ids->size();
  L2Shard& shard = l2_[absl::HashOf(key) % kL2Shards];
  {
    std::lock_guard<std::mutex> lock(shard.mu);
    auto hit = shard.map.find(key);
    if (hit != shard.map.end()) ids->insert(ids->end(), hit->second.begin(), hit->second.end());
  }
  const bool in_l2 = ids->size() > start;
  if (!in_l2) EncodeUncached(word, byte_level, ids);
  Ids value(ids->begin() + static_cast<std::ptrdiff_t>(start), ids->end());
  if (!in_l2) {
    std::lock_guard<std::mutex> lock(shard.mu);
    if (shard.map.size() >= kCacheCapacity / kL2Shards) shard.map.clear();
    shard.map.emplace(std::string(word), value);
  }
  if (cache.map.size() >= kCacheCapacity) cache.map.clear();
  cache.map.emplace(std::string(word), std::move(value));
}

std::optional<uint32_t> BpeModel::WholeWordId(std::string_view word, bool byte_level) const {
  std::string token;
  if (byte_level) {
    for (unsigned char c : word) token += ByteToUnicode()[c];
  } else {
    token = std::string(word);
  }
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::EncodeUncached(std::string_view word, bool byte_level,
                              std::vector<uint32_t>* ids) const {
  if (ignore_merges_) {
    if (std::optional<uint32_t> id = WholeWordId(word, byte_level)) {
      ids->push_back(*id);
      return;
    }
  }
  std::vector<Symbol> symbols;
  InitialSymbols(word, byte_level, &symbols, /*spans=*/nullptr);
  if (symbols.empty()) return;
  Merge(&symbols, ids);
}

void BpeModel::InitialSymbols(std::string_view word, bool byte_level,
                              std::vector<Symbol>* symbols_out, std::vector<Span>* spans) const {
  std::vector<Symbol>& symbols = *symbols_out;
  symbols.reserve(word.size());
  auto add = [&symbols, spans](uint32_t id, size_t begin, size_t end) {
    const int32_t n = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, n - 1, n + 1, true});
    if (spans != nullptr) spans->emplace_back(begin, end);
  };
  bool last_was_unk = false;
  for (size_t i = 0; i < word.size();) {
    const size_t len =
        byte_level ? 1 : std::min(Utf8Len(static_cast<unsigned char>(word[i])), word.size() - i);
    std::optional<uint32_t> id;
    if (byte_level) {
      const int64_t v = byte_level_ids_[static_cast<unsigned char>(word[i])];
      if (v >= 0) id = static_cast<uint32_t>(v);
    } else {
      auto it = vocab_.find(absl::string_view(word.data() + i, len));
      if (it != vocab_.end()) id = it->second;
    }
    if (id.has_value()) {
      add(*id, i, i + len);
      last_was_unk = false;
    } else if (byte_fallback_ &&
               std::all_of(word.begin() + i, word.begin() + i + len, [this](char c) {
                 return byte_fallback_ids_[static_cast<unsigned char>(c)] >= 0;
               })) {
      for (size_t k = i; k < i + len; ++k) {
        add(static_cast<uint32_t>(byte_fallback_ids_[static_cast<unsigned char>(word[k])]), k,
            k + 1);
      }
      last_was_unk = false;
    } else if (unk_id_.has_value()) {
      if (!(fuse_unk_ && last_was_unk)) {
        add(*unk_id_, i, i + len);
      } else if (spans != nullptr) {
        spans->back().second = i + len;  // the fused unk covers this character too
      }
      last_was_unk = true;
    }  // else: no unk token, the character is dropped (as Hugging Face does)
    i += len;
  }
  if (!symbols.empty()) symbols.back().next = -1;
}

// A merged symbol at position i covers the initial symbols i .. next - 1
// (Merge joins a symbol with the one after it into the left one).
void BpeModel::EncodeWithSpans(std::string_view word, bool byte_level, std::vector<uint32_t>* ids,
                               std::vector<Span>* spans) const {
  if (ignore_merges_) {
    if (std::optional<uint32_t> id = WholeWordId(word, byte_level)) {
      ids->push_back(*id);
      spans->emplace_back(0, word.size());
      return;
    }
  }
  std::vector<Symbol> symbols;
  std::vector<Span> initial;
  InitialSymbols(word, byte_level, &symbols, &initial);
  if (symbols.empty()) return;
  Merge(&symbols, ids);
  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    const int32_t last =
        symbols[i].next >= 0 ? symbols[i].next - 1 : static_cast<int32_t>(symbols.size()) - 1;
    spans->emplace_back(initial[i].first, initial[last].second);
  }
}

void BpeModel::Merge(std::vector<Symbol>* symbols_ptr, std::vector<uint32_t>* ids) const {
  std::vector<Symbol>& sym = *symbols_ptr;
  struct Candidate {
    uint32_t rank;
    int32_t pos;
    uint32_t new_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto consider = [&](int32_t pos) {
    const int32_t next = sym[pos].next;
    if (next < 0) return;
    auto it = merges_.find(PairKey(sym[pos].id, sym[next].id));
    if (it != merges_.end()) queue.push({it->second.first, pos, it->second.second});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) consider(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = sym[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = sym[left.next];
    auto it = merges_.find(PairKey(left.id, right.id));
    if (it == merges_.end() || it->second.second != top.new_id) continue;
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) sym[left.next].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) ids->push_back(sym[i].id);
}

}  // namespace distill::worker::hf
