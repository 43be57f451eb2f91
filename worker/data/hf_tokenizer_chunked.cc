// Encoding one text section of the Hugging Face tokenizer: by chunks on
// several threads when the pre-tokenizer allows it (Note [Chunked encoding]),
// else pre-tokenized whole.
#include <algorithm>
#include <thread>

#include "worker/data/hf_tokenizer_internal.h"

namespace distill::worker::hf {

// Note [Chunked encoding]: a section is cut into chunks of about
// `chunk_bytes` just before a '\n', and each chunk is normalized, split and
// encoded alone, on its own thread, streaming: no list of words is ever built.
// The result equals encoding the section whole because:
// - Normalizer: only local ones (Unicode forms, Lowercase, StripAccents) run
//   per chunk. '\n' is a starter that composes with nothing before it and is
//   not case-ignorable, so no normalization crosses a cut. Other normalizers
//   run on the whole section first and the cuts are made in their output.
// - Pre-tokenizer: it must start with an Isolated split at the matches of one
//   regex R and work piece by piece after that (LeadingSplit()). The pieces of
//   that split are the matches of R's search chain from 0 and the gaps between
//   them. The match found from a search position depends only on that
//   position (lookarounds see the whole text, not the chunk). Chunk k searches
//   from its cut c_k; the sequential chain reaches chunk k either at a search
//   position p <= c_k with no match starting in [p, c_k) -- then its next
//   match is chunk k's first and the chains agree from there -- or inside a
//   match that crosses c_k. Chunk k-1 therefore runs on past c_k until its own
//   chain lands on one of chunk k's search positions (usually one or two
//   words), and chunk k's pieces up to that join point are dropped. Chunk 0
//   starts at 0, so by induction every chunk continues the sequential chain.
// - Each piece then goes through the rest of the pre-tokenizer and the BPE
//   model alone, exactly as in the whole encoding.
// A join that cannot be made within a chunk's first kJoinWindow pieces (say a
// megabyte-long run of whitespace) makes the section be encoded in one chunk,
// which is the sequential algorithm itself.

namespace {

constexpr size_t kJoinWindow = 256;          // pieces at a chunk's head kept for joining
constexpr uint64_t kProgressStep = 1 << 16;  // bytes between progress updates

// 0 = c_0 < c_1 < ... < c_n = text.size(), each inner cut at a '\n', about
// `chunk_bytes` apart.
std::vector<size_t> CutBeforeNewlines(std::string_view text, size_t chunk_bytes) {
  std::vector<size_t> cuts = {0};
  for (size_t target = std::max<size_t>(1, chunk_bytes); target < text.size();) {
    const size_t c = text.find('\n', target);
    if (c == std::string_view::npos) break;
    cuts.push_back(c);
    target = c + std::max<size_t>(1, chunk_bytes);
  }
  cuts.push_back(text.size());
  return cuts;
}

// Runs fn(0..n-1) on up to `threads` threads (inline for one).
template <typename Fn>
void ParallelFor(size_t n, int threads, const Fn& fn) {
  const size_t workers = std::min<size_t>(n, static_cast<size_t>(std::max(1, threads)));
  if (workers <= 1) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  pool.reserve(workers);
  for (size_t w = 0; w < workers; ++w) {
    pool.emplace_back([&] {
      for (size_t i; (i = next.fetch_add(1)) < n;) fn(i);
    });
  }
  for (std::thread& t : pool) t.join();
}

struct ChunkResult {
  std::vector<uint32_t> ids;
  // (end of piece, ids.size() after it) for the first kJoinWindow pieces.
  std::vector<std::pair<size_t, size_t>> head;
  size_t next_join = 0;  // where the next chunk's kept pieces begin
  bool ok = true;
};

// The text the chunks are cut from, and the cuts: the raw text, normalized
// per chunk when the normalizer is local, else whole (Note [Chunked encoding]).
// `*normalized` holds the text when it is not `raw`.
std::string_view NormalizeForChunks(const Normalizer* normalizer, std::string_view raw, int threads,
                                    size_t chunk_bytes, bool is_normalized, std::string* normalized,
                                    std::vector<size_t>* cuts) {
  if (normalizer == nullptr || is_normalized) {
    *cuts = CutBeforeNewlines(raw, chunk_bytes);
    return raw;
  }
  if (!normalizer->local()) {
    *normalized = std::string(raw);
    normalizer->Normalize(normalized);
    *cuts = CutBeforeNewlines(*normalized, chunk_bytes);
    return *normalized;
  }
  const std::vector<size_t> raw_cuts = CutBeforeNewlines(raw, chunk_bytes);
  std::vector<std::string> parts(raw_cuts.size() - 1);
  ParallelFor(parts.size(), threads, [&](size_t k) {
    parts[k] = std::string(raw.substr(raw_cuts[k], raw_cuts[k + 1] - raw_cuts[k]));
    normalizer->Normalize(&parts[k]);
  });
  size_t total = 0;
  for (const std::string& part : parts) total += part.size();
  normalized->reserve(total);
  *cuts = {0};
  for (std::string& part : parts) {
    *normalized += part;
    std::string().swap(part);
    if (cuts->back() < normalized->size()) cuts->push_back(normalized->size());
  }
  return *normalized;
}

// Encodes chunk k of `text` (between cuts[k] and cuts[k+1]), running on past
// its end until its search chain joins chunk k+1's (Note [Chunked encoding]).
class ChunkEncoder {
 public:
  ChunkEncoder(const Pipeline& pipeline, std::string_view text, const std::vector<size_t>& cuts,
               std::atomic<uint64_t>* progress)
      : pipeline_(pipeline),
        regex_(*pipeline.pre_tokenizer->LeadingSplit()),
        identity_(pipeline.pre_tokenizer->RestIsIdentity()),
        text_(text),
        cuts_(cuts),
        progress_(progress) {}

  ChunkResult Encode(size_t k) const {
    ChunkResult out;
    const size_t n = cuts_.size() - 1;
    const bool last = k + 1 == n;
    const size_t next_cut = cuts_[k + 1];
    const size_t limit = k + 2 < cuts_.size() ? cuts_[k + 2] : text_.size();
    out.ids.reserve((next_cut - cuts_[k]) / 3 + 16);
    Pieces scratch;
    uint64_t reported = cuts_[k];
    auto emit = [&](size_t begin, size_t end) {
      Emit(begin, end, next_cut, &scratch, &reported, &out);
    };
    // Chunk k+1's search positions from its cut on, found as needed.
    std::vector<size_t> theirs = {next_cut};
    size_t pos = cuts_[k];  // our search position: the end of the last piece emitted
    while (true) {
      if (!last && pos >= next_cut) {
        while (theirs.back() < pos) {
          size_t p = theirs.back(), b = 0, e = 0;
          theirs.push_back(regex_.Next(text_, &p, &b, &e) ? p : std::string_view::npos);
        }
        if (theirs.back() == pos) {
          out.next_join = pos;
          break;
        }
        if (pos >= limit) {
          out.ok = false;
          break;
        }
      }
      size_t search = pos, begin = 0, end = 0;
      if (!regex_.Next(text_, &search, &begin, &end)) {
        if (pos < text_.size()) emit(pos, text_.size());
        out.next_join = text_.size();  // chunk k+1 (if any) is one gap: all dropped
        out.ok = last || pos <= next_cut;
        break;
      }
      if (!last && pos <= next_cut && begin >= next_cut) {
        if (begin > pos) emit(pos, begin);
        out.next_join = begin;  // chunk k+1's first match
        break;
      }
      if (begin > pos) emit(pos, begin);
      emit(begin, end);
      pos = end;
    }
    if (progress_ != nullptr) progress_->fetch_add(next_cut - reported);
    return out;
  }

 private:
  // Encodes the piece [begin, end) through the rest of the pre-tokenizer and
  // the model; reports progress up to `next_cut`.
  void Emit(size_t begin, size_t end, size_t next_cut, Pieces* scratch, uint64_t* reported,
            ChunkResult* out) const {
    const std::string_view piece = text_.substr(begin, end - begin);
    if (identity_) {
      pipeline_.model->Encode(piece, pipeline_.lazy_byte_level, &out->ids);
    } else {
      scratch->clear();
      scratch->emplace_back(piece);
      pipeline_.pre_tokenizer->PreTokenizeRest(scratch);
      for (const std::string& word : *scratch)
        pipeline_.model->Encode(word, pipeline_.lazy_byte_level, &out->ids);
    }
    if (out->head.size() < kJoinWindow) out->head.emplace_back(end, out->ids.size());
    if (progress_ != nullptr && std::min(end, next_cut) >= *reported + kProgressStep) {
      progress_->fetch_add(std::min(end, next_cut) - *reported);
      *reported = std::min(end, next_cut);
    }
  }

  const Pipeline& pipeline_;
  const Regex& regex_;
  const bool identity_;
  const std::string_view text_;
  const std::vector<size_t>& cuts_;
  std::atomic<uint64_t>* const progress_;
};

// Join: chunk k keeps its pieces that end after chunk k-1's join point.
// Fills skip[k] (the ids of chunk k to drop); false when a join fails.
bool JoinChunks(const std::vector<ChunkResult>& results, const std::vector<size_t>& cuts,
                size_t text_size, std::vector<size_t>* skip) {
  const size_t n = results.size();
  for (size_t k = 0; k < n; ++k) {
    if (!results[k].ok) return false;
    if (k == 0) continue;
    const size_t at = results[k - 1].next_join;
    if (k + 1 < n && at >= results[k].next_join) return false;
    if (at == cuts[k]) continue;
    const auto& head = results[k].head;
    auto it = std::find_if(head.begin(), head.end(),
                           [at](const std::pair<size_t, size_t>& h) { return h.first == at; });
    if (it == head.end()) {
      if (!(k + 1 == n && at == text_size && head.size() < kJoinWindow)) return false;
      (*skip)[k] = results[k].ids.size();  // every piece of the last chunk ends by the text's end
    } else {
      (*skip)[k] = it->second;
    }
  }
  return true;
}

}  // namespace

void Pipeline::EncodeSection(std::string_view text, bool first_section, int threads,
                             size_t chunk_bytes, std::atomic<uint64_t>* progress,
                             std::vector<uint32_t>* ids, bool is_normalized) const {
  const Regex* split = pre_tokenizer == nullptr ? nullptr : pre_tokenizer->LeadingSplit();
  if (split != nullptr && !split->can_match_empty()) {
    if (EncodeChunked(text, threads, chunk_bytes, progress, ids, is_normalized)) return;
    // A join failed: one chunk always joins (the sequential algorithm).
    if (EncodeChunked(text, 1, text.size() + 1, progress, ids, is_normalized)) return;
  }
  EncodeWhole(text, first_section, threads, ids, is_normalized);
  if (progress != nullptr) progress->fetch_add(text.size());
}

bool Pipeline::EncodeChunked(std::string_view raw, int threads, size_t chunk_bytes,
                             std::atomic<uint64_t>* progress, std::vector<uint32_t>* ids,
                             bool is_normalized) const {
  std::string normalized;
  std::vector<size_t> cuts;
  const std::string_view text = NormalizeForChunks(normalizer.get(), raw, threads, chunk_bytes,
                                                   is_normalized, &normalized, &cuts);
  if (text.empty()) return true;

  const size_t n = cuts.size() - 1;
  std::vector<ChunkResult> results(n);
  const ChunkEncoder encoder(*this, text, cuts, progress);
  ParallelFor(n, threads, [&](size_t k) { results[k] = encoder.Encode(k); });

  std::vector<size_t> skip(n, 0);
  if (!JoinChunks(results, cuts, text.size(), &skip)) {
    // Every chunk reported its bytes; the caller's retry reports them again.
    if (progress != nullptr) progress->fetch_sub(text.size());
    return false;
  }
  size_t total = 0;
  for (size_t k = 0; k < n; ++k) total += results[k].ids.size() - skip[k];
  ids->reserve(ids->size() + total);
  for (size_t k = 0; k < n; ++k) {
    ids->insert(ids->end(), results[k].ids.begin() + static_cast<std::ptrdiff_t>(skip[k]),
                results[k].ids.end());
    std::vector<uint32_t>().swap(results[k].ids);
  }
  return true;
}

void Pipeline::EncodeWhole(std::string_view text, bool first_section, int threads,
                           std::vector<uint32_t>* ids, bool is_normalized) const {
  const Pieces words = PreTokenize(text, first_section, threads, is_normalized);
  const size_t n_words = words.size();
  const size_t n_threads = std::max<size_t>(1, std::min<size_t>(threads, n_words / 4096 + 1));
  if (n_threads == 1) {
    for (const std::string& word : words) model->Encode(word, lazy_byte_level, ids);
    return;
  }
  std::vector<std::vector<uint32_t>> parts(n_threads);
  ParallelFor(n_threads, static_cast<int>(n_threads), [&](size_t t) {
    parts[t].reserve(n_words / n_threads * 5 / 4 + 16);
    for (size_t i = n_words * t / n_threads; i < n_words * (t + 1) / n_threads; ++i) {
      model->Encode(words[i], lazy_byte_level, &parts[t]);
    }
  });
  for (const auto& part : parts) ids->insert(ids->end(), part.begin(), part.end());
}

}  // namespace distill::worker::hf
