// The teacher cache directory: the teacher's top-k logits (cache_codec.h),
// the full row's log-sum-exp at each cached temperature and the outputs of
// the cached teacher layers, for every row of data.train and data.eval,
// written once by `distill-worker capture` and read by distill jobs instead
// of running the teacher (cached_teacher.h).
//
// Layout: DIR/manifest.json (the content key, the geometry, `complete`
// written last), DIR/teacher_config.json (the teacher's config.json, so a
// reader needs no weights), DIR/<split>-NNNNN.shard (rows [s * shard_rows,
// ...) of the split). Note [Cache shard] in teacher_cache.cc gives the shard
// format; the key's JSON and its checks are in teacher_cache_key.cc.
// Errors: a key mismatch is FailedPrecondition naming the field, a damaged
// or missing shard DataLoss naming the file and row. Readers are
// thread-compatible; writers of one directory coordinate by shard (each
// shard is written whole, by one rank, atomically).
#ifndef DISTILL_WORKER_DISTILL_TEACHER_CACHE_H_
#define DISTILL_WORKER_DISTILL_TEACHER_CACHE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/distill/cache_codec.h"

namespace distill::worker {

// What the rows of one split are made of: the data files' bytes and the data
// options that change rows.
struct CacheSplitKey {
  std::vector<std::pair<std::string, std::string>> files;  // (path as given, sha256 hex)
  std::string format, loss_on, overflow, text_field;
  bool packing = true;
  int64_t seq_len = 0;
  int64_t rows = 0;
};

// The content key of a cache (not the seed, micro-batch or ranks: students
// read rows by index). Manifest fields are named as in the messages.
struct TeacherCacheKey {
  std::string teacher_config;                          // sha256 of config.json
  std::map<std::string, std::string> teacher_weights;  // weight file name -> sha256
  std::string tokenizer;                               // sha256 of tokenizer.json, or "bytes"
  std::map<std::string, CacheSplitKey> splits;         // "train", "eval" (if any)
  int64_t vocab = 0;                                   // V, the student's shared size
  int64_t top_k = 0;
  std::vector<double> temperatures;  // ascending, unique, with 1.0
  std::vector<int64_t> layers;       // teacher layers whose outputs are cached, ascending
  CacheEncoding encoding = CacheEncoding::kExact;
};

nlohmann::json KeyToJson(const TeacherCacheKey& key);
absl::StatusOr<TeacherCacheKey> KeyFromJson(const nlohmann::json& j);

// Lowercase hex SHA-256 of a file's bytes (OpenSSL EVP); NotFound naming it.
absl::StatusOr<std::string> Sha256File(const std::string& path);
// "exact" / "compact".
std::string EncodingName(CacheEncoding e);

// Checks what a job needs (`job`) against what the cache at `dir` holds.
// `exact` (capture: the same key, teacher included) demands equality; a
// reader's job needs its top_k, vocab, encoding, tokenizer and splits equal,
// its temperatures and layers among the cached ones, and skips the teacher
// when its key has none. FailedPrecondition starting "teacher.cache DIR: "
// and naming the field.
absl::Status CheckCacheKey(const std::string& dir, const TeacherCacheKey& job,
                           const TeacherCacheKey& cache, bool exact);

// One row's packed bytes as the cache stores them: a zstd frame, level 3,
// with its content checksum (Note [Cache shard]).
absl::StatusOr<std::string> CompressCacheFrame(std::string_view raw);

// FNV-1a 64 of a row's L input ids: a reader checks it against the cache's.
uint64_t RowInputHash(const int64_t* inputs, int64_t length);

// One row of a split: L positions of k entries, each position's scalars
// (lse at each cached temperature, then for eval the target's teacher
// logit), and per cached layer the L x d_t outputs.
struct CacheRow {
  TopKBlock topk;
  std::vector<std::vector<float>> features;  // per key.layers entry: [L * d_t]
};

// The cache's geometry besides its key.
struct CacheGeometry {
  int64_t shard_rows = 64;  // rows per shard
  int64_t hidden = 0;       // d_t, the width of each cached layer output
};

// Scalars per position of `split`: the temperatures, plus the target's logit for eval.
int32_t ScalarsPerPosition(const TeacherCacheKey& key, const std::string& split);

// Writes a cache for `key` (capture). Resumable: shards already on disk and
// valid are kept.
class TeacherCacheWriter {
 public:
  // Creates `dir` with an incomplete manifest, or opens one holding the same
  // key (a resumed or finished capture). A directory holding another key is
  // FailedPrecondition naming the field (it is never overwritten).
  static absl::StatusOr<std::unique_ptr<TeacherCacheWriter>> Open(
      const std::string& dir, const TeacherCacheKey& key, const CacheGeometry& geometry,
      const std::string& teacher_config_json);

  const CacheGeometry& geometry() const { return geometry_; }
  int64_t shards(const std::string& split) const;
  // Whether shard `s` of `split` is on disk with a valid index and size.
  bool ShardDone(const std::string& split, int64_t s) const;
  // Encodes, compresses and writes shard `s` of `split` from its rows (first
  // row s * shard_rows) with their input hashes; atomically (temp + rename).
  absl::Status WriteShard(const std::string& split, int64_t s, const std::vector<CacheRow>& rows,
                          const std::vector<uint64_t>& input_hashes);
  // Writes the manifest with `complete` true and the bytes and tokens held,
  // once every shard is done (DataLoss naming one that is not); removes the
  // temp files of a killed capture.
  absl::Status Finish();
  int64_t bytes_on_disk() const;  // the shards' bytes

 private:
  TeacherCacheWriter(std::string dir, TeacherCacheKey key, CacheGeometry geometry)
      : dir_(std::move(dir)), key_(std::move(key)), geometry_(geometry) {}
  std::string dir_;
  TeacherCacheKey key_;
  CacheGeometry geometry_;
};

// Reads a complete cache.
class TeacherCache {
 public:
  // FailedPrecondition when `dir` holds no cache or an incomplete one.
  static absl::StatusOr<std::unique_ptr<TeacherCache>> Open(const std::string& dir);
  ~TeacherCache();

  const std::string& dir() const { return dir_; }
  const TeacherCacheKey& key() const { return key_; }
  const CacheGeometry& geometry() const { return geometry_; }
  std::string teacher_config_path() const;
  struct Shard;                                     // a shard's index (teacher_cache.cc)
  int64_t tokens() const { return tokens_; }        // positions held, all splits
  int64_t bytes_on_disk() const { return bytes_; }  // the shards' bytes

  // Row `row` of `split`; DataLoss naming the shard file and row when it is
  // missing or damaged, FailedPrecondition when its input hash is not
  // `input_hash` (the job's data is not the cache's). `*bytes` gets the
  // row's compressed size.
  absl::StatusOr<CacheRow> ReadRow(const std::string& split, int64_t row, uint64_t input_hash,
                                   int64_t* bytes = nullptr);

 private:
  explicit TeacherCache(std::string dir);  // in the .cc: Shard is complete there
  absl::StatusOr<const Shard*> LoadShard(const std::string& split, int64_t s, int64_t row);

  std::string dir_;
  TeacherCacheKey key_;
  CacheGeometry geometry_;
  int64_t tokens_ = 0;
  int64_t bytes_ = 0;
  std::map<std::pair<std::string, int64_t>, std::unique_ptr<Shard>> shards_;  // indexes read
};

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DISTILL_TEACHER_CACHE_H_
