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
  // Normalize: per chunk when local, else whole (Note [Chunked encoding]).
  std::string normalized;
  std::string_view text = raw;
  std::vector<size_t> cuts;
  if (normalizer == nullptr || is_normalized) {
    cuts = CutBeforeNewlines(raw, chunk_bytes);
  } else if (normalizer->local()) {
    const std::vector<size_t> raw_cuts = CutBeforeNewlines(raw, chunk_bytes);
    std::vector<std::string> parts(raw_cuts.size() - 1);
    ParallelFor(parts.size(), threads, [&](size_t k) {
      parts[k] = std::string(raw.substr(raw_cuts[k], raw_cuts[k + 1] - raw_cuts[k]));
      normalizer->Normalize(&parts[k]);
    });
    size_t total = 0;
    for (const std::string& part : parts) total += part.size();
    normalized.reserve(total);
    cuts = {0};
    for (std::string& part : parts) {
      normalized += part;
      std::string().swap(part);
      if (cuts.back() < normalized.size()) cuts.push_back(normalized.size());
    }
    text = normalized;
  } else {
    normalized = std::string(raw);
    normalizer->Normalize(&normalized);
    text = normalized;
    cuts = CutBeforeNewlines(text, chunk_bytes);
  }
  if (text.empty()) return true;

  const Regex& regex = *pre_tokenizer->LeadingSplit();
  const bool identity = pre_tokenizer->RestIsIdentity();
  const size_t n = cuts.size() - 1;
  std::vector<ChunkResult> results(n);
  ParallelFor(n, threads, [&](size_t k) {
    ChunkResult& out = results[k];
    const bool last = k + 1 == n;
    const size_t next_cut = cuts[k + 1];
    const size_t limit = k + 2 < cuts.size() ? cuts[k + 2] : text.size();
    out.ids.reserve((next_cut - cuts[k]) / 3 + 16);
    Pieces scratch;
    uint64_t reported = cuts[k];
    auto emit = [&](size_t begin, size_t end) {
      const std::string_view piece = text.substr(begin, end - begin);
      if (identity) {
        model->Encode(piece, lazy_byte_level, &out.ids);
      } else {
        scratch.clear();
        scratch.emplace_back(piece);
        pre_tokenizer->PreTokenizeRest(&scratch);
        for (const std::string& word : scratch) model->Encode(word, lazy_byte_level, &out.ids);
      }
      if (out.head.size() < kJoinWindow) out.head.emplace_back(end, out.ids.size());
      if (progress != nullptr && std::min(end, next_cut) >= reported + kProgressStep) {
        progress->fetch_add(std::min(end, next_cut) - reported);
        reported = std::min(end, next_cut);
      }
    };
    // Chunk k+1's search positions from its cut on, found as needed.
    std::vector<size_t> theirs = {next_cut};
    size_t pos = cuts[k];  // our search position: the end of the last piece emitted
    while (true) {
      if (!last && pos >= next_cut) {
        while (theirs.back() < pos) {
          size_t p = theirs.back(), b = 0, e = 0;
          theirs.push_back(regex.Next(text, &p, &b, &e) ? p : std::string_view::npos);
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
      if (!regex.Next(text, &search, &begin, &end)) {
        if (pos < text.size()) emit(pos, text.size());
        out.next_join = text.size();  // chunk k+1 (if any) is one gap: all dropped
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
    if (progress != nullptr) progress->fetch_add(next_cut - reported);
  });

  // Join: chunk k keeps its pieces that end after chunk k-1's join point.
  std::vector<size_t> skip(n, 0);
  auto join = [&] {
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
        if (!(k + 1 == n && at == text.size() && head.size() < kJoinWindow)) return false;
        skip[k] = results[k].ids.size();  // every piece of the last chunk ends by the text's end
      } else {
        skip[k] = it->second;
      }
    }
    return true;
  };
  if (!join()) {
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
