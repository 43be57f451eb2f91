// Training and eval data given as text: a .jsonl or plain-text file is
// tokenized once and cached as a .bin shard (CachePathFor), so that training
// always reads mmapped shards. Thread-compatible (one caller per file).
//
// Note [Cache directory]: a worker writes the tokenized caches of its text
// inputs beside them only when it runs alone (the user's own files). Under a
// coordinator it never writes beside an input, which may be anyone's (and
// lies under the data root, which a job may not write): the coordinator sets
// DISTILL_CACHE_DIR (OUTPUT_ROOT/.distill-cache with roots, else
// STATE_DIR/cache) and every cache goes there, named by a hash of its
// input's absolute path.
#ifndef DISTILL_WORKER_DATA_TEXT_SOURCE_H_
#define DISTILL_WORKER_DATA_TEXT_SOURCE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace distill::worker {

// The tag that names a cache by the tokenizer it was built with: "bytes" for
// "bytes"; else "tok-" + the first 8 hex digits of FNV-1a 64 over the bytes
// of `tokenizer` (a tokenizer.json) and then of each of `also` (files beside
// it that change what it encodes, e.g. tokenizer_config.json). NotFound
// naming a file that cannot be read.
absl::StatusOr<std::string> TokenizerTag(const std::string& tokenizer,
                                         const std::vector<std::string>& also = {});

// Where the cache of `input` with `suffix` (e.g. "bytes.bin") goes: beside
// it (INPUT.SUFFIX), or, when DISTILL_CACHE_DIR is set (the coordinator sets
// it: Note [Cache directory]), CACHE_DIR/HASH-NAME.SUFFIX with HASH 16 hex
// digits of FNV-1a 64 over the input's absolute path and NAME its file name.
std::string CachePathFor(const std::string& input, const std::string& suffix);

// True when `cache` exists and is not older than any of `sources`.
bool CacheIsFresh(const std::string& cache, const std::vector<std::string>& sources);

// The .bin shard for `path`: `path` itself when it ends in .bin; otherwise
// CachePathFor(path, "<tag>.bin"), built with `tokenizer` ("bytes", or a tokenizer.json path;
// tag "bytes" or "tok-" + first 8 hex digits of a hash of the tokenizer file)
// unless it exists and is not older than the text and the tokenizer.
// Documents are separated as `distill-worker tokenize` does.
absl::StatusOr<std::string> EnsureTokenShard(const std::string& path, const std::string& tokenizer,
                                             const std::string& text_field, int threads);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DATA_TEXT_SOURCE_H_
