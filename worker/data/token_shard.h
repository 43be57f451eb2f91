// Pre-tokenized data: shards of raw little-endian uint32 token ids (.bin),
// read through a read-only mmap, and their concatenation as one stream.
//
// Immutable after Open(): thread-safe. Errors name the file (and for bad ids
// the token index and byte offset).
#ifndef DISTILL_WORKER_DATA_TOKEN_SHARD_H_
#define DISTILL_WORKER_DATA_TOKEN_SHARD_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace distill::worker {

class TokenShard {
 public:
  // InvalidArgument if the size is not a multiple of 4 or the file is empty;
  // NotFound if it cannot be opened.
  static absl::StatusOr<std::shared_ptr<TokenShard>> Open(const std::string& path);
  ~TokenShard();
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;

  const std::string& path() const { return path_; }
  int64_t size() const { return size_; }  // in tokens
  const uint32_t* data() const { return data_; }

 private:
  TokenShard() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const uint32_t* data_ = nullptr;
  int64_t size_ = 0;
};

// Several shards read as one token stream, in the given order.
class TokenDataset {
 public:
  static absl::StatusOr<TokenDataset> Open(const std::vector<std::string>& paths);

  int64_t size() const { return total_; }  // tokens in all shards
  // Copies tokens [begin, begin + n) of the stream into `out` (may cross shard
  // boundaries). Requires 0 <= begin and begin + n <= size().
  void Read(int64_t begin, int64_t n, int64_t* out) const;
  // InvalidArgument naming the file, token index and byte offset of the first
  // id >= vocab_size.
  absl::Status CheckVocab(int64_t vocab_size) const;

 private:
  std::vector<std::shared_ptr<TokenShard>> shards_;
  std::vector<int64_t> starts_;  // stream offset of each shard
  int64_t total_ = 0;
};

// Writes ids as a .bin shard (atomically: temp file, then rename).
absl::Status WriteTokenShard(const std::string& path, const std::vector<uint32_t>& ids);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DATA_TOKEN_SHARD_H_
