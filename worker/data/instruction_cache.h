// Tokenized instruction examples (ids and response mask per example) and the
// cache file that holds them beside their JSONL file, so a dataset is
// tokenized once (instruction_examples.h decides when a cache is fresh).
// Plain values; the functions are thread-compatible (one writer per path).
//
// Cache file (little-endian, as the .bin shards), version 1:
//   char[8] "DSTLEXMP", uint32 version, uint32 0, uint64 E examples,
//   uint64 T tokens, uint64 begins[E + 1], uint32 lines[E], uint32 ids[T],
//   uint8 response[T].
#ifndef DISTILL_WORKER_DATA_INSTRUCTION_CACHE_H_
#define DISTILL_WORKER_DATA_INSTRUCTION_CACHE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace distill::worker {

// Examples one after another: example i is ids[begins[i], begins[i + 1]).
struct TokenizedExamples {
  std::vector<uint32_t> ids;
  std::vector<uint8_t> response;    // per id: 1 when it is a response token, else 0
  std::vector<uint64_t> begins{0};  // size() + 1 entries
  std::vector<uint32_t> lines;      // example i's 1-based line in its file

  int64_t size() const { return static_cast<int64_t>(lines.size()); }
  int64_t length(int64_t i) const { return static_cast<int64_t>(begins[i + 1] - begins[i]); }
  // Appends one example; `response` has one entry per id.
  void Add(const std::vector<uint32_t>& example_ids, const std::vector<uint8_t>& example_response,
           uint32_t line);
  // Appends all of `other`'s examples.
  void Append(const TokenizedExamples& other);
};

// Writes `examples` to `path` atomically (temp file, then rename).
absl::Status WriteExampleCache(const std::string& path, const TokenizedExamples& examples);

// Reads a cache written by WriteExampleCache. NotFound if it cannot be read;
// DataLoss naming the path when it is not a version-1 cache or is
// inconsistent (sizes, begins, response values).
absl::StatusOr<TokenizedExamples> ReadExampleCache(const std::string& path);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DATA_INSTRUCTION_CACHE_H_
